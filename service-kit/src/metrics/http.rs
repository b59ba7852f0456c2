//! Metrics over HTTP: the `/metrics` page, the RED metrics of every request an HTTP service
//! answers, and a small listener serving `/metrics` (and `/healthz`) for the services that
//! answer no other HTTP.

use super::{counter, histogram, intern, render, single_gauge, Format, HistogramFamily};
use crate::routes::only;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::net::{SocketAddr, TcpListener};
use std::sync::LazyLock;
use std::time::Instant;

/// The path every service serves its metrics on.
pub const METRICS_PATH: &str = "/metrics";

crate::metric_labels! {
    /// A request: its method, the route pattern it matched (`/orders/{order_id}/ship`, not the
    /// path asked for; `unmatched` when none did, `unknown` for an error no handler answered)
    /// and the status answered.
    pub struct RequestLabels { method: &'static str, route: &'static str, status: u16 }
}

crate::metric_labels! {
    /// A route: its method and pattern.
    pub struct RouteLabels { method: &'static str, route: &'static str }
}

/// The RED metrics of an HTTP service.
pub struct HttpMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: HistogramFamily<RouteLabels>,
    pub in_flight: Gauge,
}

/// The process's HTTP metrics, registered on first use.
pub static HTTP: LazyLock<HttpMetrics> = LazyLock::new(|| HttpMetrics {
    requests: counter(
        "milestone_http_requests_total",
        "HTTP requests answered, by method, route pattern and status",
    ),
    duration: histogram(
        "milestone_http_request_duration_seconds",
        "Time to answer an HTTP request, by method and route pattern",
        super::LATENCY_BUCKETS,
    ),
    in_flight: single_gauge(
        "milestone_http_requests_in_flight",
        "HTTP requests being answered now",
    ),
});

/// `GET /metrics`: every metric of the process, in OpenMetrics when the client asks for it
/// (Prometheus does), in the classic Prometheus text format otherwise.
pub async fn metrics_page(req: HttpRequest) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    HttpResponse::Ok()
        .content_type(format.content_type())
        .body(render(format))
}

/// A method as a `'static` label value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route pattern a request matched: the resource's name when it has one (no allocation),
/// else its pattern, made `'static` once; `unmatched` when no route matched.
fn route_label(req: &HttpRequest) -> &'static str {
    if let Some(name) = req.match_name() {
        return intern(name);
    }
    req.match_pattern()
        .map_or("unmatched", |pattern| intern(&pattern))
}

/// Middleware: counts and times every request by method, route pattern and status, and how
/// many are being answered. Wrap the whole app with it (`App::wrap(from_fn(record_requests))`).
///
/// # Errors
/// The inner service's, passed on (and counted with its status).
pub async fn record_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = &*HTTP;
    let started = Instant::now();
    let method = method_label(req.method());
    let result = {
        let _in_flight = InFlight::enter(&metrics.in_flight);
        next.call(req).await
    };
    // The route is known once the request was routed; the request itself may not be held
    // (cloned) meanwhile, so it is read from the response. An error that escaped every handler
    // (and so every route) reads `unknown`.
    let (route, status) = match &result {
        Ok(response) => (route_label(response.request()), response.status()),
        Err(e) => ("unknown", e.as_response_error().status_code()),
    };
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: status.as_u16(),
        })
        .inc();
    metrics
        .duration
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    result
}

/// One request being answered, counted in the gauge until it is dropped (also when the client
/// goes away and the request's future with it).
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Why the `/metrics` listener of a service without HTTP cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsAddrError {
    #[error("{var}='{value}' is not an address such as 127.0.0.1:9101")]
    Invalid {
        var: String,
        value: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("cannot listen for /metrics on {addr} (from {var})")]
    Bind {
        var: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A refusal of [`MetricsServer`]'s routes: its message as plain text.
fn in_text(message: String) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .content_type("text/plain; charset=utf-8")
        .body(message)
}

/// A listener serving `GET /metrics` and `GET /healthz` (and `HEAD`; another method is a 405
/// naming the allowed ones), for a service with no other HTTP.
pub struct MetricsServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free one) and serves on the current Tokio runtime until
    /// [`MetricsServer::stop`] or the end of the process.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let server: Server = HttpServer::new(|| {
            App::new()
                .service(only(METRICS_PATH, Method::GET, metrics_page, in_text))
                .service(only(
                    "/healthz",
                    Method::GET,
                    crate::health::healthz,
                    in_text,
                ))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::warn!(%error, "the metrics listener stopped");
            }
        });
        tracing::info!(%addr, "serving /metrics");
        Ok(Self { addr, handle })
    }

    /// Starts a listener on the address in the environment variable `var`; none when it is
    /// unset or empty.
    ///
    /// # Errors
    /// When the value is not an address, or the address cannot be bound.
    pub fn from_env(var: &str) -> Result<Option<Self>, MetricsAddrError> {
        let value = std::env::var(var).unwrap_or_default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = value.parse().map_err(|source| MetricsAddrError::Invalid {
            var: var.to_owned(),
            value: value.to_owned(),
            source,
        })?;
        Self::start(addr)
            .map(Some)
            .map_err(|source| MetricsAddrError::Bind {
                var: var.to_owned(),
                addr,
                source,
            })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::web;

    #[actix_web::test]
    async fn a_request_is_counted_by_route_pattern_and_status() {
        let app = actix_web::test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(record_requests))
                .route("/orders/{order_id}", web::get().to(HttpResponse::Ok))
                .route(METRICS_PATH, web::get().to(metrics_page)),
        )
        .await;
        for path in ["/orders/1", "/orders/2", "/nowhere"] {
            let req = actix_web::test::TestRequest::get().uri(path).to_request();
            actix_web::test::call_service(&app, req).await;
        }
        let req = actix_web::test::TestRequest::get()
            .uri(METRICS_PATH)
            .to_request();
        let body = actix_web::test::call_and_read_body(&app, req).await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains(
                "milestone_http_requests_total{method=\"GET\",route=\"/orders/{order_id}\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "milestone_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE milestone_http_request_duration_seconds histogram\n"),
            "{text}"
        );
    }

    #[test]
    fn a_metrics_address_that_does_not_parse_is_refused_naming_the_variable() {
        let var = "MILESTONE_TEST_ONLY_METRICS_ADDR";
        std::env::set_var(var, "localhost-ish");
        let error = MetricsServer::from_env(var).err().expect("refused");
        std::env::remove_var(var);
        assert!(error.to_string().contains(var), "{error}");
        assert!(std::error::Error::source(&error).is_some());
    }

    /// What the listener at `addr` answers `request` (a raw HTTP/1.1 request, closing).
    async fn exchange(addr: SocketAddr, request: &'static str) -> String {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).unwrap();
            text
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_service_without_http_serves_its_metrics_on_its_own_listener() {
        let _ = &*HTTP;
        let server = MetricsServer::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = server.addr();
        let text = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: test\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n").await;
        let health = exchange(
            addr,
            "HEAD /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .await;
        let wrong = exchange(
            addr,
            "DELETE /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .await;
        server.stop().await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(wrong.starts_with("HTTP/1.1 405"), "{wrong}");
        assert!(
            wrong.to_ascii_lowercase().contains("allow: get, head"),
            "{wrong}"
        );
        assert!(
            wrong.ends_with("DELETE is not allowed on /metrics; use GET, HEAD"),
            "{wrong}"
        );
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE milestone_http_requests_in_flight gauge"),
            "{text}"
        );
    }
}

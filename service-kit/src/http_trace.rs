//! The server span of every HTTP request: it continues the caller's W3C trace context
//! (`traceparent`, `tracestate`), names the route, the status and the correlation id, and its
//! own context is echoed in the response's `traceparent` (when tracing is on), errors
//! included.

use crate::trace::{self, Decided, TraceContext, TRACEPARENT, TRACESTATE};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use tracing::field::Empty;
use tracing::Instrument;

/// The header whose value (when valid) the request span records as its correlation id; a
/// service that chooses its own records it on the span instead.
pub const CORRELATION_HEADER: &str = "X-Correlation-Id";

/// The request span's field naming the instance (an order, a return) the request is about; the
/// handler records it once it knows it.
pub const INSTANCE_FIELD: &str = "instance";

/// The request span's field naming the command the request ran (the command API's): the
/// command has no span of its own below the request's.
pub const COMMAND_FIELD: &str = "command_id";

/// The longest correlation id recorded from a request header.
const CORRELATION_MAX_LEN: usize = 255;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The request's server span, `http.request`, at `target`.
macro_rules! request_span {
    ($target:expr, $method:expr, $route:expr) => {
        tracing::info_span!(
            target: $target,
            "http.request",
            otel.name = %format_args!("{} {}", $method, $route),
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %$method,
            http.route = %$route,
            http.response.status_code = Empty,
            correlation_id = Empty,
            instance = Empty,
            command_id = Empty,
        )
    };
}

/// Middleware (`App::wrap(from_fn(trace_request))`, outermost): runs the request inside its
/// server span, `http.request`, with the fields `http.request.method`, `http.route` (the
/// matched pattern, `unmatched` for none), `http.response.status_code`, `correlation_id`,
/// [`INSTANCE_FIELD`] and [`COMMAND_FIELD`]. Handlers run inside it (`Span::current()`), so
/// they can record the last three, and every log line of the request names them.
///
/// The request's trace is decided on before its span is made ([`trace::decide_ahead`]): when
/// the sampler drops it, the span is made for the logs only and the request runs
/// [`trace::in_unsampled`], so that nothing of it is made for traces.
///
/// # Errors
/// An error of the inner service, passed on with the `traceparent` header added.
pub async fn trace_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let headers = req.headers();
    let remote = header(headers, TRACEPARENT).map(|traceparent| {
        TraceContext::new(traceparent, header(headers, TRACESTATE).map(str::to_owned))
    });
    let (span, unsampled) = match trace::decide_ahead(remote.as_ref(), "http.request") {
        Some(Decided::Dropped(context)) => (
            request_span!(trace::UNSAMPLED_TARGET, method, route),
            Some(context),
        ),
        decided => {
            let span = request_span!(module_path!(), method, route);
            if let Some(remote) = &remote {
                trace::continue_trace(&span, remote);
            }
            match decided {
                Some(Decided::Recorded { sampled }) => trace::sample_as_decided(&span, sampled),
                _ => trace::sample(&span),
            }
            (span, None)
        }
    };
    if let Some(id) = header(headers, CORRELATION_HEADER)
        .filter(|id| !id.is_empty() && id.len() <= CORRELATION_MAX_LEN)
    {
        span.record("correlation_id", id);
    }
    let (result, echoed) = match unsampled {
        Some(context) => {
            let result = trace::in_unsampled(context.clone(), next.call(req))
                .instrument(span.clone())
                .await;
            (result, Some(context))
        }
        None => {
            let result = next.call(req).instrument(span.clone()).await;
            (result, trace::context_of(&span))
        }
    };
    match result {
        Ok(mut response) => {
            finish(&span, response.status(), response.headers_mut(), echoed);
            Ok(response)
        }
        Err(e) => {
            let mut response = e.error_response();
            finish(&span, response.status(), response.headers_mut(), echoed);
            Err(InternalError::from_response(e, response).into())
        }
    }
}

fn finish(
    span: &tracing::Span,
    status: StatusCode,
    headers: &mut HeaderMap,
    echoed: Option<TraceContext>,
) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let Some(echoed) = echoed else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&echoed.traceparent) {
        headers.insert(HeaderName::from_static(TRACEPARENT), value);
    }
    if let Some(Ok(value)) = echoed.tracestate.as_deref().map(HeaderValue::from_str) {
        headers.insert(HeaderName::from_static(TRACESTATE), value);
    }
}

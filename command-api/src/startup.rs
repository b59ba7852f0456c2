//! Wiring: the store, the routes, the server. Tests build the app here on port 0.

use crate::config::Config;
use crate::error::ApiError;
use crate::{auth, cors, http, openapi, routes};
use actix_web::dev::Server;
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use event_store::{EventStore, StoreOptions};
use service_kit::auth::Authenticator;
use service_kit::health;
use service_kit::metrics::http::{metrics_page, record_requests, METRICS_PATH};
use service_kit::rate_limit::RateLimiter;
use std::net::TcpListener;
use std::sync::Arc;

/// What every handler can reach.
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub config: Config,
    /// Checks every request's bearer token.
    pub auth: Authenticator,
}

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Connects to the event store and binds the listener.
    ///
    /// # Errors
    /// When the store cannot be reached or the address cannot be bound.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = event_store::connect_with(
            config.event_store_url.expose(),
            &StoreOptions {
                pool_size: config.pool_size,
            },
            config.group_commit,
        )
        .await?;
        Self::with_store(config, store)
    }

    /// Binds the listener for an already connected store.
    ///
    /// # Errors
    /// When the key set of the tokens cannot be read, or the address cannot be bound.
    pub fn with_store(config: Config, store: Arc<dyn EventStore>) -> anyhow::Result<Self> {
        let auth = Authenticator::new(&config.auth)?;
        tokio::spawn({
            let auth = auth.clone();
            async move { auth.start().await }
        });
        let listener = TcpListener::bind(config.listen)?;
        let port = listener.local_addr()?.port();
        let workers = config.workers.max(1);
        let limiter = web::Data::new(RateLimiter::new(config.rate_limit));
        let state = web::Data::new(AppState {
            store,
            config,
            auth,
        });
        crate::metrics::register();
        let server = HttpServer::new(move || {
            crate::SERVED
                .iter()
                .fold(App::new(), |app, served| app.configure(served.configure))
                .app_data(state.clone())
                .app_data(limiter.clone())
                // The rate limit counts per principal, so it runs after authentication
                // (the middleware wrapped last runs first).
                .wrap(from_fn(service_kit::http_body::body_deadline))
                .wrap(from_fn(http::rate_limit))
                .wrap(from_fn(auth::authenticate))
                .wrap(from_fn(http::echo_correlation_id))
                .wrap(from_fn(record_requests))
                .wrap(from_fn(service_kit::http_trace::trace_request))
                // Outermost: a browser's preflight carries no token.
                .wrap(from_fn(cors::allow_configured_origins))
                .service(routes::only("/openapi.json", Method::GET, openapi_document))
                .service(routes::only("/healthz", Method::GET, health::healthz))
                .service(routes::only("/readyz", Method::GET, readyz))
                .service(routes::only(METRICS_PATH, Method::GET, metrics_page))
                .default_service(web::to(routes::not_found))
        })
        .workers(workers)
        .shutdown_timeout(10)
        // Gracefully on Ctrl-C as on SIGTERM: on its own, actix stops at once on SIGINT,
        // dropping the requests in flight.
        .shutdown_signal(service_kit::shutdown_signal())
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests and stops.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

async fn openapi_document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::openapi_json())
}

async fn readyz(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    app.store.ping().await?;
    Ok(health::ready([("event_store", app.store.backend().into())]))
}

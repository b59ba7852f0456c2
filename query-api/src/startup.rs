//! Wiring: the pool, the schema, the checkpoint watch, the server. Tests bind port 0.

use crate::config::Config;
use crate::consistency::CheckpointWatch;
use crate::live::Live;
use crate::schema::{build_schema, MilestoneSchema};
use crate::ws::{self, Connections};
use crate::{auth, console, http};
use actix_web::dev::Server;
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, App, FromRequest, Handler, HttpServer, Resource, Responder};
use deadpool_postgres::Pool;
use service_kit::auth::Authenticator;
use service_kit::health;
use service_kit::metrics::http::{metrics_page, record_requests, METRICS_PATH};
use service_kit::rate_limit::RateLimiter;
use service_kit::routes;
use std::net::TcpListener;

/// What every handler can reach.
pub struct AppState {
    pub schema: MilestoneSchema,
    /// The read-model connections; each request takes one for its snapshot.
    pub pool: Pool,
    pub checkpoints: CheckpointWatch,
    /// What the subscriptions read and are woken by.
    pub live: Live,
    /// The open subscription websockets.
    pub connections: Connections,
    pub config: Config,
    /// Checks every request's bearer token (and each websocket's `connection_init`).
    pub auth: Authenticator,
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Builds the schema and binds the listener. The database is reached lazily; `/readyz`
    /// says whether it answers.
    ///
    /// # Errors
    /// A bad database URL, a key set of the tokens that cannot be read, or an address that
    /// cannot be bound.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let auth = Authenticator::new(&config.auth)?;
        tokio::spawn({
            let auth = auth.clone();
            async move { auth.start().await }
        });
        let (pool, pg_config) =
            service_kit::postgres::build_pool(config.read_model_url.expose(), config.pool_size)?;
        let checkpoints = CheckpointWatch::start_with_buffer(
            pool.clone(),
            pg_config,
            config.event_store_url.expose(),
            config.subscription_buffer,
        );
        let live = Live::start(pool.clone(), checkpoints.clone());
        let schema = build_schema(&config);
        let listener = TcpListener::bind(config.listen)?;
        let port = listener.local_addr()?.port();
        let workers = config.workers.max(1);
        let body_limit = config.body_limit_bytes;
        let limiter = web::Data::new(RateLimiter::new(config.rate_limit));
        let state = web::Data::new(AppState {
            schema,
            pool,
            checkpoints,
            live,
            connections: Connections::default(),
            config,
            auth,
        });
        crate::metrics::register();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    service_kit::http_trace::trace_request,
                ))
                .app_data(state.clone())
                .app_data(limiter.clone())
                .wrap(actix_web::middleware::from_fn(
                    service_kit::http_body::body_deadline,
                ))
                .wrap(actix_web::middleware::from_fn(http::rate_limit))
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(http::json_error),
                )
                .service(routes::refusing_others(
                    web::resource("/graphql")
                        .name("/graphql")
                        .route(web::post().to(http::graphql))
                        .route(
                            web::get()
                                .guard(actix_web::guard::fn_guard(ws::is_upgrade))
                                .to(ws::subscribe),
                        )
                        .route(web::get().to(http::graphiql))
                        .route(web::head().to(http::graphiql)),
                    routes::allowed(&[Method::GET, Method::POST]),
                    http::method_not_allowed,
                ))
                .service(get_only("/schema.graphql", http::sdl))
                .service(get_only("/healthz", health::healthz))
                .service(get_only("/readyz", http::readyz))
                .service(get_only(METRICS_PATH, metrics_page))
                .configure(console::configure)
                .default_service(web::to(http::not_found))
                // The rate limit counts per principal, so it runs after authentication, and
                // every answer, 401 and 429 included, is measured (the middleware wrapped last
                // runs first).
                .wrap(from_fn(auth::authenticate))
                .wrap(from_fn(record_requests))
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

    /// Serves until SIGTERM or Ctrl-C, then drains and stops.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// A resource served on `GET` (and `HEAD`), refusing any other method with 405.
pub(crate) fn get_only<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    routes::only(path, Method::GET, handler, http::method_not_allowed)
}

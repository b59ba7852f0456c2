//! Configuration from the environment, with defaults for a local run.

use service_kit::auth::AuthConfig;
use service_kit::rate_limit::RateLimit;
use service_kit::SecretUrl;
use std::net::SocketAddr;
use std::time::Duration;

/// The query API's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MILESTONE_READ_MODEL_URL`: the projector's PostgreSQL database.
    pub read_model_url: SecretUrl,
    /// `MILESTONE_EVENT_STORE_URL`: the event log, read for the projection's lag.
    pub event_store_url: SecretUrl,
    /// `MILESTONE_QUERY_API_ADDR` (default 127.0.0.1:8081).
    pub listen: SocketAddr,
    /// `MILESTONE_DB_POOL_SIZE` (default 16).
    pub pool_size: usize,
    /// `MILESTONE_READ_YOUR_WRITES_TIMEOUT_MS` (default 2000): how long a query with a
    /// consistency token waits for the projection to reach it.
    pub read_your_writes_timeout: Duration,
    /// `MILESTONE_MAX_PAGE_SIZE` (default 100): the largest `first` accepted.
    pub max_page_size: i32,
    /// `MILESTONE_QUERY_MAX_DEPTH` (default 10).
    pub max_depth: usize,
    /// `MILESTONE_QUERY_MAX_COMPLEXITY` (default 2000).
    pub max_complexity: usize,
    /// `MILESTONE_BODY_LIMIT_BYTES` (default 65536).
    pub body_limit_bytes: usize,
    /// `MILESTONE_HTTP_WORKERS` (default: one per core).
    pub workers: usize,
    /// `MILESTONE_WS_MAX_CONNECTIONS` (default 10000): open subscription websockets, at most.
    pub max_connections: usize,
    /// `MILESTONE_WS_MAX_SUBSCRIPTIONS` (default 20): subscriptions per websocket, at most.
    pub max_subscriptions_per_connection: usize,
    /// `MILESTONE_WS_INIT_TIMEOUT_MS` (default 10000): how long a websocket may stay open
    /// without its `connection_init`.
    pub connection_init_timeout: Duration,
    /// `MILESTONE_WS_KEEPALIVE_TIMEOUT_MS` (default 0, off): a websocket whose client sends no
    /// message (a ping counts) for this long is closed. The server also pings every 5 s at the
    /// websocket level and drops a connection that does not answer within 10 s.
    pub keepalive_timeout: Option<Duration>,
    /// `MILESTONE_SUBSCRIPTION_BUFFER` (default 256): how many committed batches a subscriber
    /// may fall behind before its subscription is closed with `SUBSCRIBER_TOO_SLOW` and the
    /// token to resume from.
    pub subscription_buffer: usize,
    /// `MILESTONE_RATE_LIMIT` (`on`/`off`), `MILESTONE_RATE_LIMIT_PER_SECOND` (default 500),
    /// `MILESTONE_RATE_LIMIT_BURST` (default 1000): `POST /graphql` requests per caller; `None`
    /// when off.
    pub rate_limit: Option<RateLimit>,
    /// `MILESTONE_AUTH_*`: how bearer tokens are checked (see [`AuthConfig::from_env`]).
    pub auth: AuthConfig,
    /// `MILESTONE_CONSOLE_COMMAND_API_URL` (default http://127.0.0.1:8080): the command API the
    /// operations console on `/console` sends its actions (escalations) to. That API must allow
    /// this one's origin (its `MILESTONE_CORS_ALLOWED_ORIGINS`).
    pub console_command_api_url: String,
    /// The projector's settings, read from its own variables (deadlines included): the
    /// `retryParked` repair applies an instance's parked events as the projector does.
    pub projector: projector::Config,
}

pub const DEFAULT_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/milestone";
/// Where the command API listens by default.
pub const DEFAULT_COMMAND_API_URL: &str = "http://127.0.0.1:8080";
/// Connections of the repair's projector runtimes: a retry is rare and short.
const REPAIR_POOL_SIZE: usize = 2;

impl Config {
    /// Defaults for a local database holding both the event log and the read models, serving
    /// every request without a token and without a rate limit (set `auth` and `rate_limit` to
    /// check them).
    pub fn local(url: &str) -> Self {
        Self {
            read_model_url: url.into(),
            event_store_url: url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            pool_size: 16,
            read_your_writes_timeout: Duration::from_millis(2000),
            max_page_size: 100,
            max_depth: 10,
            max_complexity: 2000,
            body_limit_bytes: 64 * 1024,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_connections: 10_000,
            max_subscriptions_per_connection: 20,
            connection_init_timeout: Duration::from_millis(10_000),
            keepalive_timeout: None,
            subscription_buffer: 256,
            rate_limit: None,
            auth: AuthConfig::Disabled,
            console_command_api_url: DEFAULT_COMMAND_API_URL.to_owned(),
            projector: projector::Config {
                pool_size: REPAIR_POOL_SIZE,
                ..projector::Config::local(url)
            },
        }
    }

    /// Reads the environment.
    ///
    /// # Errors
    /// A message naming the variable whose value does not parse.
    pub fn from_env() -> Result<Self, String> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
            match std::env::var(name) {
                Ok(v) => v.parse().map_err(|_| format!("{name}='{v}' is not valid")),
                Err(_) => Ok(default),
            }
        }
        let d = Self::local(DEFAULT_URL);
        let read_model_url: SecretUrl = var("MILESTONE_READ_MODEL_URL", d.read_model_url)?;
        let event_store_url: SecretUrl = var("MILESTONE_EVENT_STORE_URL", d.event_store_url)?;
        let projector = projector::Config {
            read_model_url: read_model_url.clone(),
            event_store_url: event_store_url.clone(),
            pool_size: REPAIR_POOL_SIZE,
            ..projector::Config::from_env()?
        };
        Ok(Self {
            read_model_url,
            event_store_url,
            listen: var("MILESTONE_QUERY_API_ADDR", d.listen)?,
            pool_size: var("MILESTONE_DB_POOL_SIZE", d.pool_size)?,
            read_your_writes_timeout: Duration::from_millis(var(
                "MILESTONE_READ_YOUR_WRITES_TIMEOUT_MS",
                2000,
            )?),
            max_page_size: var("MILESTONE_MAX_PAGE_SIZE", d.max_page_size)?,
            max_depth: var("MILESTONE_QUERY_MAX_DEPTH", d.max_depth)?,
            max_complexity: var("MILESTONE_QUERY_MAX_COMPLEXITY", d.max_complexity)?,
            body_limit_bytes: var("MILESTONE_BODY_LIMIT_BYTES", d.body_limit_bytes)?,
            workers: var("MILESTONE_HTTP_WORKERS", d.workers)?,
            max_connections: var("MILESTONE_WS_MAX_CONNECTIONS", d.max_connections)?,
            max_subscriptions_per_connection: var(
                "MILESTONE_WS_MAX_SUBSCRIPTIONS",
                d.max_subscriptions_per_connection,
            )?,
            connection_init_timeout: Duration::from_millis(var(
                "MILESTONE_WS_INIT_TIMEOUT_MS",
                10_000,
            )?),
            keepalive_timeout: match var("MILESTONE_WS_KEEPALIVE_TIMEOUT_MS", 0u64)? {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            subscription_buffer: var("MILESTONE_SUBSCRIPTION_BUFFER", d.subscription_buffer)?
                .max(1),
            rate_limit: RateLimit::from_env()?,
            auth: AuthConfig::from_env().map_err(|e| e.to_string())?,
            console_command_api_url: var(
                "MILESTONE_CONSOLE_COMMAND_API_URL",
                d.console_command_api_url,
            )?
            .trim_end_matches('/')
            .to_owned(),
            projector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_the_config_never_shows_a_database_password() {
        let mut config = Config::local("postgres://reader:hunter2@read-models.internal/milestone");
        config.event_store_url = "postgres://writer:s3cret@events.internal/milestone".into();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://reader:***@read-models.internal/milestone"),
            "{shown}"
        );
    }
}

//! Configuration from the environment, with defaults for a local run.

use crate::cors::AllowedOrigins;
use event_store::postgres::GroupCommit;
use service_kit::auth::AuthConfig;
use service_kit::rate_limit::RateLimit;
use service_kit::SecretUrl;
use std::net::SocketAddr;

/// The command API's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MILESTONE_EVENT_STORE_URL`: `postgres://...` or `kurrentdb://...`.
    pub event_store_url: SecretUrl,
    /// `MILESTONE_COMMAND_API_ADDR`: where to listen.
    pub listen: SocketAddr,
    /// `MILESTONE_DB_POOL_SIZE`: PostgreSQL connections.
    pub pool_size: usize,
    /// `MILESTONE_BODY_LIMIT_BYTES`: the largest request body accepted.
    pub body_limit_bytes: usize,
    /// `MILESTONE_HTTP_WORKERS`: actix workers (default: one per core).
    pub workers: usize,
    /// `MILESTONE_GROUP_COMMIT`: `off`, `on` or a number of groups in flight: whether (and how)
    /// the PostgreSQL store commits appends made at the same time together.
    pub group_commit: GroupCommit,
    /// `MILESTONE_RATE_LIMIT` (`on`/`off`), `MILESTONE_RATE_LIMIT_PER_SECOND` (default 500),
    /// `MILESTONE_RATE_LIMIT_BURST` (default 1000): commands per caller; `None` when off.
    pub rate_limit: Option<RateLimit>,
    /// `MILESTONE_AUTH_*`: how bearer tokens are checked (see [`AuthConfig::from_env`]).
    pub auth: AuthConfig,
    /// `MILESTONE_CORS_ALLOWED_ORIGINS`: comma-separated origins whose browser pages may send
    /// commands (e.g. the operations console's, `http://127.0.0.1:8081`); none by default.
    pub cors_allowed_origins: AllowedOrigins,
}

pub const DEFAULT_EVENT_STORE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/milestone";

impl Config {
    /// For tests and benchmarks: the command API on `event_store_url`, on a free port of
    /// 127.0.0.1, with two workers, a pool of 8, and neither authentication, rate limits nor
    /// browser origins (each test of those sets its own).
    pub fn local(event_store_url: &str) -> Self {
        Self {
            event_store_url: event_store_url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            pool_size: 8,
            body_limit_bytes: 64 * 1024,
            workers: 2,
            group_commit: GroupCommit::default(),
            rate_limit: None,
            auth: AuthConfig::Disabled,
            cors_allowed_origins: AllowedOrigins::default(),
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
        Ok(Self {
            event_store_url: var("MILESTONE_EVENT_STORE_URL", DEFAULT_EVENT_STORE_URL.into())?,
            listen: var(
                "MILESTONE_COMMAND_API_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            pool_size: var("MILESTONE_DB_POOL_SIZE", 16)?,
            body_limit_bytes: var("MILESTONE_BODY_LIMIT_BYTES", 64 * 1024)?,
            workers: var(
                "MILESTONE_HTTP_WORKERS",
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )?,
            group_commit: var("MILESTONE_GROUP_COMMIT", GroupCommit::default())?,
            rate_limit: RateLimit::from_env()?,
            auth: AuthConfig::from_env().map_err(|e| e.to_string())?,
            cors_allowed_origins: match std::env::var("MILESTONE_CORS_ALLOWED_ORIGINS") {
                Ok(v) => v
                    .parse()
                    .map_err(|e| format!("MILESTONE_CORS_ALLOWED_ORIGINS: {e}"))?,
                Err(_) => AllowedOrigins::default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_the_config_never_shows_the_event_store_password() {
        let config = Config::local("postgres://milestone:hunter2@db.internal:5432/milestone");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://milestone:***@db.internal:5432/milestone"),
            "{shown}"
        );
    }
}

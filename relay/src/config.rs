//! Configuration from the environment, with defaults for a local run.

use crate::publisher::{Backoff, StreamSettings};
use service_kit::SecretUrl;
use std::time::Duration;

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MILESTONE_EVENT_STORE_URL`: the log to follow (PostgreSQL or KurrentDB).
    pub event_store_url: SecretUrl,
    /// `MILESTONE_READ_MODEL_URL`: the PostgreSQL database of the relay's checkpoints, dead
    /// letters and lease (the read-model database, where the query API shows relay status).
    pub read_model_url: SecretUrl,
    /// `MILESTONE_NATS_URL` (default `nats://127.0.0.1:4222`); shown with its password hidden.
    pub nats_url: SecretUrl,
    /// `MILESTONE_RELAY_STREAM` (default `MILESTONE`): the JetStream stream, subjects
    /// `milestone.>`, file storage.
    pub stream: StreamSettings,
    /// `MILESTONE_RELAY_BATCH_SIZE` (default 1000): most events per checkpoint move.
    pub batch_size: usize,
    /// `MILESTONE_RELAY_ACK_TIMEOUT_MS` (default 5000): how long to wait for JetStream's ack.
    pub ack_timeout: Duration,
    /// `MILESTONE_RELAY_BACKOFF_INITIAL_MS` (default 100) and `MILESTONE_RELAY_BACKOFF_MAX_MS`
    /// (default 10000): retry delays while the broker is down or slow.
    pub backoff: Backoff,
    /// `MILESTONE_RELAY_LEASE_TTL_MS` (default 5000): a standby takes over within about this long.
    pub lease_ttl: Duration,
    /// `MILESTONE_RELAY_STANDBY_POLL_MS` (default 1000): how often a standby tries.
    pub standby_poll: Duration,
    /// `MILESTONE_RELAY_STATE_CACHE` (default 10000): instance states kept between events.
    pub state_cache: usize,
    /// `MILESTONE_DB_POOL_SIZE` (default 4).
    pub pool_size: usize,
}

pub const DEFAULT_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/milestone";

impl Config {
    /// Defaults for one database holding the events and the read models, and a local NATS.
    pub fn local(url: &str, nats_url: &str) -> Self {
        Self {
            event_store_url: SecretUrl::new(url),
            read_model_url: SecretUrl::new(url),
            nats_url: SecretUrl::new(nats_url),
            stream: StreamSettings {
                name: "MILESTONE".to_owned(),
                // `MILESTONE_RELAY_DUPLICATE_WINDOW_SECS` (default 120).
                duplicate_window: Duration::from_secs(120),
                // `MILESTONE_RELAY_MAX_MESSAGE_BYTES` (default -1: the server's limit).
                max_message_bytes: -1,
            },
            batch_size: 1000,
            ack_timeout: Duration::from_secs(5),
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            lease_ttl: Duration::from_secs(5),
            standby_poll: Duration::from_secs(1),
            state_cache: 10_000,
            pool_size: 4,
        }
    }

    /// Reads the environment.
    ///
    /// # Errors
    /// A message naming the variable that does not parse.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let store = var("MILESTONE_EVENT_STORE_URL").unwrap_or_else(|| DEFAULT_URL.to_owned());
        let nats = var("MILESTONE_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        let mut c = Self::local(&store, &nats);
        if let Some(url) = var("MILESTONE_READ_MODEL_URL") {
            c.read_model_url = SecretUrl::new(&url);
        }
        fn num<T: std::str::FromStr>(
            name: &str,
            value: Option<String>,
            default: T,
        ) -> Result<T, String> {
            match value {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("{name} must be a number, not '{v}'")),
            }
        }
        // A duration in milliseconds, at least `min` ms: a lease of no time is never held, a
        // poll of no time spins.
        let ms = |name: &str, default: Duration, min: u64| -> Result<Duration, String> {
            let value = num(name, var(name), default.as_millis() as u64)?;
            if value < min {
                return Err(format!(
                    "{name} must be at least {min} (milliseconds), not {value}"
                ));
            }
            Ok(Duration::from_millis(value))
        };
        if let Some(s) = var("MILESTONE_RELAY_STREAM") {
            c.stream.name = s;
        }
        c.stream.duplicate_window = Duration::from_secs(num(
            "MILESTONE_RELAY_DUPLICATE_WINDOW_SECS",
            var("MILESTONE_RELAY_DUPLICATE_WINDOW_SECS"),
            c.stream.duplicate_window.as_secs(),
        )?);
        c.stream.max_message_bytes = num(
            "MILESTONE_RELAY_MAX_MESSAGE_BYTES",
            var("MILESTONE_RELAY_MAX_MESSAGE_BYTES"),
            c.stream.max_message_bytes,
        )?;
        c.batch_size = num(
            "MILESTONE_RELAY_BATCH_SIZE",
            var("MILESTONE_RELAY_BATCH_SIZE"),
            c.batch_size,
        )?
        .max(1);
        c.ack_timeout = ms("MILESTONE_RELAY_ACK_TIMEOUT_MS", c.ack_timeout, 1)?;
        c.backoff.initial = ms("MILESTONE_RELAY_BACKOFF_INITIAL_MS", c.backoff.initial, 1)?;
        c.backoff.max = ms("MILESTONE_RELAY_BACKOFF_MAX_MS", c.backoff.max, 1)?;
        c.lease_ttl = ms("MILESTONE_RELAY_LEASE_TTL_MS", c.lease_ttl, 500)?;
        c.standby_poll = ms("MILESTONE_RELAY_STANDBY_POLL_MS", c.standby_poll, 10)?;
        c.state_cache = num(
            "MILESTONE_RELAY_STATE_CACHE",
            var("MILESTONE_RELAY_STATE_CACHE"),
            c.state_cache,
        )?
        .max(1);
        c.pool_size = num(
            "MILESTONE_DB_POOL_SIZE",
            var("MILESTONE_DB_POOL_SIZE"),
            c.pool_size,
        )?;
        if c.backoff.max < c.backoff.initial {
            return Err(format!(
                "MILESTONE_RELAY_BACKOFF_MAX_MS ({}) must not be below MILESTONE_RELAY_BACKOFF_INITIAL_MS ({})",
                c.backoff.max.as_millis(),
                c.backoff.initial.as_millis()
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test runs in a process of its own (cargo nextest), so setting variables is safe.
    fn from(vars: &[(&str, &str)]) -> Result<Config, String> {
        for (name, value) in vars {
            std::env::set_var(name, value);
        }
        Config::from_env()
    }

    #[test]
    fn a_lease_of_no_time_is_refused_naming_its_variable() {
        let e = from(&[("MILESTONE_RELAY_LEASE_TTL_MS", "0")]).unwrap_err();
        assert!(
            e.contains("MILESTONE_RELAY_LEASE_TTL_MS must be at least 500"),
            "{e}"
        );
    }

    #[test]
    fn a_standby_poll_of_no_time_is_refused_naming_its_variable() {
        let e = from(&[("MILESTONE_RELAY_STANDBY_POLL_MS", "0")]).unwrap_err();
        assert!(
            e.contains("MILESTONE_RELAY_STANDBY_POLL_MS must be at least 10"),
            "{e}"
        );
    }

    #[test]
    fn a_backoff_bound_below_its_first_delay_is_refused() {
        let e = from(&[
            ("MILESTONE_RELAY_BACKOFF_INITIAL_MS", "500"),
            ("MILESTONE_RELAY_BACKOFF_MAX_MS", "100"),
        ])
        .unwrap_err();
        assert!(e.contains("MILESTONE_RELAY_BACKOFF_MAX_MS (100)"), "{e}");
    }

    #[test]
    fn the_nats_password_never_shows_in_the_printed_configuration() {
        let c = from(&[(
            "MILESTONE_NATS_URL",
            "nats://relay:s3cret-pass@127.0.0.1:4222",
        )])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-pass"), "{shown}");
        assert!(shown.contains("nats://relay:***@127.0.0.1:4222"), "{shown}");
        assert_eq!(
            c.nats_url.expose(),
            "nats://relay:s3cret-pass@127.0.0.1:4222"
        );
    }
}

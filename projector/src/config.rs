//! Configuration from the environment, with defaults for a local run.

use domain::Status;
use service_kit::SecretUrl;
use std::time::Duration;

/// How long each step may take before an order counts as overdue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines {
    /// `MILESTONE_DEADLINE_PLACED_SECS` (default 30 min): payment and stock to answer.
    pub placed: chrono::Duration,
    /// `MILESTONE_DEADLINE_ACCEPTED_SECS` (default 24 h): the warehouse to start.
    pub accepted: chrono::Duration,
    /// `MILESTONE_DEADLINE_IN_FULFILLMENT_SECS` (default 48 h): to ship.
    pub in_fulfillment: chrono::Duration,
    /// `MILESTONE_DEADLINE_SHIPPED_SECS` (default 14 days): the carrier to deliver.
    pub shipped: chrono::Duration,
    /// `MILESTONE_DEADLINE_COMPENSATION_SECS` (default 1 h): owed voids and releases.
    pub compensation: chrono::Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            placed: chrono::Duration::minutes(30),
            accepted: chrono::Duration::hours(24),
            in_fulfillment: chrono::Duration::hours(48),
            shipped: chrono::Duration::days(14),
            compensation: chrono::Duration::hours(1),
        }
    }
}

impl Deadlines {
    /// The time allowed in `status`; `owes` is true when compensations are outstanding.
    pub fn for_status(&self, status: Status, owes: bool) -> chrono::Duration {
        match status {
            Status::Placed => self.placed,
            Status::Accepted => self.accepted,
            Status::InFulfillment => self.in_fulfillment,
            Status::Shipped => self.shipped,
            Status::Delivered | Status::Rejected | Status::Cancelled if owes => self.compensation,
            Status::Delivered | Status::Rejected | Status::Cancelled => chrono::Duration::zero(),
        }
    }
}

/// The projector's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MILESTONE_EVENT_STORE_URL`: where events are read from.
    pub event_store_url: SecretUrl,
    /// `MILESTONE_READ_MODEL_URL`: the PostgreSQL database of the read models (default: the
    /// same database as the local event store).
    pub read_model_url: SecretUrl,
    /// `MILESTONE_DB_POOL_SIZE`.
    pub pool_size: usize,
    /// `MILESTONE_PROJECTOR_BATCH_SIZE`: most events per transaction while following the live
    /// log (default 1000).
    pub batch_size: usize,
    /// `MILESTONE_PROJECTOR_CATCH_UP_BATCH_SIZE`: most events per transaction while catching up
    /// with a backlog and during a rebuild (default 16000): larger transactions spread each
    /// batch's fixed costs and gather more of an instance's events into one write of its row
    /// (on an interleaved log, 4000-event batches wrote each order's row about three times), and
    /// nobody waits on a single event's latency then.
    pub catch_up_batch_size: usize,
    /// `MILESTONE_PROJECTOR_BATCH_WAIT_MS`: how long a live batch waits to fill (default 5).
    pub batch_wait: Duration,
    /// `MILESTONE_PROJECTOR_STANDBY_POLL_MS`: how often a standby tries to take over (default 1000).
    pub standby_poll: Duration,
    /// `MILESTONE_PROJECTOR_LEASE_TTL_MS`: how long the active instance's lease lasts without
    /// renewal (default 5000; renewed every fifth of it). A standby takes over within about this
    /// long after the active host vanishes.
    pub lease_ttl: Duration,
    /// `MILESTONE_PROJECTOR_PARTITIONS`: how many partitions each projection runs as (default
    /// 1, at most 64). Streams are split by a hash of their id; each partition has its own
    /// checkpoint, lease and fencing token, and each instance claims the partitions nobody
    /// holds. Every instance must be given the same count.
    pub partitions: u32,
    pub deadlines: Deadlines,
    /// `MILESTONE_REMINDER_SPACING_SECS` (default 15 min): the time between two reminders of
    /// an overdue instance's pending work, which sets every status table's `next_reminder_at`.
    pub reminder_spacing: chrono::Duration,
}

pub const DEFAULT_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/milestone";

impl Config {
    /// Defaults for one database holding both the events and the read models.
    pub fn local(url: &str) -> Self {
        Self {
            event_store_url: url.into(),
            read_model_url: url.into(),
            pool_size: 4,
            batch_size: 1000,
            catch_up_batch_size: 16_000,
            batch_wait: Duration::from_millis(5),
            standby_poll: Duration::from_millis(1000),
            lease_ttl: Duration::from_millis(5000),
            partitions: 1,
            deadlines: Deadlines::default(),
            reminder_spacing: crate::status_table::DEFAULT_REMINDER_SPACING,
        }
    }

    /// Reads the environment.
    ///
    /// # Errors
    /// A message naming the variable whose value does not parse.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Config::from_env`], with the variables read by `lookup`.
    ///
    /// # Errors
    /// A message naming the variable whose value does not parse.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let lookup: &dyn Fn(&str) -> Option<String> = &lookup;
        fn get<T: std::str::FromStr>(
            lookup: &dyn Fn(&str) -> Option<String>,
            name: &str,
            default: T,
        ) -> Result<T, String> {
            match lookup(name) {
                Some(v) => v.parse().map_err(|_| format!("{name}='{v}' is not valid")),
                None => Ok(default),
            }
        }
        // Bounded like the returns deadlines: a deadline is added to event times, and a longer
        // one would overflow them.
        let secs = |name: &str, default: chrono::Duration| match lookup(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map(|secs| chrono::Duration::seconds(i64::from(secs)))
                .map_err(|_| {
                    format!(
                        "{name}='{v}' is not a whole number of seconds between 0 and {}",
                        u32::MAX
                    )
                }),
        };
        let event_store_url = get(lookup, "MILESTONE_EVENT_STORE_URL", DEFAULT_URL.into())?;
        let read_model_url = get(lookup, "MILESTONE_READ_MODEL_URL", DEFAULT_URL.into())?;
        let d = Deadlines::default();
        let batch = |name: &str, default: usize| match get(lookup, name, default)? {
            n @ 1..=20_000 => Ok(n),
            _ => Err(format!("{name} must be between 1 and 20000")),
        };
        let batch_size = batch("MILESTONE_PROJECTOR_BATCH_SIZE", 1000)?;
        let catch_up_batch_size = batch("MILESTONE_PROJECTOR_CATCH_UP_BATCH_SIZE", 16_000)?;
        let lease_ttl = match get(lookup, "MILESTONE_PROJECTOR_LEASE_TTL_MS", 5000u64)? {
            ms @ 500..=600_000 => Duration::from_millis(ms),
            _ => {
                return Err(
                    "MILESTONE_PROJECTOR_LEASE_TTL_MS must be between 500 and 600000".into(),
                )
            }
        };
        let partitions = match get(lookup, "MILESTONE_PROJECTOR_PARTITIONS", 1u32)? {
            n @ 1..=64 => n,
            _ => return Err("MILESTONE_PROJECTOR_PARTITIONS must be between 1 and 64".into()),
        };
        let reminder_spacing = match lookup("MILESTONE_REMINDER_SPACING_SECS") {
            None => crate::status_table::DEFAULT_REMINDER_SPACING,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(secs @ 1..) => chrono::Duration::seconds(i64::from(secs)),
                _ => {
                    return Err(format!(
                        "MILESTONE_REMINDER_SPACING_SECS='{v}' is not a whole number of seconds between 1 and {}",
                        u32::MAX
                    ))
                }
            },
        };
        Ok(Self {
            event_store_url,
            read_model_url,
            pool_size: get(lookup, "MILESTONE_DB_POOL_SIZE", 4)?,
            batch_size,
            catch_up_batch_size,
            batch_wait: Duration::from_millis(get(lookup, "MILESTONE_PROJECTOR_BATCH_WAIT_MS", 5)?),
            standby_poll: Duration::from_millis(get(
                lookup,
                "MILESTONE_PROJECTOR_STANDBY_POLL_MS",
                1000,
            )?),
            lease_ttl,
            partitions,
            deadlines: Deadlines {
                placed: secs("MILESTONE_DEADLINE_PLACED_SECS", d.placed)?,
                accepted: secs("MILESTONE_DEADLINE_ACCEPTED_SECS", d.accepted)?,
                in_fulfillment: secs("MILESTONE_DEADLINE_IN_FULFILLMENT_SECS", d.in_fulfillment)?,
                shipped: secs("MILESTONE_DEADLINE_SHIPPED_SECS", d.shipped)?,
                compensation: secs("MILESTONE_DEADLINE_COMPENSATION_SECS", d.compensation)?,
            },
            reminder_spacing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_the_config_never_shows_a_database_password() {
        let mut config = Config::local("postgres://projector:hunter2@events.internal/milestone");
        config.read_model_url = "postgres://projector:s3cret@read-models.internal/milestone".into();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://projector:***@events.internal/milestone"),
            "{shown}"
        );
    }

    #[test]
    fn a_deadline_too_long_to_add_to_event_times_is_refused_naming_its_variable() {
        let err = Config::from_lookup(|name| {
            (name == "MILESTONE_DEADLINE_SHIPPED_SECS").then(|| i64::MAX.to_string())
        })
        .unwrap_err();
        assert!(err.contains("MILESTONE_DEADLINE_SHIPPED_SECS"), "{err}");
        assert!(err.contains("between 0 and 4294967295"), "{err}");
    }

    #[test]
    fn a_reminder_spacing_of_no_time_is_refused_naming_its_variable() {
        for bad in ["0", "soon", "-5"] {
            let err = Config::from_lookup(|name| {
                (name == "MILESTONE_REMINDER_SPACING_SECS").then(|| bad.to_owned())
            })
            .unwrap_err();
            assert!(err.contains("MILESTONE_REMINDER_SPACING_SECS"), "{err}");
        }
        let config = Config::from_lookup(|name| {
            (name == "MILESTONE_REMINDER_SPACING_SECS").then(|| "4".to_owned())
        })
        .unwrap();
        assert_eq!(config.reminder_spacing, chrono::Duration::seconds(4));
    }

    #[test]
    fn a_deadline_variable_sets_its_step() {
        let config = Config::from_lookup(|name| {
            (name == "MILESTONE_DEADLINE_PLACED_SECS").then(|| "90".to_owned())
        })
        .unwrap();
        assert_eq!(config.deadlines.placed, chrono::Duration::seconds(90));
        assert_eq!(config.deadlines.shipped, Deadlines::default().shipped);
    }
}

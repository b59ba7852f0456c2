//! The reconciler's settings, from the environment, with defaults for a local run.

use service_kit::SecretUrl;
use std::time::Duration;

/// A setting whose value does not parse or is out of range.
#[derive(Debug, thiserror::Error)]
#[error("{variable}='{value}' is not valid: expected {expected}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// What the reconciler does and how often.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MILESTONE_EVENT_STORE_URL`: where the instances' streams are read and commands append.
    pub event_store_url: SecretUrl,
    /// `MILESTONE_READ_MODEL_URL`: the read models that name the overdue instances (default:
    /// the same database as the local event store); the lease is kept there too.
    pub read_model_url: SecretUrl,
    /// `MILESTONE_DB_POOL_SIZE` (default 4).
    pub pool_size: usize,
    /// `MILESTONE_RECONCILER_INTERVAL_MS` (default 30000, between 100 and 3600000): the time
    /// between two reconciliation runs.
    pub interval: Duration,
    /// `MILESTONE_REMINDER_SPACING_SECS` (default 900, at least 1): the time between two
    /// reminders of the same wait; the projector reads the same variable to show the next
    /// reminder.
    pub reminder_spacing: chrono::Duration,
    /// `MILESTONE_RECONCILER_MAX_REMINDERS` (K, default 3, at most 100): reminders recorded
    /// before the instance is escalated; 0 escalates at the deadline.
    pub max_reminders: u32,
    /// `MILESTONE_RECONCILER_BATCH_SIZE` (default 100, between 1 and 10000): instances of one
    /// workflow read per page; a run pages through every due instance.
    pub batch_size: i64,
    /// `MILESTONE_RECONCILER_LEASE_TTL_MS` (default 5000, between 500 and 600000): how long the
    /// active reconciler's lease lasts without renewal; a standby takes over within about this
    /// long.
    pub lease_ttl: Duration,
    /// `MILESTONE_RECONCILER_STANDBY_POLL_MS` (default 1000, between 10 and 60000): how often a
    /// standby tries to take the lease.
    pub standby_poll: Duration,
}

pub const DEFAULT_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/milestone";

impl Config {
    /// Defaults for one database holding the events and the read models.
    pub fn local(url: &str) -> Self {
        Self {
            event_store_url: url.into(),
            read_model_url: url.into(),
            pool_size: 4,
            interval: Duration::from_secs(30),
            reminder_spacing: chrono::Duration::minutes(15),
            max_reminders: 3,
            batch_size: 100,
            lease_ttl: Duration::from_millis(5000),
            standby_poll: Duration::from_millis(1000),
        }
    }

    /// Reads the environment.
    ///
    /// # Errors
    /// The first variable whose value does not parse or is out of range.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Config::from_env`], with the variables read by `lookup`.
    ///
    /// # Errors
    /// The first variable whose value does not parse or is out of range.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number =
            |variable: &'static str, default: u64, min: u64, max: u64, expected| match lookup(
                variable,
            ) {
                None => Ok(default),
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(ConfigError {
                        variable,
                        value,
                        expected,
                    }),
                },
            };
        let d = Self::local(DEFAULT_URL);
        let event_store_url: SecretUrl = lookup("MILESTONE_EVENT_STORE_URL")
            .unwrap_or_else(|| DEFAULT_URL.to_owned())
            .into();
        let read_model_url = lookup("MILESTONE_READ_MODEL_URL")
            .unwrap_or_else(|| DEFAULT_URL.to_owned())
            .into();
        Ok(Self {
            event_store_url,
            read_model_url,
            pool_size: number(
                "MILESTONE_DB_POOL_SIZE",
                4,
                1,
                1000,
                "a pool size between 1 and 1000",
            )? as usize,
            interval: Duration::from_millis(number(
                "MILESTONE_RECONCILER_INTERVAL_MS",
                d.interval.as_millis() as u64,
                100,
                3_600_000,
                "whole milliseconds between 100 and 3600000",
            )?),
            reminder_spacing: chrono::Duration::seconds(number(
                "MILESTONE_REMINDER_SPACING_SECS",
                d.reminder_spacing.num_seconds() as u64,
                1,
                u64::from(u32::MAX),
                "whole seconds between 1 and 4294967295",
            )? as i64),
            max_reminders: number(
                "MILESTONE_RECONCILER_MAX_REMINDERS",
                u64::from(d.max_reminders),
                0,
                100,
                "a number of reminders between 0 and 100",
            )? as u32,
            batch_size: number(
                "MILESTONE_RECONCILER_BATCH_SIZE",
                d.batch_size as u64,
                1,
                10_000,
                "a number of instances between 1 and 10000",
            )? as i64,
            lease_ttl: Duration::from_millis(number(
                "MILESTONE_RECONCILER_LEASE_TTL_MS",
                5000,
                500,
                600_000,
                "whole milliseconds between 500 and 600000",
            )?),
            standby_poll: Duration::from_millis(number(
                "MILESTONE_RECONCILER_STANDBY_POLL_MS",
                1000,
                10,
                60_000,
                "whole milliseconds between 10 and 60000",
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(variable: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |name| (name == variable).then(|| value.to_owned())
    }

    #[test]
    fn each_setting_out_of_range_is_refused_naming_its_variable_and_what_it_expects() {
        for (variable, value) in [
            ("MILESTONE_RECONCILER_INTERVAL_MS", "50"),
            ("MILESTONE_RECONCILER_INTERVAL_MS", "often"),
            ("MILESTONE_REMINDER_SPACING_SECS", "0"),
            ("MILESTONE_RECONCILER_MAX_REMINDERS", "101"),
            ("MILESTONE_RECONCILER_MAX_REMINDERS", "-1"),
            ("MILESTONE_RECONCILER_BATCH_SIZE", "0"),
            ("MILESTONE_RECONCILER_LEASE_TTL_MS", "100"),
        ] {
            let err = Config::from_lookup(only(variable, value)).unwrap_err();
            assert_eq!(err.variable, variable);
            let text = err.to_string();
            assert!(
                text.contains(variable) && text.contains("expected"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_settings_set_interval_spacing_and_the_number_of_reminders() {
        let config = Config::from_lookup(|name| match name {
            "MILESTONE_RECONCILER_INTERVAL_MS" => Some("250".to_owned()),
            "MILESTONE_REMINDER_SPACING_SECS" => Some("2".to_owned()),
            "MILESTONE_RECONCILER_MAX_REMINDERS" => Some("0".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.interval, Duration::from_millis(250));
        assert_eq!(config.reminder_spacing, chrono::Duration::seconds(2));
        assert_eq!(config.max_reminders, 0);
        assert_eq!(config.batch_size, 100);
    }

    #[test]
    fn formatting_the_config_never_shows_a_database_password() {
        let config = Config::local("postgres://reconciler:hunter2@db.internal/milestone");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}

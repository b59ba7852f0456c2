//! Logs: JSON on stderr for the services, quiet tests unless `TEST_LOG` is set.

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is not set: the services' own logs, without the driver's chatter.
const DEFAULT_FILTER: &str = "info,tokio_postgres=warn";

/// The environment variable that makes tests print their logs.
pub const TEST_LOG: &str = "TEST_LOG";

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the global subscriber of a service: JSON lines on stderr, filtered by `RUST_LOG`
/// (default `info`, the PostgreSQL driver at `warn`). Installs it once; later calls do nothing.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .try_init();
}

/// For tests: when `TEST_LOG` is set, prints logs (text, filtered by `RUST_LOG`) through the
/// test harness's capture; otherwise installs nothing and the tests stay quiet. Call it from
/// every test's setup: it installs the subscriber once, whatever the number of calls.
///
/// Returns whether logs are printed.
pub fn init_test_tracing() -> bool {
    if std::env::var_os(TEST_LOG).is_none() {
        return false;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_test_writer()
        .try_init();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_logs_follow_test_log_and_can_be_installed_again() {
        let expected = std::env::var_os(TEST_LOG).is_some();
        assert_eq!(init_test_tracing(), expected);
        assert_eq!(init_test_tracing(), expected);
    }

    #[test]
    fn installing_the_service_logs_twice_is_harmless() {
        init_tracing();
        init_tracing();
    }
}

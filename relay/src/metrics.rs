//! The relay's metrics, each declared once: what it published and set aside, how often it was
//! interrupted, and how far it is behind the log.

use domain::{Orders, Returns, Workflow};
use service_kit::metrics::{
    counter, gauge, gauge_f64, preregister, Counter, Family, Gauge, GaugeF64,
};
use std::sync::LazyLock;
use std::time::Duration;

/// The variable naming the address of the relay's `/metrics` listener (none when unset).
pub const METRICS_ADDR_VAR: &str = "MILESTONE_RELAY_METRICS_ADDR";

/// How often the lag is measured while the relay runs.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How many unpublished events the lag counts at most.
pub const LAG_COUNT_LIMIT: usize = 10_000;

service_kit::metric_labels! {
    /// Per workflow relayed (`order`, `return`).
    pub struct RelayLabels { workflow: &'static str }
}

/// What the relay counts and measures.
pub struct RelayMetrics {
    pub published: Family<RelayLabels, Counter>,
    pub dead_letters: Family<RelayLabels, Counter>,
    pub failures: Family<RelayLabels, Counter>,
    pub lag_events: Family<RelayLabels, Gauge>,
    pub lag_seconds: Family<RelayLabels, GaugeF64>,
}

pub static METRICS: LazyLock<RelayMetrics> = LazyLock::new(|| {
    RelayMetrics {
    published: counter(
        "milestone_relay_published_total",
        "Messages JetStream acknowledged, by workflow",
    ),
    dead_letters: counter(
        "milestone_relay_dead_letters_total",
        "Events or messages set aside as dead letters (undecodable, or refused by JetStream)",
    ),
    failures: counter(
        "milestone_relay_failures_total",
        "Times the relay was interrupted (store, database or broker failure, lost lease) and stood by again",
    ),
    lag_events: gauge(
        "milestone_relay_lag_events",
        "Events of the workflow's streams in the log that the relay has not published yet (counted up to 10000)",
    ),
    lag_seconds: gauge_f64(
        "milestone_relay_lag_seconds",
        "Age of the oldest event the relay has not published yet (0 when caught up)",
    ),
}
});

/// Registers the relay's metrics with a zero for each workflow, so that every family is
/// described, and every rate defined, from the first scrape on.
pub fn register() {
    let m = &*METRICS;
    for workflow in [<Orders as Workflow>::NAME, <Returns as Workflow>::NAME] {
        let labels = RelayLabels { workflow };
        preregister(&m.published, &labels);
        preregister(&m.dead_letters, &labels);
        preregister(&m.failures, &labels);
        preregister(&m.lag_events, &labels);
        preregister(&m.lag_seconds, &labels);
    }
}

//! The query API's metrics, each declared once (the HTTP ones are service-kit's): the waits for
//! a consistency token and the answers that could not show the caller's write.

use service_kit::metrics::{
    counter, histogram, preregister, Counter, Family, HistogramFamily, LATENCY_BUCKETS,
};
use std::sync::LazyLock;

service_kit::metric_labels! {
    /// How a wait for a consistency token ended: `reached` or `timed_out`.
    pub struct WaitLabels { outcome: &'static str }
}

service_kit::metric_labels! {
    /// Why an answer is stale: `timed_out` (the projections did not reach the token in time),
    /// `parked` (the instance's stream is parked behind a dead letter) or `unknown` (whether it
    /// is parked cannot be read).
    pub struct StaleLabels { reason: &'static str }
}

/// What the query API measures besides HTTP.
pub struct QueryMetrics {
    pub waits: HistogramFamily<WaitLabels>,
    pub stale: Family<StaleLabels, Counter>,
}

pub static METRICS: LazyLock<QueryMetrics> = LazyLock::new(|| {
    QueryMetrics {
    waits: histogram(
        "milestone_read_your_writes_wait_seconds",
        "Time a query carrying a consistency token waited for the read models, by outcome",
        LATENCY_BUCKETS,
    ),
    stale: counter(
        "milestone_stale_answers_total",
        "Answers to a query with a consistency token that may not show the write (stale: true), by reason",
    ),
}
});

/// Registers the query API's metrics (and the HTTP ones) with a zero for each outcome and
/// reason, so that every family is described, and every rate defined, from the first scrape on.
pub fn register() {
    LazyLock::force(&service_kit::metrics::http::HTTP);
    for outcome in ["reached", "timed_out"] {
        preregister(&METRICS.waits, &WaitLabels { outcome });
    }
    for reason in ["timed_out", "parked", "unknown"] {
        preregister(&METRICS.stale, &StaleLabels { reason });
    }
}

//! The projector's metrics, each declared once: how far each projection is behind the log, its
//! batches, dead letters and parked streams, and how long an event takes from its command to
//! the commit that makes it visible.

use chrono::{DateTime, Utc};
use service_kit::metrics::{
    counter, gauge, gauge_f64, histogram, histogram_with_exemplars, preregister, Counter,
    ExemplarHistogramFamily, Family, Gauge, GaugeF64, HistogramFamily, BATCH_SIZE_BUCKETS,
    LATENCY_BUCKETS, VISIBILITY_BUCKETS,
};
use std::sync::LazyLock;
use std::time::Duration;

/// The variable naming the address of the projector's `/metrics` listener (none when unset).
pub const METRICS_ADDR_VAR: &str = "MILESTONE_PROJECTOR_METRICS_ADDR";

/// How often the lag and the parked streams are measured while the projector runs.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How many unapplied events the lag counts at most: past this, an exact count is not worth
/// reading the log for.
pub const LAG_COUNT_LIMIT: usize = 10_000;

service_kit::metric_labels! {
    /// Per projection (`order_status`, ...).
    pub struct ProjectionLabels { projection: &'static str }
}

service_kit::metric_labels! {
    /// The trace of the request that caused an event, shown as an exemplar.
    pub struct TraceExemplar { trace_id: String }
}

/// What the projection runtime measures.
pub struct ProjectorMetrics {
    pub lag_events: Family<ProjectionLabels, Gauge>,
    pub lag_seconds: Family<ProjectionLabels, GaugeF64>,
    pub events: Family<ProjectionLabels, Counter>,
    pub batch_size: HistogramFamily<ProjectionLabels>,
    pub batch_duration: HistogramFamily<ProjectionLabels>,
    pub dead_letters: Family<ProjectionLabels, Counter>,
    pub parked: Family<ProjectionLabels, Gauge>,
    pub visible: ExemplarHistogramFamily<ProjectionLabels, TraceExemplar>,
}

pub static METRICS: LazyLock<ProjectorMetrics> = LazyLock::new(|| {
    ProjectorMetrics {
    lag_events: gauge(
        "milestone_projection_lag_events",
        "Events of the projection's streams in the log that it has not applied yet (counted up to 10000)",
    ),
    lag_seconds: gauge_f64(
        "milestone_projection_lag_seconds",
        "Age of the oldest event the projection has not applied yet (0 when caught up)",
    ),
    events: counter(
        "milestone_projection_events_total",
        "Events the projection read and committed a checkpoint past",
    ),
    batch_size: histogram(
        "milestone_projection_batch_size_events",
        "Events per committed batch",
        BATCH_SIZE_BUCKETS,
    ),
    batch_duration: histogram(
        "milestone_projection_batch_duration_seconds",
        "Time to apply and commit a batch",
        LATENCY_BUCKETS,
    ),
    dead_letters: counter(
        "milestone_projection_dead_letters_total",
        "Events set aside as dead letters (they failed, or their stream is parked)",
    ),
    parked: gauge(
        "milestone_projection_parked_streams",
        "Instances whose stream is parked behind a dead letter, awaiting a retry",
    ),
    visible: histogram_with_exemplars(
        "milestone_command_to_visible_seconds",
        "Time from a command (its event's occurred_at) to the commit that made the event visible in the projection; exemplars carry the trace id",
        VISIBILITY_BUCKETS,
    ),
}
});

/// Registers the projector's metrics with a zero for each projection, so that every family is
/// described, and every rate defined, from the first scrape on.
pub fn register() {
    let m = &*METRICS;
    for descriptor in crate::PROJECTIONS {
        let labels = ProjectionLabels {
            projection: descriptor.name,
        };
        preregister(&m.lag_events, &labels);
        preregister(&m.lag_seconds, &labels);
        preregister(&m.events, &labels);
        preregister(&m.batch_size, &labels);
        preregister(&m.batch_duration, &labels);
        preregister(&m.dead_letters, &labels);
        preregister(&m.parked, &labels);
        preregister(&m.visible, &labels);
    }
}

/// Records that events which `occurred` (with the trace of their request, when known) became
/// visible in `projection` at `committed`.
pub fn record_visible<'a>(
    projection: &'static str,
    committed: DateTime<Utc>,
    occurred: impl IntoIterator<Item = (DateTime<Utc>, Option<&'a str>)>,
) {
    let histogram = METRICS
        .visible
        .get_or_create_owned(&ProjectionLabels { projection });
    for (at, trace_id) in occurred {
        let seconds = (committed - at).as_seconds_f64().max(0.0);
        let exemplar = trace_id.map(|id| TraceExemplar {
            trace_id: id.to_owned(),
        });
        histogram.observe(seconds, exemplar, None);
    }
}

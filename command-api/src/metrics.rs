//! The command API's metrics, each declared once (the HTTP ones are service-kit's).

use domain::{Orders, Returns, Workflow};
use service_kit::metrics::{
    counter, histogram, preregister, Counter, Family, HistogramFamily, LATENCY_BUCKETS,
};
use std::sync::LazyLock;

service_kit::metric_labels! {
    /// A command's outcome: `ok`, or the problem's `code` (`illegal_transition`, ...).
    pub struct CommandLabels { workflow: &'static str, outcome: &'static str }
}

service_kit::metric_labels! {
    /// Per workflow (`order`, `return`).
    pub struct WorkflowLabels { workflow: &'static str }
}

/// What the command pipeline counts and times.
pub struct CommandMetrics {
    pub commands: Family<CommandLabels, Counter>,
    pub replays: Family<WorkflowLabels, Counter>,
    pub append: HistogramFamily<WorkflowLabels>,
}

pub static METRICS: LazyLock<CommandMetrics> = LazyLock::new(|| CommandMetrics {
    commands: counter(
        "milestone_commands_total",
        "Commands answered over REST, by workflow and outcome (ok or the problem code)",
    ),
    replays: counter(
        "milestone_idempotent_replays_total",
        "Commands answered from an earlier identical request (Idempotent-Replayed), by workflow",
    ),
    append: histogram(
        "milestone_append_duration_seconds",
        "Time to append a command's events to the event store, by workflow",
        LATENCY_BUCKETS,
    ),
});

/// Registers the command API's metrics (and the HTTP ones) with a zero for each workflow, so
/// that every family is described, and every rate defined, from the first scrape on.
pub fn register() {
    LazyLock::force(&service_kit::metrics::http::HTTP);
    for workflow in [<Orders as Workflow>::NAME, <Returns as Workflow>::NAME] {
        let labels = WorkflowLabels { workflow };
        preregister(
            &METRICS.commands,
            &CommandLabels {
                workflow,
                outcome: "ok",
            },
        );
        preregister(&METRICS.replays, &labels);
        preregister(&METRICS.append, &labels);
    }
}

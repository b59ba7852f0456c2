//! The reconciler's metrics, each declared once: the reminders and escalations it recorded,
//! and the instances it could not chase.

use domain::{Orders, Returns, Workflow};
use service_kit::metrics::{counter, preregister, Counter, Family};
use std::sync::LazyLock;

/// The variable naming the address of the reconciler's `/metrics` listener (none when unset).
pub const METRICS_ADDR_VAR: &str = "MILESTONE_RECONCILER_METRICS_ADDR";

service_kit::metric_labels! {
    /// Per workflow chased (`order`, `return`).
    pub struct ChasedLabels { workflow: &'static str }
}

/// What the reconciler counts.
pub struct ReconcilerMetrics {
    pub reminders: Family<ChasedLabels, Counter>,
    pub escalations: Family<ChasedLabels, Counter>,
    pub failures: Family<ChasedLabels, Counter>,
}

pub static METRICS: LazyLock<ReconcilerMetrics> = LazyLock::new(|| ReconcilerMetrics {
    reminders: counter(
        "milestone_reconciler_reminders_total",
        "Reminders of pending work recorded on overdue instances, by workflow",
    ),
    escalations: counter(
        "milestone_reconciler_escalations_total",
        "Overdue instances escalated after their reminders went unanswered, by workflow",
    ),
    failures: counter(
        "milestone_reconciler_failures_total",
        "Overdue instances that could not be chased in a run (retried in the next), by workflow",
    ),
});

/// Registers the reconciler's metrics with a zero for each workflow, so that every family is
/// described, and every rate defined, from the first scrape on.
pub fn register() {
    let m = &*METRICS;
    for workflow in [<Orders as Workflow>::NAME, <Returns as Workflow>::NAME] {
        let labels = ChasedLabels { workflow };
        preregister(&m.reminders, &labels);
        preregister(&m.escalations, &labels);
        preregister(&m.failures, &labels);
    }
}

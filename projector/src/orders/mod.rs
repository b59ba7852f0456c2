//! The order projection: `order_status` (one row per order), `order_timeline` (one row per
//! event) and `order_status_counts`, kept from the `order-` streams.

pub mod columns;
pub mod model;

pub use crate::status_table::{ApplyError, TimelineRow};
pub use columns::{OrderRow, ORDER_STATE_VERSION, ORDER_STATUS_COLUMNS};

use crate::config::Deadlines;
use crate::status_table::{StatusProjection, DEFAULT_REMINDER_SPACING};
use event_store::RecordedEvent;
use uuid::Uuid;

/// The order read models' migrations, from `schemas/read-models/` (the first also creates the
/// runtime's tables, which [`crate::db::RUNTIME_MIGRATIONS`] now creates for every projection).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_order_read_models",
        include_str!("../../../schemas/read-models/0001_order_read_models.sql"),
    ),
    (
        "0005_order_state_version",
        include_str!("../../../schemas/read-models/0005_order_state_version.sql"),
    ),
    (
        "0008_order_follow_up",
        include_str!("../../../schemas/read-models/0008_order_follow_up.sql"),
    ),
    (
        "0011_order_follow_up_backfill",
        include_str!("../../../schemas/read-models/0011_order_follow_up_backfill.sql"),
    ),
    (
        "0013_order_timeline_principal",
        include_str!("../../../schemas/read-models/0013_order_timeline_principal.sql"),
    ),
];

/// Keeps the order read models; `deadlines` set each row's `deadline_at`, `reminder_spacing`
/// the time between two reminders (`next_reminder_at`).
#[derive(Debug, Clone)]
pub struct OrderProjection {
    pub deadlines: Deadlines,
    pub reminder_spacing: chrono::Duration,
}

impl OrderProjection {
    pub fn new(deadlines: Deadlines) -> Self {
        Self {
            deadlines,
            reminder_spacing: DEFAULT_REMINDER_SPACING,
        }
    }

    /// The projection with `spacing` between two reminders.
    pub fn with_reminder_spacing(self, spacing: chrono::Duration) -> Self {
        Self {
            reminder_spacing: spacing,
            ..self
        }
    }
}

impl StatusProjection for OrderProjection {
    const NAME: &'static str = "order_status";
    const STREAM_PREFIX: &'static str = domain::ORDER_STREAM_PREFIX;
    const MIGRATIONS: &'static [(&'static str, &'static str)] = MIGRATIONS;
    const CHANGED_KEY: &'static str = "orders";
    type Row = OrderRow;

    fn apply(
        &self,
        slot: &mut Option<OrderRow>,
        id: Option<Uuid>,
        event: &RecordedEvent,
    ) -> Result<Option<TimelineRow>, ApplyError> {
        model::apply(slot, id, event, &self.deadlines, self.reminder_spacing)
    }

    fn seal(row: &mut OrderRow) -> Result<(), ApplyError> {
        row.seal()
    }
}

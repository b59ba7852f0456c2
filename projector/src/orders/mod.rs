//! The order projection: `order_status` (one row per order), `order_timeline` (one row per
//! event) and `order_status_counts`, kept from the `order-` streams.

pub mod columns;
pub mod model;

pub use crate::status_table::TimelineRow;
pub use columns::{OrderRow, ORDER_STATE_VERSION, ORDER_STATUS_COLUMNS};
pub use model::ApplyError;

use crate::config::Deadlines;
use crate::projection::Projection;
use crate::status_table::{StatusBatch, StatusRow};
use crate::ProjectorError;
use deadpool_postgres::Transaction;
use event_store::RecordedEvent;
use std::future::Future;
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
];

/// Keeps the order read models; `deadlines` set each row's `deadline_at`.
#[derive(Debug, Clone)]
pub struct OrderProjection {
    pub deadlines: Deadlines,
}

impl OrderProjection {
    pub fn new(deadlines: Deadlines) -> Self {
        Self { deadlines }
    }
}

/// The orders a batch works on.
pub type OrderBatch = StatusBatch<OrderRow>;

impl Projection for OrderProjection {
    const NAME: &'static str = "order_status";
    const STREAM_PREFIX: &'static str = domain::ORDER_STREAM_PREFIX;
    const MIGRATIONS: &'static [(&'static str, &'static str)] = MIGRATIONS;
    const TABLES: &'static [&'static str] = OrderRow::TABLES;
    const CHANGED_KEY: &'static str = "orders";

    type Batch = OrderBatch;
    type Error = ApplyError;

    fn load<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        events: &'a [RecordedEvent],
    ) -> impl Future<Output = Result<OrderBatch, ProjectorError>> + Send + 'a {
        OrderBatch::load::<Self>(tx, events)
    }

    fn apply(&self, batch: &mut OrderBatch, event: &RecordedEvent) -> Result<bool, ApplyError> {
        let id = Self::instance_of(&event.stream_id);
        batch.apply(id, |slot| model::apply(slot, id, event, &self.deadlines))
    }

    fn seal(&self, batch: &mut OrderBatch) -> Result<Vec<Uuid>, ProjectorError> {
        batch.seal(OrderRow::seal)
    }

    fn write<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        batch: &'a OrderBatch,
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send + 'a {
        batch.write(tx)
    }
}

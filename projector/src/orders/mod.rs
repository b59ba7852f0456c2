//! The order projection: `order_status` (one row per order), `order_timeline` (one row per
//! event) and `order_status_counts`, kept from the `order-` streams.

pub mod columns;
pub mod db;
pub mod model;

pub use columns::{OrderRow, ORDER_STATE_VERSION, ORDER_STATUS_COLUMNS};
pub use model::{ApplyError, TimelineRow};

use crate::config::Deadlines;
use crate::projection::Projection;
use crate::ProjectorError;
use deadpool_postgres::Transaction;
use event_store::RecordedEvent;
use std::collections::{HashMap, HashSet};
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
#[derive(Debug, Default)]
pub struct OrderBatch {
    rows: HashMap<Uuid, OrderRow>,
    /// Each loaded order's status before the batch, for the counts.
    before: HashMap<Uuid, String>,
    /// The orders changed, in the order first changed.
    touched: Vec<Uuid>,
    touched_set: HashSet<Uuid>,
    timeline: Vec<TimelineRow>,
}

impl Projection for OrderProjection {
    const NAME: &'static str = "order_status";
    const STREAM_PREFIX: &'static str = domain::ORDER_STREAM_PREFIX;
    const MIGRATIONS: &'static [(&'static str, &'static str)] = MIGRATIONS;
    const TABLES: &'static [&'static str] =
        &["order_status", "order_timeline", "order_status_counts"];
    const CHANGED_KEY: &'static str = "orders";

    type Batch = OrderBatch;
    type Error = ApplyError;

    fn load<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        events: &'a [RecordedEvent],
    ) -> impl Future<Output = Result<OrderBatch, ProjectorError>> + Send + 'a {
        let mut ids: Vec<Uuid> = events
            .iter()
            .filter_map(|e| Self::instance_of(&e.stream_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        async move {
            let rows = db::load_rows(tx, &ids).await?;
            let before = rows.iter().map(|(id, r)| (*id, r.status.clone())).collect();
            Ok(OrderBatch {
                rows,
                before,
                ..OrderBatch::default()
            })
        }
    }

    fn apply(&self, batch: &mut OrderBatch, event: &RecordedEvent) -> Result<bool, ApplyError> {
        let id = Self::instance_of(&event.stream_id);
        let mut slot = id.and_then(|id| batch.rows.remove(&id));
        let result = model::apply(&mut slot, event, &self.deadlines);
        if let Some(row) = slot {
            if matches!(result, Ok(Some(_))) && batch.touched_set.insert(row.order_id) {
                batch.touched.push(row.order_id);
            }
            batch.rows.insert(row.order_id, row);
        }
        match result? {
            None => Ok(false),
            Some(entry) => {
                batch.timeline.push(entry);
                Ok(true)
            }
        }
    }

    fn seal(&self, batch: &mut OrderBatch) -> Result<Vec<Uuid>, ProjectorError> {
        for id in &batch.touched {
            if let Some(row) = batch.rows.get_mut(id) {
                row.seal().map_err(|e| ProjectorError::Seal(Box::new(e)))?;
            }
        }
        Ok(batch.touched.clone())
    }

    fn write<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        batch: &'a OrderBatch,
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send + 'a {
        let changed: Vec<&OrderRow> = batch
            .touched
            .iter()
            .filter_map(|id| batch.rows.get(id))
            .collect();
        let deltas = status_deltas(&batch.before, &changed);
        let (existing, new): (Vec<&OrderRow>, Vec<&OrderRow>) = changed
            .iter()
            .partition(|row| batch.before.contains_key(&row.order_id));
        async move {
            // Pipelined: one round trip for the three tables.
            futures::try_join!(
                db::write_rows(tx, &new, &existing),
                db::insert_timeline(tx, &batch.timeline),
                async { Ok(db::add_status_counts(tx, &deltas).await?) },
            )?;
            Ok(())
        }
    }
}

fn status_deltas(before: &HashMap<Uuid, String>, after: &[&OrderRow]) -> HashMap<String, i64> {
    let mut deltas: HashMap<String, i64> = HashMap::new();
    for row in after {
        let old = before.get(&row.order_id);
        if old.map(String::as_str) != Some(row.status.as_str()) {
            if let Some(old) = old {
                *deltas.entry(old.clone()).or_default() -= 1;
            }
            *deltas.entry(row.status.clone()).or_default() += 1;
        }
    }
    deltas
}

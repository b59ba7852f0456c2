//! The returns projection: `return_status` (one row per return case, keyed by its order),
//! `return_timeline` (one row per event) and `return_status_counts`, kept from the `return-`
//! streams.

pub mod columns;
pub mod db;
pub mod deadlines;
pub mod model;

pub use columns::{ReturnRow, RETURN_STATE_VERSION, RETURN_STATUS_COLUMNS};
pub use deadlines::{DeadlineSettingError, ReturnDeadlines};
pub use model::{ReturnApplyError, TimelineRow};

use crate::projection::Projection;
use crate::ProjectorError;
use deadpool_postgres::Transaction;
use domain::{Returns, Workflow};
use event_store::RecordedEvent;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use uuid::Uuid;

/// The returns read models' migrations, from `schemas/read-models/`.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0006_return_read_models",
    include_str!("../../../schemas/read-models/0006_return_read_models.sql"),
)];

/// Keeps the returns read models; `deadlines` set each row's `deadline_at`.
#[derive(Debug, Clone)]
pub struct ReturnProjection {
    pub deadlines: ReturnDeadlines,
}

impl ReturnProjection {
    pub fn new(deadlines: ReturnDeadlines) -> Self {
        Self { deadlines }
    }

    /// The projection with its deadlines read from the environment
    /// (`MILESTONE_RETURN_DEADLINE_<STEP>_SECS`).
    ///
    /// # Errors
    /// When a deadline variable is set to something other than whole seconds.
    pub fn from_env() -> Result<Self, ProjectorError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`ReturnProjection::from_env`], with the variables read by `lookup`.
    ///
    /// # Errors
    /// When a deadline variable is set to something other than whole seconds.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProjectorError> {
        ReturnDeadlines::from_lookup(lookup)
            .map(Self::new)
            .map_err(|e| ProjectorError::Config {
                what: "the returns projection's deadlines".to_owned(),
                source: Box::new(e),
            })
    }
}

/// The return cases a batch works on.
#[derive(Debug, Default)]
pub struct ReturnBatch {
    rows: HashMap<Uuid, ReturnRow>,
    /// Each loaded return's status before the batch, for the counts.
    before: HashMap<Uuid, String>,
    /// The returns changed, in the order first changed.
    touched: Vec<Uuid>,
    touched_set: HashSet<Uuid>,
    timeline: Vec<TimelineRow>,
}

impl Projection for ReturnProjection {
    const NAME: &'static str = "return_status";
    const STREAM_PREFIX: &'static str = Returns::STREAM_PREFIX;
    const MIGRATIONS: &'static [(&'static str, &'static str)] = MIGRATIONS;
    const TABLES: &'static [&'static str] =
        &["return_status", "return_timeline", "return_status_counts"];
    const CHANGED_KEY: &'static str = "returns";

    type Batch = ReturnBatch;
    type Error = ReturnApplyError;

    fn load<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        events: &'a [RecordedEvent],
    ) -> impl Future<Output = Result<ReturnBatch, ProjectorError>> + Send + 'a {
        let mut ids: Vec<Uuid> = events
            .iter()
            .filter_map(|e| Self::instance_of(&e.stream_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        async move {
            let rows = db::load_rows(tx, &ids).await?;
            let before = rows.iter().map(|(id, r)| (*id, r.status.clone())).collect();
            Ok(ReturnBatch {
                rows,
                before,
                ..ReturnBatch::default()
            })
        }
    }

    fn apply(
        &self,
        batch: &mut ReturnBatch,
        event: &RecordedEvent,
    ) -> Result<bool, ReturnApplyError> {
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

    fn seal(&self, batch: &mut ReturnBatch) -> Result<Vec<Uuid>, ProjectorError> {
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
        batch: &'a ReturnBatch,
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send + 'a {
        let changed: Vec<&ReturnRow> = batch
            .touched
            .iter()
            .filter_map(|id| batch.rows.get(id))
            .collect();
        let deltas = status_deltas(&batch.before, &changed);
        let (existing, new): (Vec<&ReturnRow>, Vec<&ReturnRow>) = changed
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

fn status_deltas(before: &HashMap<Uuid, String>, after: &[&ReturnRow]) -> HashMap<String, i64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_return_deadline_setting_is_a_configuration_error_keeping_its_cause() {
        let err = ReturnProjection::from_lookup(|name| {
            (name == "MILESTONE_RETURN_DEADLINE_APPROVED_SECS").then(|| "soon".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("configuration"), "{err}");
        let cause = std::error::Error::source(&err).expect("the setting's error");
        assert!(
            cause
                .to_string()
                .contains("MILESTONE_RETURN_DEADLINE_APPROVED_SECS='soon'"),
            "{cause}"
        );
        assert!(cause.is::<DeadlineSettingError>(), "{cause}");
    }
}

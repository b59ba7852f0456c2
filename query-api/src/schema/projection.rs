//! `projectionStatus`: where the projection stands, and how far behind the event log it is.

use super::read_models;
use crate::db::projection as db;
use crate::error::{error_chain, QueryError};
use async_graphql::{Context, Object, ResultExt, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{Orders, Workflow};
use event_store::{EventStore, Position, StoreError, StoreOptions};
use std::sync::Arc;

/// The projection the query API reads.
pub const PROJECTION: &str = projector::PROJECTION;

/// How many unapplied events `lagEvents` counts at most: past this, the projection is far
/// behind and an exact count is not worth reading the log for.
pub const LAG_COUNT_LIMIT: usize = 10_000;

/// The event log, reached through the event store's port on first use.
pub struct EventLog {
    url: String,
    store: tokio::sync::OnceCell<Arc<dyn EventStore>>,
}

impl EventLog {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            store: tokio::sync::OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&Arc<dyn EventStore>, StoreError> {
        self.store
            .get_or_try_init(|| event_store::connect(&self.url, &StoreOptions { pool_size: 2 }))
            .await
    }

    /// How many order events after `checkpoint` the projection has not applied (at most
    /// [`LAG_COUNT_LIMIT`]), and the age in seconds of the oldest of them (0 when none).
    async fn lag(&self, checkpoint: Option<Position>) -> Result<(i64, f64), StoreError> {
        let store = self.store().await?;
        let head = store.head_position().await?;
        if head.is_none() || head <= checkpoint {
            return Ok((0, 0.0));
        }
        let behind = store
            .read_all(checkpoint, Orders::STREAM_PREFIX, LAG_COUNT_LIMIT)
            .await?;
        let age = behind.first().map_or(0.0, |oldest| {
            (Utc::now() - oldest.recorded_at).as_seconds_f64().max(0.0)
        });
        Ok((behind.len() as i64, age))
    }
}

/// Where the projection stands.
#[derive(Debug, Clone, SimpleObject)]
pub struct ProjectionStatus {
    /// The log position of the last applied event (compare with consistency tokens).
    pub checkpoint: Option<String>,
    pub events_applied: i64,
    pub updated_at: Option<DateTime<Utc>>,
    /// Events in the log not yet applied (null when the log is not in this database).
    pub lag_events: Option<i64>,
    /// Age of the oldest event not yet applied, in seconds (0 when caught up).
    pub lag_seconds: Option<f64>,
    pub dead_letters: i64,
    pub parked_orders: i64,
}

/// Operations.
#[derive(Default)]
pub struct ProjectionQueries;

#[Object]
impl ProjectionQueries {
    async fn projection_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ProjectionStatus> {
        let row = async {
            Ok::<_, QueryError>(db::projection_status(read_models(ctx).await?, PROJECTION).await?)
        }
        .await
        .extend()?;
        // Lag is unknown (null) while the event log cannot be reached; the rest still answers.
        let lag = ctx
            .data_unchecked::<EventLog>()
            .lag(row.checkpoint)
            .await
            .inspect_err(
                |e| tracing::warn!(cause = %error_chain(e), "cannot measure the projection's lag"),
            )
            .ok();
        Ok(ProjectionStatus {
            checkpoint: row.checkpoint.map(|p| p.to_string()),
            events_applied: row.events_applied,
            updated_at: row.updated_at,
            lag_events: lag.map(|(events, _)| events),
            lag_seconds: lag.map(|(_, seconds)| seconds),
            dead_letters: row.dead_letters,
            parked_orders: row.parked_streams,
        })
    }
}

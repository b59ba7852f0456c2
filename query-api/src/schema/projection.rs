//! `projectionStatus`: where a projection stands, and how far behind the event log it is.

use super::read_models;
use crate::auth::Needs;
use crate::db::projection as db;
use crate::error::{error_chain, QueryError};
use crate::log::EventLog;
use async_graphql::{Context, Object, ResultExt, SimpleObject};
use chrono::{DateTime, Utc};
use projector::{Descriptor, PROJECTIONS};
use service_kit::auth::Scope;

/// The projection `projectionStatus` describes when it is given no name: the first registered.
pub const PROJECTION: &str = projector::PROJECTION;

/// Where the projection stands.
#[derive(Debug, Clone, SimpleObject)]
pub struct ProjectionStatus {
    /// The projection's name, e.g. `order_status`.
    pub name: String,
    /// The log position of the last applied event (compare with consistency tokens).
    pub checkpoint: Option<String>,
    pub events_applied: i64,
    pub updated_at: Option<DateTime<Utc>>,
    /// Events in the log not yet applied (null while the event store cannot be reached).
    pub lag_events: Option<i64>,
    /// Age of the oldest event not yet applied, in seconds (0 when caught up).
    pub lag_seconds: Option<f64>,
    pub dead_letters: i64,
    /// Instances whose streams are parked after a dead-lettered event.
    pub parked_orders: i64,
}

/// Operations.
#[derive(Default)]
pub struct ProjectionQueries;

#[Object]
impl ProjectionQueries {
    /// Where a projection stands: `name` is one of the registered projections (by default
    /// the order projection, `order_status`).
    #[graphql(guard = "Needs(Scope::ReadOperations)")]
    async fn projection_status(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
    ) -> async_graphql::Result<ProjectionStatus> {
        let projection = named(name.as_deref().unwrap_or(PROJECTION)).extend()?;
        let row = async {
            Ok::<_, QueryError>(
                db::projection_status(read_models(ctx).await?, projection.name).await?,
            )
        }
        .await
        .extend()?;
        // Lag is unknown (null) while the event log cannot be reached; the rest still answers.
        let lag = ctx
            .data_unchecked::<EventLog>()
            .lag(projection, row.checkpoint)
            .await
            .inspect_err(
                |e| tracing::warn!(cause = %error_chain(e), "cannot measure the projection's lag"),
            )
            .ok();
        Ok(ProjectionStatus {
            name: projection.name.to_owned(),
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

/// The registered projection called `name`.
///
/// # Errors
/// [`QueryError::UnknownProjection`] naming the projections there are.
fn named(name: &str) -> Result<&'static Descriptor, QueryError> {
    Descriptor::named(name).ok_or_else(|| QueryError::UnknownProjection {
        name: name.chars().take(64).collect(),
        known: PROJECTIONS
            .iter()
            .map(|d| d.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

//! `projectionStatus`: where a projection stands, how far behind the event log it is and what
//! it parked; `retryParked`: the repair of a parked instance.

use super::{input, read_models};
use crate::auth::Needs;
use crate::db::projection as db;
use crate::error::{error_chain, QueryError};
use crate::log::EventLog;
use crate::repair::Repairs;
use async_graphql::{ComplexObject, Context, Object, ResultExt, SimpleObject, ID};
use chrono::{DateTime, Utc};
use projector::{Descriptor, PROJECTIONS};
use service_kit::auth::Scope;

/// The projection `projectionStatus` describes when it is given no name: the first registered.
pub const PROJECTION: &str = projector::PROJECTION;

/// Where the projection stands.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
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

#[ComplexObject]
impl ProjectionStatus {
    /// The instances parked after a dead-lettered event, the longest parked first; `first`
    /// at most the page-size cap (default 20). `retryParked` applies their events again.
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn parked(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<ParkedInstance>> {
        async {
            let first = super::paging::page_size(ctx, first)?;
            let rows = db::parked_instances(read_models(ctx).await?, &self.name, first).await?;
            Ok::<_, QueryError>(rows.into_iter().map(ParkedInstance::from).collect())
        }
        .await
        .extend()
    }
}

/// An order or return case whose stream a projection parked: its events wait, dead-lettered,
/// until a retry applies them.
#[derive(Debug, Clone, SimpleObject)]
pub struct ParkedInstance {
    /// The order's id (a return case is named by its order's).
    pub id: ID,
    /// Why its first dead-lettered event could not be applied.
    pub reason: String,
    pub parked_at: DateTime<Utc>,
    /// Its events waiting for a retry.
    pub dead_letters: i64,
}

impl From<db::ParkedRow> for ParkedInstance {
    fn from(row: db::ParkedRow) -> Self {
        Self {
            id: ID(row.id),
            reason: row.reason,
            parked_at: row.parked_at,
            dead_letters: row.dead_letters,
        }
    }
}

/// What `retryParked` did.
#[derive(Debug, Clone, SimpleObject)]
pub struct RetryOutcome {
    pub id: ID,
    /// The projections that had the instance parked, e.g. `order_status`; it is parked in
    /// none of them now.
    pub projections: Vec<String>,
    /// The dead-lettered events applied.
    pub events_applied: i64,
}

/// Repairs.
#[derive(Default)]
pub struct ProjectionMutations;

#[Object]
impl ProjectionMutations {
    /// Applies a parked order's or return case's dead-lettered events again, after a fix (of
    /// the code, or of the stored payload), and unparks it: all of them apply, or nothing
    /// changes. `reason` is kept with any edited payload. Errors: `NOT_PARKED` when no
    /// projection has it parked, `STILL_FAILING` (with the first event that still fails).
    #[graphql(guard = "Needs(Scope::RepairProjections)")]
    async fn retry_parked(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> async_graphql::Result<RetryOutcome> {
        async {
            let uuid = input::order_id(&id)?;
            // Who repaired is kept with any edited payload.
            let by = ctx
                .data_opt::<service_kit::auth::Caller>()
                .map(|caller| caller.subject.clone());
            let note = projector::db::RepairNote {
                by,
                reason: input::text("reason", reason)?,
            };
            let retried = ctx.data_unchecked::<Repairs>().retry(uuid, &note).await?;
            Ok::<_, QueryError>(RetryOutcome {
                id: ID(uuid.to_string()),
                projections: retried.iter().map(|r| r.projection.to_owned()).collect(),
                events_applied: retried.iter().map(|r| r.applied as i64).sum(),
            })
        }
        .await
        .extend()
    }
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

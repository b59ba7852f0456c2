//! The returns workflow's read models: `return_status` (one row per return case, keyed by its
//! order's id), `return_timeline` (one row per event) and `return_status_counts`. Every column
//! is selected by name and read by name.

use super::orders::TimelineRecord;
use super::{column, label, labels, DbError};
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use domain::{ReturnAction, ReturnCompensation, ReturnStatus};
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

/// The columns every return query selects; [`ReturnRecord::from_row`] reads each by its name.
const RETURN_COLUMNS: &str = "order_id, status, currency, reason, lines, line_count, refund_due_minor,
    refund_accepted_minor, refunded_minor, refund_id, rma_number, last_milestone, last_milestone_at,
    pending_actions, failure_reason, compensations_owed, compensations_done, requested_at, approved_at,
    rejected_at, received_at, refunded_at, cancelled_at, shipped_back_at, escalated_at, escalation_count,
    escalation_reason, correlation_id, deadline_at, stream_revision, last_position,
    coalesce(deadline_at < now(), false) as overdue";

// Read from the `*_at` columns of `return_status`.
/// When each milestone of a return happened (null until it did).
#[derive(Debug, Clone, PartialEq, async_graphql::SimpleObject)]
#[graphql(name = "ReturnMilestones")]
pub struct ReturnMilestones {
    pub requested_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When items that arrived after cancellation were shipped back to the customer.
    pub shipped_back_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
}

impl ReturnMilestones {
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            requested_at: column(r, "requested_at")?,
            approved_at: column(r, "approved_at")?,
            rejected_at: column(r, "rejected_at")?,
            received_at: column(r, "received_at")?,
            refunded_at: column(r, "refunded_at")?,
            cancelled_at: column(r, "cancelled_at")?,
            shipped_back_at: column(r, "shipped_back_at")?,
            escalated_at: column(r, "escalated_at")?,
        })
    }
}

/// One return case as stored in `return_status`, its labels parsed into the domain's types.
#[derive(Debug, Clone)]
pub struct ReturnRecord {
    pub order_id: Uuid,
    pub status: ReturnStatus,
    pub currency: String,
    pub reason: String,
    pub lines: serde_json::Value,
    pub line_count: i32,
    pub refund_due_minor: i64,
    pub refund_accepted_minor: Option<i64>,
    pub refunded_minor: i64,
    pub refund_id: Option<String>,
    pub rma_number: Option<String>,
    pub last_milestone: String,
    pub last_milestone_at: DateTime<Utc>,
    pub pending_actions: Vec<ReturnAction>,
    pub failure_reason: Option<String>,
    pub compensations_owed: Vec<ReturnCompensation>,
    pub compensations_done: Vec<ReturnCompensation>,
    pub milestones: ReturnMilestones,
    pub escalation_count: i32,
    pub escalation_reason: Option<String>,
    pub correlation_id: Option<String>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub stream_revision: i64,
    pub last_position: String,
    pub overdue: bool,
}

impl ReturnRecord {
    /// Reads a row selected with [`RETURN_COLUMNS`].
    ///
    /// # Errors
    /// A column missing or of another type, or a label the domain does not know.
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            order_id: column(r, "order_id")?,
            status: label(r, "status", "return status")?,
            currency: column(r, "currency")?,
            reason: column(r, "reason")?,
            lines: column(r, "lines")?,
            line_count: column(r, "line_count")?,
            refund_due_minor: column(r, "refund_due_minor")?,
            refund_accepted_minor: column(r, "refund_accepted_minor")?,
            refunded_minor: column(r, "refunded_minor")?,
            refund_id: column(r, "refund_id")?,
            rma_number: column(r, "rma_number")?,
            last_milestone: column(r, "last_milestone")?,
            last_milestone_at: column(r, "last_milestone_at")?,
            pending_actions: labels(r, "pending_actions", "return action")?,
            failure_reason: column(r, "failure_reason")?,
            compensations_owed: labels(r, "compensations_owed", "return compensation")?,
            compensations_done: labels(r, "compensations_done", "return compensation")?,
            milestones: ReturnMilestones::from_row(r)?,
            escalation_count: column(r, "escalation_count")?,
            escalation_reason: column(r, "escalation_reason")?,
            correlation_id: column(r, "correlation_id")?,
            deadline_at: column(r, "deadline_at")?,
            stream_revision: column(r, "stream_revision")?,
            last_position: column(r, "last_position")?,
            overdue: column(r, "overdue")?,
        })
    }

    pub fn requested_at(&self) -> DateTime<Utc> {
        self.milestones.requested_at
    }
}

fn return_records(rows: &[Row]) -> Result<Vec<ReturnRecord>, DbError> {
    rows.iter().map(ReturnRecord::from_row).collect()
}

/// The return cases of several orders in one query (the DataLoader's batch); an order with no
/// return case is absent.
pub async fn returns_by_order(
    client: &ClientWrapper,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, ReturnRecord>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select {RETURN_COLUMNS} from return_status where order_id = any($1)"
        ))
        .await?;
    client
        .query(&stmt, &[&order_ids])
        .await?
        .iter()
        .map(|r| ReturnRecord::from_row(r).map(|record| (record.order_id, record)))
        .collect()
}

/// Filters of `returns`.
#[derive(Debug, Default, Clone)]
pub struct ReturnQuery {
    pub status: Option<ReturnStatus>,
    pub requested_from: Option<DateTime<Utc>>,
    pub requested_to: Option<DateTime<Utc>>,
    /// Continue strictly after this (requested_at, order_id), newest first.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Return cases newest first, by (requested_at, order_id) descending: a stable order for
/// cursors.
pub async fn list_returns(
    client: &ClientWrapper,
    q: &ReturnQuery,
) -> Result<Vec<ReturnRecord>, DbError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut bind = |value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        format!("${}", params.len())
    };
    if let Some(s) = q.status {
        conditions.push(format!("status = {}", bind(Box::new(s.as_str()))));
    }
    if let Some(from) = q.requested_from {
        conditions.push(format!("requested_at >= {}", bind(Box::new(from))));
    }
    if let Some(to) = q.requested_to {
        conditions.push(format!("requested_at < {}", bind(Box::new(to))));
    }
    if let Some((at, id)) = q.after {
        let (a, b) = (bind(Box::new(at)), bind(Box::new(id)));
        conditions.push(format!("(requested_at, order_id) < ({a}, {b})"));
    }
    let limit = bind(Box::new(q.limit));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("where {}", conditions.join(" and "))
    };
    let sql = format!("select {RETURN_COLUMNS} from return_status {filter} order by requested_at desc, order_id desc limit {limit}");
    let stmt = client.prepare_cached(&sql).await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    return_records(&client.query(&stmt, &refs).await?)
}

/// Overdue return cases, the longest overdue first.
pub async fn stalled_returns(
    client: &ClientWrapper,
    limit: i64,
) -> Result<Vec<ReturnRecord>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select {RETURN_COLUMNS} from return_status where deadline_at < now() order by deadline_at, order_id limit $1"
        ))
        .await?;
    return_records(&client.query(&stmt, &[&limit]).await?)
}

/// The timelines of several return cases in one query (the DataLoader's batch).
pub async fn timelines(
    client: &ClientWrapper,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<TimelineRecord>>, DbError> {
    let stmt = client
        .prepare_cached(
            "select order_id, revision, event_type, occurred_at, recorded_at, position, correlation_id, causation_id, summary
             from return_timeline where order_id = any($1) order by order_id, revision",
        )
        .await?;
    let mut out: HashMap<Uuid, Vec<TimelineRecord>> =
        order_ids.iter().map(|id| (*id, Vec::new())).collect();
    for r in client.query(&stmt, &[&order_ids]).await? {
        out.entry(column(&r, "order_id")?)
            .or_default()
            .push(TimelineRecord::from_row(&r)?);
    }
    Ok(out)
}

/// How many return cases are in each status, as the projection keeps them.
pub async fn status_counts(client: &ClientWrapper) -> Result<HashMap<ReturnStatus, i64>, DbError> {
    let stmt = client
        .prepare_cached("select status, returns from return_status_counts")
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| Ok((label(r, "status", "return status")?, column(r, "returns")?)))
        .collect()
}

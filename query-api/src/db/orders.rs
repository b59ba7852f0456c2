//! The order workflow's read models: `order_status` (one row per order), `order_timeline` (one
//! row per event) and `order_status_counts`. Every column is selected by name and read by name.

use super::{column, label, labels, DbError};
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use domain::{Compensation, PendingAction, Status};
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

/// Columns of `order_status` the projector keeps for its own use; every other column of
/// [`projector::ORDER_STATUS_COLUMNS`] is served.
pub const NOT_SERVED: &[&str] = &[
    "line_count",
    "last_position_commit",
    "last_position_prepare",
    "state",
    "state_version",
];

/// Served columns whose GraphQL field on `Order` is not the column's camelCase name.
pub const SERVED_AS: &[(&str, &str)] = &[("order_id", "id"), ("stream_revision", "revision")];

/// Computed with each order: whether its deadline has passed.
const COMPUTED: &str = "coalesce(deadline_at < now(), false) as overdue";

/// The served columns of `order_status`, in the projector's order.
pub fn served_columns() -> impl Iterator<Item = &'static str> {
    projector::ORDER_STATUS_COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !NOT_SERVED.contains(name))
}

/// The select list of every order query: the served columns and the computed ones;
/// [`OrderRecord::from_row`] reads each by its name.
pub fn order_columns() -> &'static str {
    static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        served_columns()
            .chain(std::iter::once(COMPUTED))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

// Read from the `*_at` columns of `order_status`.
/// When each milestone happened (null until it did).
#[derive(Debug, Clone, PartialEq, async_graphql::SimpleObject)]
pub struct Milestones {
    pub placed_at: DateTime<Utc>,
    pub payment_authorized_at: Option<DateTime<Utc>>,
    pub inventory_reserved_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub fulfillment_started_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub payment_voided_at: Option<DateTime<Utc>>,
    pub inventory_released_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
}

impl Milestones {
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            placed_at: column(r, "placed_at")?,
            payment_authorized_at: column(r, "payment_authorized_at")?,
            inventory_reserved_at: column(r, "inventory_reserved_at")?,
            accepted_at: column(r, "accepted_at")?,
            rejected_at: column(r, "rejected_at")?,
            fulfillment_started_at: column(r, "fulfillment_started_at")?,
            shipped_at: column(r, "shipped_at")?,
            delivered_at: column(r, "delivered_at")?,
            cancelled_at: column(r, "cancelled_at")?,
            payment_voided_at: column(r, "payment_voided_at")?,
            inventory_released_at: column(r, "inventory_released_at")?,
            escalated_at: column(r, "escalated_at")?,
        })
    }
}

/// One order as stored in `order_status`, its labels parsed into the domain's types.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub order_id: Uuid,
    pub status: Status,
    pub customer_id: String,
    pub currency: String,
    pub total_minor: i64,
    pub lines: serde_json::Value,
    pub shipping_address: serde_json::Value,
    pub last_milestone: String,
    pub last_milestone_at: DateTime<Utc>,
    pub pending_actions: Vec<PendingAction>,
    pub failure_reason: Option<String>,
    pub compensations_owed: Vec<Compensation>,
    pub compensations_done: Vec<Compensation>,
    pub payment_id: Option<String>,
    pub reservation_id: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub milestones: Milestones,
    pub escalation_count: i32,
    pub escalation_reason: Option<String>,
    pub correlation_id: Option<String>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub stream_revision: i64,
    pub last_position: String,
    pub overdue: bool,
}

impl OrderRecord {
    /// Reads a row selected with [`order_columns`].
    ///
    /// # Errors
    /// A column missing or of another type, or a label the domain does not know.
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            order_id: column(r, "order_id")?,
            status: label(r, "status", "order status")?,
            customer_id: column(r, "customer_id")?,
            currency: column(r, "currency")?,
            total_minor: column(r, "total_minor")?,
            lines: column(r, "lines")?,
            shipping_address: column(r, "shipping_address")?,
            last_milestone: column(r, "last_milestone")?,
            last_milestone_at: column(r, "last_milestone_at")?,
            pending_actions: labels(r, "pending_actions", "pending action")?,
            failure_reason: column(r, "failure_reason")?,
            compensations_owed: labels(r, "compensations_owed", "compensation")?,
            compensations_done: labels(r, "compensations_done", "compensation")?,
            payment_id: column(r, "payment_id")?,
            reservation_id: column(r, "reservation_id")?,
            carrier: column(r, "carrier")?,
            tracking_number: column(r, "tracking_number")?,
            milestones: Milestones::from_row(r)?,
            escalation_count: column(r, "escalation_count")?,
            escalation_reason: column(r, "escalation_reason")?,
            correlation_id: column(r, "correlation_id")?,
            deadline_at: column(r, "deadline_at")?,
            stream_revision: column(r, "stream_revision")?,
            last_position: column(r, "last_position")?,
            overdue: column(r, "overdue")?,
        })
    }

    pub fn placed_at(&self) -> DateTime<Utc> {
        self.milestones.placed_at
    }
}

fn order_records(rows: &[Row]) -> Result<Vec<OrderRecord>, DbError> {
    rows.iter().map(OrderRecord::from_row).collect()
}

pub async fn order_by_id(client: &ClientWrapper, id: Uuid) -> Result<Option<OrderRecord>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select {} from order_status where order_id = $1",
            order_columns()
        ))
        .await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(OrderRecord::from_row)
        .transpose()
}

/// Filters of `orders`.
#[derive(Debug, Default, Clone)]
pub struct OrderQuery {
    pub status: Option<Status>,
    pub customer_id: Option<String>,
    pub placed_from: Option<DateTime<Utc>>,
    pub placed_to: Option<DateTime<Utc>>,
    pub overdue: Option<bool>,
    /// Continue strictly after this (placed_at, order_id), newest first.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Orders newest first, by (placed_at, order_id) descending: a stable order for cursors.
pub async fn list_orders(
    client: &ClientWrapper,
    q: &OrderQuery,
) -> Result<Vec<OrderRecord>, DbError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut bind = |value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        format!("${}", params.len())
    };
    if let Some(s) = q.status {
        conditions.push(format!("status = {}", bind(Box::new(s.as_str()))));
    }
    if let Some(c) = &q.customer_id {
        conditions.push(format!("customer_id = {}", bind(Box::new(c.clone()))));
    }
    if let Some(from) = q.placed_from {
        conditions.push(format!("placed_at >= {}", bind(Box::new(from))));
    }
    if let Some(to) = q.placed_to {
        conditions.push(format!("placed_at < {}", bind(Box::new(to))));
    }
    match q.overdue {
        Some(true) => conditions.push("deadline_at < now()".into()),
        Some(false) => conditions.push("(deadline_at is null or deadline_at >= now())".into()),
        None => {}
    }
    if let Some((at, id)) = q.after {
        let (a, b) = (bind(Box::new(at)), bind(Box::new(id)));
        conditions.push(format!("(placed_at, order_id) < ({a}, {b})"));
    }
    let limit = bind(Box::new(q.limit));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("where {}", conditions.join(" and "))
    };
    let sql = format!(
        "select {} from order_status {filter} order by placed_at desc, order_id desc limit {limit}",
        order_columns()
    );
    let stmt = client.prepare_cached(&sql).await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    order_records(&client.query(&stmt, &refs).await?)
}

/// Overdue orders, the longest overdue first.
pub async fn stalled_orders(
    client: &ClientWrapper,
    limit: i64,
) -> Result<Vec<OrderRecord>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select {} from order_status where deadline_at < now() order by deadline_at, order_id limit $1",
            order_columns()
        ))
        .await?;
    order_records(&client.query(&stmt, &[&limit]).await?)
}

/// One event in an order's history.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "TimelineEntry")]
pub struct TimelineRecord {
    pub revision: i64,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The event's log position (a consistency token).
    pub position: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// A short human summary.
    pub summary: String,
}

impl TimelineRecord {
    /// Reads a row of a timeline table (every workflow's has the same columns).
    pub(super) fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            revision: column(r, "revision")?,
            event_type: column(r, "event_type")?,
            occurred_at: column(r, "occurred_at")?,
            recorded_at: column(r, "recorded_at")?,
            position: column(r, "position")?,
            correlation_id: column(r, "correlation_id")?,
            causation_id: column(r, "causation_id")?,
            summary: column(r, "summary")?,
        })
    }
}

/// The timelines of several orders in one query (the DataLoader's batch).
pub async fn timelines(
    client: &ClientWrapper,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<TimelineRecord>>, DbError> {
    let stmt = client
        .prepare_cached(
            "select order_id, revision, event_type, occurred_at, recorded_at, position, correlation_id, causation_id, summary
             from order_timeline where order_id = any($1) order by order_id, revision",
        )
        .await?;
    let mut out: HashMap<Uuid, Vec<TimelineRecord>> =
        ids.iter().map(|id| (*id, Vec::new())).collect();
    for r in client.query(&stmt, &[&ids]).await? {
        out.entry(column(&r, "order_id")?)
            .or_default()
            .push(TimelineRecord::from_row(&r)?);
    }
    Ok(out)
}

/// How many orders are in each status, as the projection keeps them.
pub async fn status_counts(client: &ClientWrapper) -> Result<HashMap<Status, i64>, DbError> {
    let stmt = client
        .prepare_cached("select status, orders from order_status_counts")
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| Ok((label(r, "status", "order status")?, column(r, "orders")?)))
        .collect()
}

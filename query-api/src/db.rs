//! Reads of the read models: free functions over a client, prepared and cached statements,
//! and the [`Snapshot`] a request reads them through.

use chrono::{DateTime, Utc};
use deadpool_postgres::{ClientWrapper, Object, Pool};
use event_store::Position;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the read-model database is unavailable: {0}")]
    Unavailable(String),
    #[error("read-model query failed: {0}")]
    Query(String),
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        match event_store::postgres::map_pg_error(&e) {
            event_store::StoreError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Query(other.to_string()),
        }
    }
}

/// The stream of every order, `order-<id>`.
const ORDER_STREAM_PREFIX: &str = "order-";

/// One request's view of the read models: a repeatable-read, read-only transaction on one
/// pooled connection, begun by the first read. Every field of a response then reflects the same
/// commits of the projector (an order's row and its timeline at one revision), and the fields
/// share one connection.
pub struct Snapshot {
    /// Where the connection comes from.
    pool: Pool,
    /// The connection, inside the transaction once begun.
    client: tokio::sync::OnceCell<Object>,
}

impl Snapshot {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// The connection inside the snapshot's transaction, begun on the first call.
    ///
    /// # Errors
    /// When no connection can be had or the transaction cannot begin.
    pub async fn client(&self) -> Result<&ClientWrapper, DbError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let client = self.pool.get().await?;
                client
                    .batch_execute("start transaction isolation level repeatable read, read only")
                    .await?;
                Ok::<_, DbError>(client)
            })
            .await?;
        Ok(client)
    }

    /// Ends the transaction and gives the connection back to the pool.
    pub async fn finish(mut self) {
        if let Some(client) = self.client.take() {
            if let Err(e) = client.batch_execute("rollback").await {
                tracing::warn!(error = %e, "cannot end a read snapshot; closing its connection");
                drop(Object::take(client));
            }
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Not finished (the request was cancelled, or a DataLoader task still held the
        // snapshot when the response was sent): the connection may be inside the transaction.
        // End it on a task of its own so the connection goes back to the pool clean; close the
        // connection when that fails, so it never serves another request mid-transaction.
        let Some(client) = self.client.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = client.batch_execute("rollback").await {
                        tracing::warn!(error = %e, "cannot end a read snapshot; closing its connection");
                        drop(Object::take(client));
                    }
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}

/// The columns every order query selects, in [`OrderRecord::from_row`]'s order.
const ORDER_COLUMNS: &str = "order_id, status, customer_id, currency, total_minor, lines, shipping_address,
    last_milestone, last_milestone_at, pending_actions, failure_reason, compensations_owed, compensations_done,
    payment_id, reservation_id, carrier, tracking_number, placed_at, payment_authorized_at, inventory_reserved_at,
    accepted_at, rejected_at, fulfillment_started_at, shipped_at, delivered_at, cancelled_at, payment_voided_at,
    inventory_released_at, escalated_at, escalation_count, escalation_reason, correlation_id, deadline_at,
    stream_revision, last_position, coalesce(deadline_at < now(), false) as overdue";

/// One order as stored in `order_status`.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub order_id: Uuid,
    pub status: String,
    pub customer_id: String,
    pub currency: String,
    pub total_minor: i64,
    pub lines: serde_json::Value,
    pub shipping_address: serde_json::Value,
    pub last_milestone: String,
    pub last_milestone_at: DateTime<Utc>,
    pub pending_actions: Vec<String>,
    pub failure_reason: Option<String>,
    pub compensations_owed: Vec<String>,
    pub compensations_done: Vec<String>,
    pub payment_id: Option<String>,
    pub reservation_id: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    /// placed, payment authorized, inventory reserved, accepted, rejected, fulfilment started,
    /// shipped, delivered, cancelled, payment voided, inventory released, escalated.
    pub milestones: [Option<DateTime<Utc>>; 12],
    pub escalation_count: i32,
    pub escalation_reason: Option<String>,
    pub correlation_id: Option<String>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub stream_revision: i64,
    pub last_position: String,
    pub overdue: bool,
}

impl OrderRecord {
    fn from_row(r: &Row) -> Self {
        let placed: DateTime<Utc> = r.get(17);
        Self {
            order_id: r.get(0),
            status: r.get(1),
            customer_id: r.get(2),
            currency: r.get(3),
            total_minor: r.get(4),
            lines: r.get(5),
            shipping_address: r.get(6),
            last_milestone: r.get(7),
            last_milestone_at: r.get(8),
            pending_actions: r.get(9),
            failure_reason: r.get(10),
            compensations_owed: r.get(11),
            compensations_done: r.get(12),
            payment_id: r.get(13),
            reservation_id: r.get(14),
            carrier: r.get(15),
            tracking_number: r.get(16),
            milestones: [
                Some(placed),
                r.get(18),
                r.get(19),
                r.get(20),
                r.get(21),
                r.get(22),
                r.get(23),
                r.get(24),
                r.get(25),
                r.get(26),
                r.get(27),
                r.get(28),
            ],
            escalation_count: r.get(29),
            escalation_reason: r.get(30),
            correlation_id: r.get(31),
            deadline_at: r.get(32),
            stream_revision: r.get(33),
            last_position: r.get(34),
            overdue: r.get(35),
        }
    }

    pub fn placed_at(&self) -> DateTime<Utc> {
        self.milestones[0].unwrap_or_default()
    }
}

pub async fn order_by_id(client: &ClientWrapper, id: Uuid) -> Result<Option<OrderRecord>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select {ORDER_COLUMNS} from order_status where order_id = $1"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(OrderRecord::from_row))
}

/// Filters of `orders`.
#[derive(Debug, Default, Clone)]
pub struct OrderQuery {
    pub status: Option<String>,
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
    if let Some(s) = &q.status {
        conditions.push(format!("status = {}", bind(Box::new(s.clone()))));
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
    let sql = format!("select {ORDER_COLUMNS} from order_status {filter} order by placed_at desc, order_id desc limit {limit}");
    let stmt = client.prepare_cached(&sql).await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    Ok(client
        .query(&stmt, &refs)
        .await?
        .iter()
        .map(OrderRecord::from_row)
        .collect())
}

/// Overdue orders, the longest overdue first.
pub async fn stalled_orders(
    client: &ClientWrapper,
    limit: i64,
) -> Result<Vec<OrderRecord>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select {ORDER_COLUMNS} from order_status where deadline_at < now() order by deadline_at, order_id limit $1"
        ))
        .await?;
    Ok(client
        .query(&stmt, &[&limit])
        .await?
        .iter()
        .map(OrderRecord::from_row)
        .collect())
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
        out.entry(r.get(0)).or_default().push(TimelineRecord {
            revision: r.get(1),
            event_type: r.get(2),
            occurred_at: r.get(3),
            recorded_at: r.get(4),
            position: r.get(5),
            correlation_id: r.get(6),
            causation_id: r.get(7),
            summary: r.get(8),
        });
    }
    Ok(out)
}

pub async fn status_counts(client: &ClientWrapper) -> Result<HashMap<String, i64>, DbError> {
    let stmt = client
        .prepare_cached("select status, orders from order_status_counts")
        .await?;
    Ok(client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A projection's checkpoint and how many times it was rebuilt (a rebuild moves it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub rebuilds: i64,
    pub position: Option<Position>,
}

pub async fn load_checkpoint(
    client: &ClientWrapper,
    projection: &str,
) -> Result<Checkpoint, DbError> {
    let stmt = client
        .prepare_cached(
            "select position_commit, position_prepare, rebuilds from projection_checkpoints
              where projection = $1",
        )
        .await?;
    let row = client.query_opt(&stmt, &[&projection]).await?;
    Ok(row.map_or_else(Checkpoint::default, |r| {
        let (c, p): (Option<i64>, Option<i64>) =
            (r.get("position_commit"), r.get("position_prepare"));
        Checkpoint {
            rebuilds: r.get("rebuilds"),
            position: c.zip(p).map(|(c, p)| Position::new(c as u64, p as u64)),
        }
    }))
}

/// Where the projection stands.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "ProjectionStatus")]
pub struct ProjectionRecord {
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

/// The projection's status. Lag is measured against the PostgreSQL event log when it lives in
/// the same database; with KurrentDB it is unknown here (null).
pub async fn projection_status(
    client: &ClientWrapper,
    projection: &str,
) -> Result<ProjectionRecord, DbError> {
    let row = client
        .query_opt(
            "select position, position_commit, position_prepare, events_applied, updated_at from projection_checkpoints where projection = $1",
            &[&projection],
        )
        .await?;
    let (checkpoint, commit, prepare, events_applied, updated_at) = match &row {
        Some(r) => (
            r.get(0),
            r.get::<_, Option<i64>>(1),
            r.get::<_, Option<i64>>(2),
            r.get(3),
            r.get(4),
        ),
        None => (None, None, None, 0, None),
    };
    let has_log: bool = client
        .query_one("select to_regclass('es_events') is not null", &[])
        .await?
        .get(0);
    let (lag_events, lag_seconds) = if has_log {
        let lag = client
            .query_one(
                "select count(*), extract(epoch from now() - min(recorded_at))::float8 from es_events
                 where (tx_id, seq) > ($1, $2) and tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                   and starts_with(stream_id, $3)",
                &[&commit.unwrap_or(0), &prepare.unwrap_or(0), &ORDER_STREAM_PREFIX],
            )
            .await?;
        (
            Some(lag.get::<_, i64>(0)),
            Some(lag.get::<_, Option<f64>>(1).unwrap_or(0.0)),
        )
    } else {
        (None, None)
    };
    let counts = client
        .query_one(
            "select (select count(*) from projection_dead_letters where projection = $1),
                    (select count(*) from projection_parked_streams where projection = $1)",
            &[&projection],
        )
        .await?;
    Ok(ProjectionRecord {
        checkpoint,
        events_applied,
        updated_at,
        lag_events,
        lag_seconds,
        dead_letters: counts.get(0),
        parked_orders: counts.get(1),
    })
}

/// The orders whose event at `position` the projection dead-lettered: it parked them, so their
/// rows stop before that event.
pub async fn orders_parked_at(
    client: &ClientWrapper,
    projection: &str,
    position: Position,
) -> Result<Vec<String>, DbError> {
    let stmt = client
        .prepare_cached(
            "select stream_id from projection_dead_letters where projection = $1 and position = $2 order by stream_id",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&projection, &position.to_string()])
        .await?
        .iter()
        .map(|r| {
            let stream: String = r.get(0);
            stream
                .strip_prefix(ORDER_STREAM_PREFIX)
                .map_or_else(|| stream.clone(), str::to_owned)
        })
        .collect())
}

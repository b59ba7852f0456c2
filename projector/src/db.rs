//! The projector's SQL: free functions taking a transaction, one statement each; a batch's rows
//! travel as typed arrays through `unnest`, so a whole batch costs a handful of round trips.

use crate::model::{Correction, OrderRow, TimelineRow};
use deadpool_postgres::{GenericClient, Transaction};
use event_store::{Position, RecordedEvent};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The read-model migrations, from `schemas/read-models/`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_order_read_models",
        include_str!("../../schemas/read-models/0001_order_read_models.sql"),
    ),
    (
        "0002_projection_corrections",
        include_str!("../../schemas/read-models/0002_projection_corrections.sql"),
    ),
    (
        "0003_projection_leases",
        include_str!("../../schemas/read-models/0003_projection_leases.sql"),
    ),
    (
        "0004_checkpoint_event_store",
        include_str!("../../schemas/read-models/0004_checkpoint_event_store.sql"),
    ),
];

fn position_parts(p: Option<Position>) -> (Option<String>, Option<i64>, Option<i64>) {
    match p {
        Some(p) => (
            Some(p.to_string()),
            Some(p.commit as i64),
            Some(p.prepare as i64),
        ),
        None => (None, None, None),
    }
}

/// Creates the projection's checkpoint row if it is missing.
pub async fn ensure_checkpoint(
    client: &impl GenericClient,
    projection: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "insert into projection_checkpoints (projection) values ($1) on conflict do nothing",
            &[&projection],
        )
        .await?;
    Ok(())
}

/// Claims the checkpoint for the event-store backend `backend` (`postgres`, `kurrentdb`):
/// a checkpoint that has not moved, or predates the record, becomes the backend's; one that
/// moved reading the other backend is returned as `Err(its backend)`, untouched.
pub async fn claim_checkpoint_backend(
    client: &impl GenericClient,
    projection: &str,
    backend: &str,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "update projection_checkpoints
                set event_store = case when position_commit is null or event_store is null
                                       then $2 else event_store end
              where projection = $1
          returning event_store",
            &[&projection, &backend],
        )
        .await?;
    let recorded: String = row.get("event_store");
    Ok(if recorded == backend {
        Ok(())
    } else {
        Err(recorded)
    })
}

/// A checkpoint row, read under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedCheckpoint {
    pub position: Option<Position>,
    /// Moves whenever a correction is written (see `projection_corrections`).
    pub corrections_version: i64,
}

/// Locks the projection's checkpoint row for this transaction and returns it (`None` when the
/// row is missing). One statement, so that statements pipelined after it run under the lock.
/// The lock fences concurrent writers: a second one waits, then sees a moved checkpoint.
pub async fn lock_checkpoint(
    tx: &Transaction<'_>,
    projection: &str,
) -> Result<Option<LockedCheckpoint>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "select position_commit, position_prepare, corrections_version from projection_checkpoints
             where projection = $1 for update",
        )
        .await?;
    let row = tx.query_opt(&stmt, &[&projection]).await?;
    Ok(row.map(|row| LockedCheckpoint {
        position: checkpoint_of(row.get(0), row.get(1)),
        corrections_version: row.get(2),
    }))
}

fn checkpoint_of(commit: Option<i64>, prepare: Option<i64>) -> Option<Position> {
    commit
        .zip(prepare)
        .map(|(c, p)| Position::new(c as u64, p as u64))
}

/// The projection's checkpoint, without locking.
pub async fn load_checkpoint(
    client: &impl GenericClient,
    projection: &str,
) -> Result<Option<Position>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "select position_commit, position_prepare from projection_checkpoints where projection = $1",
            &[&projection],
        )
        .await?;
    Ok(row.and_then(|r| checkpoint_of(r.get(0), r.get(1))))
}

/// Moves the checkpoint and counts the applied events. With a `fence` (the writer's lease
/// token) the update happens only while that token is the checkpoint's; false when it is not
/// (the writer's lease was taken over).
pub async fn store_checkpoint(
    tx: &Transaction<'_>,
    projection: &str,
    position: Option<Position>,
    applied: i64,
    fence: Option<i64>,
) -> Result<bool, tokio_postgres::Error> {
    let (text, commit, prepare) = position_parts(position);
    let stored = tx
        .execute(
            "update projection_checkpoints set position = $2, position_commit = $3, position_prepare = $4,
                    events_applied = events_applied + $5, updated_at = now()
             where projection = $1 and ($6::bigint is null or fencing_token = $6)",
            &[&projection, &text, &commit, &prepare, &applied, &fence],
        )
        .await?;
    Ok(stored == 1)
}

/// Counts the events a retry applied and, when it wrote corrections, moves the corrections'
/// version so that every projector reloads them; the position stays where it is.
pub async fn record_retry(
    tx: &Transaction<'_>,
    projection: &str,
    applied: i64,
    corrected: bool,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "update projection_checkpoints set events_applied = events_applied + $2,
                corrections_version = corrections_version + $3::bool::int, updated_at = now()
         where projection = $1",
        &[&projection, &applied, &corrected],
    )
    .await?;
    Ok(())
}

/// The current rows of these orders, read in binary column by column (no JSON on either side
/// but `lines` and `shipping_address`).
pub async fn load_rows(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, OrderRow>, crate::ProjectorError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        let names: Vec<&str> = ORDER_BINDINGS.iter().map(|(n, _)| *n).collect();
        format!(
            "select {} from order_status where order_id = any($1)",
            names.join(", ")
        )
    });
    let stmt = tx.prepare_cached(sql).await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let row = order_row(&r).map_err(|e| {
            crate::ProjectorError::Corrupt(format!("order_status row does not load: {e}"))
        })?;
        out.insert(row.order_id, row);
    }
    Ok(out)
}

/// A row selected with [`ORDER_BINDINGS`]' columns, in that order.
fn order_row(r: &tokio_postgres::Row) -> Result<OrderRow, tokio_postgres::Error> {
    // Each column's index, found at compile time (a name that is not there fails the build).
    macro_rules! at {
        ($name:literal) => {
            const { column_index($name) }
        };
    }
    Ok(OrderRow {
        order_id: r.try_get(at!("order_id"))?,
        status: r.try_get(at!("status"))?,
        customer_id: r.try_get(at!("customer_id"))?,
        currency: r.try_get(at!("currency"))?,
        total_minor: r.try_get(at!("total_minor"))?,
        line_count: r.try_get(at!("line_count"))?,
        lines: r.try_get(at!("lines"))?,
        shipping_address: r.try_get(at!("shipping_address"))?,
        last_milestone: r.try_get(at!("last_milestone"))?,
        last_milestone_at: r.try_get(at!("last_milestone_at"))?,
        pending_actions: r.try_get(at!("pending_actions"))?,
        failure_reason: r.try_get(at!("failure_reason"))?,
        compensations_owed: r.try_get(at!("compensations_owed"))?,
        compensations_done: r.try_get(at!("compensations_done"))?,
        payment_id: r.try_get(at!("payment_id"))?,
        reservation_id: r.try_get(at!("reservation_id"))?,
        carrier: r.try_get(at!("carrier"))?,
        tracking_number: r.try_get(at!("tracking_number"))?,
        placed_at: r.try_get(at!("placed_at"))?,
        payment_authorized_at: r.try_get(at!("payment_authorized_at"))?,
        inventory_reserved_at: r.try_get(at!("inventory_reserved_at"))?,
        accepted_at: r.try_get(at!("accepted_at"))?,
        rejected_at: r.try_get(at!("rejected_at"))?,
        fulfillment_started_at: r.try_get(at!("fulfillment_started_at"))?,
        shipped_at: r.try_get(at!("shipped_at"))?,
        delivered_at: r.try_get(at!("delivered_at"))?,
        cancelled_at: r.try_get(at!("cancelled_at"))?,
        payment_voided_at: r.try_get(at!("payment_voided_at"))?,
        inventory_released_at: r.try_get(at!("inventory_released_at"))?,
        escalated_at: r.try_get(at!("escalated_at"))?,
        escalation_count: r.try_get(at!("escalation_count"))?,
        escalation_reason: r.try_get(at!("escalation_reason"))?,
        correlation_id: r.try_get(at!("correlation_id"))?,
        deadline_at: r.try_get(at!("deadline_at"))?,
        stream_revision: r.try_get(at!("stream_revision"))?,
        last_position: r.try_get(at!("last_position"))?,
        last_position_commit: r.try_get(at!("last_position_commit"))?,
        last_position_prepare: r.try_get(at!("last_position_prepare"))?,
        state: r.try_get(at!("state"))?,
        order: None,
    })
}

/// The PostgreSQL array literal of simple identifiers (`{A,B}`), cast to `text[]` in SQL: one
/// text per row keeps `unnest` one-dimensional.
fn text_array_literal(values: &[String]) -> String {
    format!("{{{}}}", values.join(","))
}

/// `order_status`'s columns with the array type each is bound as; `text[]` columns travel as
/// array literals (see [`text_array_literal`]).
const ORDER_BINDINGS: [(&str, &str); 39] = [
    ("order_id", "uuid"),
    ("status", "text"),
    ("customer_id", "text"),
    ("currency", "text"),
    ("total_minor", "bigint"),
    ("line_count", "integer"),
    ("lines", "jsonb"),
    ("shipping_address", "jsonb"),
    ("last_milestone", "text"),
    ("last_milestone_at", "timestamptz"),
    ("pending_actions", "text"),
    ("failure_reason", "text"),
    ("compensations_owed", "text"),
    ("compensations_done", "text"),
    ("payment_id", "text"),
    ("reservation_id", "text"),
    ("carrier", "text"),
    ("tracking_number", "text"),
    ("placed_at", "timestamptz"),
    ("payment_authorized_at", "timestamptz"),
    ("inventory_reserved_at", "timestamptz"),
    ("accepted_at", "timestamptz"),
    ("rejected_at", "timestamptz"),
    ("fulfillment_started_at", "timestamptz"),
    ("shipped_at", "timestamptz"),
    ("delivered_at", "timestamptz"),
    ("cancelled_at", "timestamptz"),
    ("payment_voided_at", "timestamptz"),
    ("inventory_released_at", "timestamptz"),
    ("escalated_at", "timestamptz"),
    ("escalation_count", "integer"),
    ("escalation_reason", "text"),
    ("correlation_id", "text"),
    ("deadline_at", "timestamptz"),
    ("stream_revision", "bigint"),
    ("last_position", "text"),
    ("last_position_commit", "bigint"),
    ("last_position_prepare", "bigint"),
    ("state", "text"),
];

/// Where `name` stands in [`ORDER_BINDINGS`]; evaluated at compile time.
const fn column_index(name: &str) -> usize {
    let mut i = 0;
    while i < ORDER_BINDINGS.len() {
        let candidate = ORDER_BINDINGS[i].0.as_bytes();
        let wanted = name.as_bytes();
        if candidate.len() == wanted.len() {
            let mut j = 0;
            while j < wanted.len() && candidate[j] == wanted[j] {
                j += 1;
            }
            if j == wanted.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a column of order_status");
}

pub async fn write_rows(
    tx: &Transaction<'_>,
    new: &[&OrderRow],
    existing: &[&OrderRow],
) -> Result<(), crate::ProjectorError> {
    let (insert, update) = row_statements();
    let (insert, update) =
        futures::try_join!(tx.prepare_cached(insert), tx.prepare_cached(update))?;
    let (new, existing) = (Columns::of(new), Columns::of(existing));
    let writes = [(insert, new), (update, existing)]
        .into_iter()
        .filter(|(_, columns)| !columns.order_id.is_empty());
    futures::future::try_join_all(
        writes.map(|(stmt, columns)| async move { tx.execute(&stmt, &columns.params()).await }),
    )
    .await?;
    Ok(())
}

type Ts = Option<chrono::DateTime<chrono::Utc>>;

/// [`ORDER_BINDINGS`]' columns of some rows, as the arrays they are bound as.
struct Columns<'a> {
    order_id: Vec<Uuid>,
    status: Vec<&'a str>,
    customer_id: Vec<&'a str>,
    currency: Vec<&'a str>,
    total_minor: Vec<i64>,
    line_count: Vec<i32>,
    lines: Vec<&'a serde_json::Value>,
    address: Vec<&'a serde_json::Value>,
    last_milestone: Vec<&'a str>,
    last_milestone_at: Vec<chrono::DateTime<chrono::Utc>>,
    pending: Vec<String>,
    failure: Vec<Option<&'a str>>,
    owed: Vec<String>,
    done: Vec<String>,
    payment_id: Vec<Option<&'a str>>,
    reservation_id: Vec<Option<&'a str>>,
    carrier: Vec<Option<&'a str>>,
    tracking: Vec<Option<&'a str>>,
    placed_at: Vec<chrono::DateTime<chrono::Utc>>,
    stamps: [Vec<Ts>; 11],
    escalation_count: Vec<i32>,
    escalation_reason: Vec<Option<&'a str>>,
    correlation_id: Vec<Option<&'a str>>,
    deadline_at: Vec<Ts>,
    stream_revision: Vec<i64>,
    last_position: Vec<&'a str>,
    commit: Vec<i64>,
    prepare: Vec<i64>,
    state: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(rows: &[&'a OrderRow]) -> Self {
        macro_rules! column {
            ($f:expr) => {
                rows.iter().map(|r| $f(*r)).collect::<Vec<_>>()
            };
        }
        Columns {
            order_id: column!(|r: &OrderRow| r.order_id),
            status: column!(|r: &'a OrderRow| r.status.as_str()),
            customer_id: column!(|r: &'a OrderRow| r.customer_id.as_str()),
            currency: column!(|r: &'a OrderRow| r.currency.as_str()),
            total_minor: column!(|r: &OrderRow| r.total_minor),
            line_count: column!(|r: &OrderRow| r.line_count),
            lines: column!(|r: &'a OrderRow| &r.lines),
            address: column!(|r: &'a OrderRow| &r.shipping_address),
            last_milestone: column!(|r: &'a OrderRow| r.last_milestone.as_str()),
            last_milestone_at: column!(|r: &OrderRow| r.last_milestone_at),
            pending: column!(|r: &OrderRow| text_array_literal(&r.pending_actions)),
            failure: column!(|r: &'a OrderRow| r.failure_reason.as_deref()),
            owed: column!(|r: &OrderRow| text_array_literal(&r.compensations_owed)),
            done: column!(|r: &OrderRow| text_array_literal(&r.compensations_done)),
            payment_id: column!(|r: &'a OrderRow| r.payment_id.as_deref()),
            reservation_id: column!(|r: &'a OrderRow| r.reservation_id.as_deref()),
            carrier: column!(|r: &'a OrderRow| r.carrier.as_deref()),
            tracking: column!(|r: &'a OrderRow| r.tracking_number.as_deref()),
            placed_at: column!(|r: &OrderRow| r.placed_at),
            stamps: [
                column!(|r: &OrderRow| r.payment_authorized_at),
                column!(|r: &OrderRow| r.inventory_reserved_at),
                column!(|r: &OrderRow| r.accepted_at),
                column!(|r: &OrderRow| r.rejected_at),
                column!(|r: &OrderRow| r.fulfillment_started_at),
                column!(|r: &OrderRow| r.shipped_at),
                column!(|r: &OrderRow| r.delivered_at),
                column!(|r: &OrderRow| r.cancelled_at),
                column!(|r: &OrderRow| r.payment_voided_at),
                column!(|r: &OrderRow| r.inventory_released_at),
                column!(|r: &OrderRow| r.escalated_at),
            ],
            escalation_count: column!(|r: &OrderRow| r.escalation_count),
            escalation_reason: column!(|r: &'a OrderRow| r.escalation_reason.as_deref()),
            correlation_id: column!(|r: &'a OrderRow| r.correlation_id.as_deref()),
            deadline_at: column!(|r: &OrderRow| r.deadline_at),
            stream_revision: column!(|r: &OrderRow| r.stream_revision),
            last_position: column!(|r: &'a OrderRow| r.last_position.as_str()),
            commit: column!(|r: &OrderRow| r.last_position_commit),
            prepare: column!(|r: &OrderRow| r.last_position_prepare),
            state: column!(|r: &'a OrderRow| r.state.as_str()),
        }
    }

    /// The parameters, in [`ORDER_BINDINGS`]' order.
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 39] {
        let [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10] = &self.stamps;
        [
            &self.order_id,
            &self.status,
            &self.customer_id,
            &self.currency,
            &self.total_minor,
            &self.line_count,
            &self.lines,
            &self.address,
            &self.last_milestone,
            &self.last_milestone_at,
            &self.pending,
            &self.failure,
            &self.owed,
            &self.done,
            &self.payment_id,
            &self.reservation_id,
            &self.carrier,
            &self.tracking,
            &self.placed_at,
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
            s6,
            s7,
            s8,
            s9,
            s10,
            &self.escalation_count,
            &self.escalation_reason,
            &self.correlation_id,
            &self.deadline_at,
            &self.stream_revision,
            &self.last_position,
            &self.commit,
            &self.prepare,
            &self.state,
        ]
    }
}

/// The insert and the update statement for [`ORDER_BINDINGS`], built once. A plain insert
/// rather than an upsert: the caller knows which rows exist (it loaded them under the
/// checkpoint's lock), and `on conflict` costs the server a speculative insertion per row.
fn row_statements() -> (&'static str, &'static str) {
    static SQL: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (insert, update) = SQL.get_or_init(|| {
        let array_literal = [
            "pending_actions",
            "compensations_owed",
            "compensations_done",
        ];
        let names: Vec<&str> = ORDER_BINDINGS.iter().map(|(n, _)| *n).collect();
        let arrays: Vec<String> = ORDER_BINDINGS
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("${}::{t}[]", i + 1))
            .collect();
        let value = |n: &str| {
            if array_literal.contains(&n) {
                format!("u.{n}::text[]")
            } else {
                format!("u.{n}")
            }
        };
        let source = format!("unnest({}) as u({})", arrays.join(", "), names.join(", "));
        let selected: Vec<String> = names.iter().map(|n| value(n)).collect();
        let assigned: Vec<String> = names[1..]
            .iter()
            .map(|n| format!("{n} = {}", value(n)))
            .collect();
        (
            format!(
                "insert into order_status ({}) select {} from {source}",
                names.join(", "),
                selected.join(", ")
            ),
            format!(
                "update order_status o set {} from {source} where o.order_id = u.order_id",
                assigned.join(", ")
            ),
        )
    });
    (insert, update)
}

/// Inserts timeline entries. A plain insert: an entry is made only for an event newer than its
/// order's row, and the row moves with it in the same transaction, so an entry is never written
/// twice (a duplicate would be a bug, and fails the batch loudly rather than hiding it).
/// Inserts timeline entries. A plain insert: an entry is made only for an event newer than its
/// order's row, and the row moves with it in the same transaction, so an entry is never written
/// twice (a duplicate would be a bug, and fails the batch loudly rather than hiding it).
pub async fn insert_timeline(
    tx: &Transaction<'_>,
    rows: &[TimelineRow],
) -> Result<(), crate::ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Typed arrays travel in binary: no JSON for the server to parse.
    let order_ids: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
    let revisions: Vec<i64> = rows.iter().map(|r| r.revision).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    let occurred: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().map(|r| r.occurred_at).collect();
    let recorded: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().map(|r| r.recorded_at).collect();
    let positions: Vec<&str> = rows.iter().map(|r| r.position.as_str()).collect();
    let event_ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    let correlations: Vec<Option<&str>> =
        rows.iter().map(|r| r.correlation_id.as_deref()).collect();
    let causations: Vec<Option<&str>> = rows.iter().map(|r| r.causation_id.as_deref()).collect();
    let summaries: Vec<&str> = rows.iter().map(|r| r.summary.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "insert into order_timeline (order_id, revision, event_type, occurred_at, recorded_at, position,
                                         event_id, correlation_id, causation_id, summary)
             select * from unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                                  $6::text[], $7::uuid[], $8::text[], $9::text[], $10::text[])
",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &order_ids,
            &revisions,
            &types,
            &occurred,
            &recorded,
            &positions,
            &event_ids,
            &correlations,
            &causations,
            &summaries,
        ],
    )
    .await?;
    Ok(())
}

/// Sends `payload` on `channel` when the transaction commits.
pub async fn notify(
    tx: &Transaction<'_>,
    channel: &str,
    payload: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute("select pg_notify($1, $2)", &[&channel, &payload])
        .await?;
    Ok(())
}

/// Adds `delta` to each status's count.
pub async fn add_status_counts(
    tx: &Transaction<'_>,
    deltas: &HashMap<String, i64>,
) -> Result<(), tokio_postgres::Error> {
    let mut statuses: Vec<&String> = deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(s, _)| s)
        .collect();
    if statuses.is_empty() {
        return Ok(());
    }
    // A fixed order keeps concurrent transactions from deadlocking on these rows.
    statuses.sort();
    let amounts: Vec<i64> = statuses.iter().map(|s| deltas[*s]).collect();
    let stmt = tx
        .prepare_cached(
            "insert into order_status_counts (status, orders) select * from unnest($1::text[], $2::bigint[])
             on conflict (status) do update set orders = order_status_counts.orders + excluded.orders",
        )
        .await?;
    tx.execute(&stmt, &[&statuses, &amounts]).await?;
    // Zero rows would make the table depend on batch boundaries.
    tx.execute("delete from order_status_counts where orders = 0", &[])
        .await?;
    Ok(())
}

/// The streams of this projection that are parked.
pub async fn parked_streams(
    tx: &Transaction<'_>,
    projection: &str,
    streams: &[&str],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached("select stream_id from projection_parked_streams where projection = $1 and stream_id = any($2)")
        .await?;
    let rows = tx.query(&stmt, &[&projection, &streams]).await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

pub async fn park_stream(
    tx: &Transaction<'_>,
    projection: &str,
    stream: &str,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "insert into projection_parked_streams (projection, stream_id, reason) values ($1, $2, $3)
         on conflict do nothing",
        &[&projection, &stream, &reason],
    )
    .await?;
    Ok(())
}

fn metadata_json(metadata: &event_store::Metadata) -> serde_json::Value {
    serde_json::to_value(metadata).unwrap_or(serde_json::Value::Null)
}

pub async fn insert_dead_letter(
    tx: &Transaction<'_>,
    projection: &str,
    event: &RecordedEvent,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    let metadata = metadata_json(&event.metadata);
    tx.execute(
        "insert into projection_dead_letters
           (projection, stream_id, revision, position, event_id, event_type, schema_version, data, metadata, recorded_at, error)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         on conflict (projection, stream_id, revision) do nothing",
        &[
            &projection,
            &event.stream_id,
            &(event.revision as i64),
            &event.position.to_string(),
            &event.id,
            &event.event_type,
            &(event.schema_version as i32),
            &event.data,
            &metadata,
            &event.recorded_at,
            &error,
        ],
    )
    .await?;
    Ok(())
}

/// A dead-lettered event, as stored (and perhaps edited by an operator), with the error that
/// put it there.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub event: RecordedEvent,
    pub error: String,
}

/// A stream's dead letters, oldest first, as events again.
pub async fn load_dead_letters(
    tx: &Transaction<'_>,
    projection: &str,
    stream: &str,
) -> Result<Vec<DeadLetter>, crate::ProjectorError> {
    let rows = tx
        .query(
            "select stream_id, revision, position, event_id, event_type, schema_version, data, metadata, recorded_at, error
             from projection_dead_letters where projection = $1 and stream_id = $2 order by revision",
            &[&projection, &stream],
        )
        .await?;
    rows.into_iter()
        .map(|r| {
            let position: String = r.get(2);
            Ok(DeadLetter {
                event: RecordedEvent {
                    stream_id: r.get(0),
                    revision: r.get::<_, i64>(1) as u64,
                    position: position.parse().map_err(|e: event_store::StoreError| {
                        crate::ProjectorError::Corrupt(e.to_string())
                    })?,
                    id: r.get(3),
                    event_type: r.get(4),
                    schema_version: r.get::<_, i32>(5) as u32,
                    data: r.get(6),
                    metadata: serde_json::from_value(r.get(7)).unwrap_or_default(),
                    recorded_at: r.get(8),
                    // Kept apart to be fixed and retried: what it holds now is what is applied.
                    malformed: None,
                },
                error: r.get(9),
            })
        })
        .collect()
}

/// Who repaired an event and why, as far as known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairNote {
    /// Defaults to the database user.
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// Records `correction` of the dead-lettered `letter`'s event (replacing an earlier one).
pub async fn upsert_correction(
    tx: &Transaction<'_>,
    projection: &str,
    letter: &DeadLetter,
    correction: &Correction,
    note: &RepairNote,
) -> Result<(), tokio_postgres::Error> {
    let event = &letter.event;
    tx.execute(
        "insert into projection_corrections
           (projection, event_id, stream_id, revision, event_type, schema_version, data, metadata,
            corrected_by, reason, repaired_error)
         values ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, current_user), $10, $11)
         on conflict (projection, event_id) do update set
           event_type = excluded.event_type, schema_version = excluded.schema_version,
           data = excluded.data, metadata = excluded.metadata, corrected_by = excluded.corrected_by,
           reason = excluded.reason, repaired_error = excluded.repaired_error, corrected_at = now()",
        &[
            &projection,
            &event.id,
            &event.stream_id,
            &(event.revision as i64),
            &correction.event_type,
            &(correction.schema_version as i32),
            &correction.data,
            &metadata_json(&correction.metadata),
            &note.by,
            &note.reason,
            &letter.error,
        ],
    )
    .await?;
    Ok(())
}

/// Every correction of the projection, by event id.
pub async fn load_corrections(
    tx: &Transaction<'_>,
    projection: &str,
) -> Result<HashMap<Uuid, Correction>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "select event_id, event_type, schema_version, data, metadata
             from projection_corrections where projection = $1",
            &[&projection],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get(0),
                Correction {
                    event_type: r.get(1),
                    schema_version: r.get::<_, i32>(2) as u32,
                    data: r.get(3),
                    metadata: serde_json::from_value(r.get(4)).unwrap_or_default(),
                },
            )
        })
        .collect())
}

/// Empties every table of the projection and its checkpoint. Corrections stay: the replay
/// applies them again.
pub async fn reset_projection(
    tx: &Transaction<'_>,
    projection: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute("truncate order_status, order_timeline, order_status_counts")
        .await?;
    tx.execute(
        "delete from projection_dead_letters where projection = $1",
        &[&projection],
    )
    .await?;
    tx.execute(
        "delete from projection_parked_streams where projection = $1",
        &[&projection],
    )
    .await?;
    tx.execute(
        "update projection_checkpoints set position = null, position_commit = null, position_prepare = null,
                event_store = null, events_applied = 0, rebuilds = rebuilds + 1, updated_at = now()
          where projection = $1",
        &[&projection],
    )
    .await?;
    Ok(())
}

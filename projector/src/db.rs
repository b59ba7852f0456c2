//! The projector's SQL: free functions taking a transaction, one statement each; a batch's rows
//! travel as typed arrays through `unnest`, so a whole batch costs a handful of round trips.

use crate::model::{OrderRow, TimelineRow};
use deadpool_postgres::{GenericClient, Transaction};
use event_store::{Position, RecordedEvent};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The read-model migrations, from `schemas/read-models/`.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_order_read_models",
    include_str!("../../schemas/read-models/0001_order_read_models.sql"),
)];

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

/// Locks the projection's checkpoint row for this transaction and returns it (`None` when the
/// row is missing). One statement, so that statements pipelined after it run under the lock.
/// The lock fences concurrent writers: a second one waits, then sees a moved checkpoint.
pub async fn lock_checkpoint(
    tx: &Transaction<'_>,
    projection: &str,
) -> Result<Option<Option<Position>>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "select position_commit, position_prepare from projection_checkpoints where projection = $1 for update",
        )
        .await?;
    let row = tx.query_opt(&stmt, &[&projection]).await?;
    Ok(row.map(|row| checkpoint_of(row.get(0), row.get(1))))
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

pub async fn store_checkpoint(
    tx: &Transaction<'_>,
    projection: &str,
    position: Option<Position>,
    applied: i64,
) -> Result<(), tokio_postgres::Error> {
    let (text, commit, prepare) = position_parts(position);
    tx.execute(
        "update projection_checkpoints set position = $2, position_commit = $3, position_prepare = $4,
                events_applied = events_applied + $5, updated_at = now()
         where projection = $1",
        &[&projection, &text, &commit, &prepare, &applied],
    )
    .await?;
    Ok(())
}

/// The current rows of these orders.
pub async fn load_rows(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, OrderRow>, crate::ProjectorError> {
    let stmt = tx
        .prepare_cached("select to_jsonb(s)::text from order_status s where order_id = any($1)")
        .await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let row: OrderRow = serde_json::from_str(r.get(0)).map_err(|e| {
            crate::ProjectorError::Corrupt(format!("order_status row does not load: {e}"))
        })?;
        out.insert(row.order_id, row);
    }
    Ok(out)
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

/// Inserts or replaces these rows. Columns travel as typed arrays in binary, so the server
/// parses no JSON but the small `lines` and `shipping_address` documents.
pub async fn upsert_rows(
    tx: &Transaction<'_>,
    rows: &[&OrderRow],
) -> Result<(), crate::ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    type Ts = Option<chrono::DateTime<chrono::Utc>>;
    macro_rules! column {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let order_id: Vec<Uuid> = column!(|r| r.order_id);
    let status: Vec<&str> = column!(|r| r.status.as_str());
    let customer_id: Vec<&str> = column!(|r| r.customer_id.as_str());
    let currency: Vec<&str> = column!(|r| r.currency.as_str());
    let total_minor: Vec<i64> = column!(|r| r.total_minor);
    let line_count: Vec<i32> = column!(|r| r.line_count);
    let lines: Vec<&serde_json::Value> = column!(|r| &r.lines);
    let address: Vec<&serde_json::Value> = column!(|r| &r.shipping_address);
    let last_milestone: Vec<&str> = column!(|r| r.last_milestone.as_str());
    let last_milestone_at: Vec<chrono::DateTime<chrono::Utc>> = column!(|r| r.last_milestone_at);
    let pending: Vec<String> = column!(|r| text_array_literal(&r.pending_actions));
    let failure: Vec<Option<&str>> = column!(|r| r.failure_reason.as_deref());
    let owed: Vec<String> = column!(|r| text_array_literal(&r.compensations_owed));
    let done: Vec<String> = column!(|r| text_array_literal(&r.compensations_done));
    let payment_id: Vec<Option<&str>> = column!(|r| r.payment_id.as_deref());
    let reservation_id: Vec<Option<&str>> = column!(|r| r.reservation_id.as_deref());
    let carrier: Vec<Option<&str>> = column!(|r| r.carrier.as_deref());
    let tracking: Vec<Option<&str>> = column!(|r| r.tracking_number.as_deref());
    let placed_at: Vec<chrono::DateTime<chrono::Utc>> = column!(|r| r.placed_at);
    let stamps: [Vec<Ts>; 11] = [
        column!(|r| r.payment_authorized_at),
        column!(|r| r.inventory_reserved_at),
        column!(|r| r.accepted_at),
        column!(|r| r.rejected_at),
        column!(|r| r.fulfillment_started_at),
        column!(|r| r.shipped_at),
        column!(|r| r.delivered_at),
        column!(|r| r.cancelled_at),
        column!(|r| r.payment_voided_at),
        column!(|r| r.inventory_released_at),
        column!(|r| r.escalated_at),
    ];
    let escalation_count: Vec<i32> = column!(|r| r.escalation_count);
    let escalation_reason: Vec<Option<&str>> = column!(|r| r.escalation_reason.as_deref());
    let correlation_id: Vec<Option<&str>> = column!(|r| r.correlation_id.as_deref());
    let deadline_at: Vec<Ts> = column!(|r| r.deadline_at);
    let stream_revision: Vec<i64> = column!(|r| r.stream_revision);
    let last_position: Vec<&str> = column!(|r| r.last_position.as_str());
    let commit: Vec<i64> = column!(|r| r.last_position_commit);
    let prepare: Vec<i64> = column!(|r| r.last_position_prepare);
    let state: Vec<&str> = column!(|r| r.state.as_str());
    let [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10] = &stamps;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 39] = [
        &order_id,
        &status,
        &customer_id,
        &currency,
        &total_minor,
        &line_count,
        &lines,
        &address,
        &last_milestone,
        &last_milestone_at,
        &pending,
        &failure,
        &owed,
        &done,
        &payment_id,
        &reservation_id,
        &carrier,
        &tracking,
        &placed_at,
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
        &escalation_count,
        &escalation_reason,
        &correlation_id,
        &deadline_at,
        &stream_revision,
        &last_position,
        &commit,
        &prepare,
        &state,
    ];
    let stmt = tx.prepare_cached(upsert_sql()).await?;
    tx.execute(&stmt, &params).await?;
    Ok(())
}

/// The upsert statement for [`ORDER_BINDINGS`], built once.
fn upsert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let array_literal = ["pending_actions", "compensations_owed", "compensations_done"];
        let names: Vec<&str> = ORDER_BINDINGS.iter().map(|(n, _)| *n).collect();
        let arrays: Vec<String> = ORDER_BINDINGS
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("${}::{t}[]", i + 1))
            .collect();
        let selected: Vec<String> = names
            .iter()
            .map(|n| if array_literal.contains(n) { format!("u.{n}::text[]") } else { format!("u.{n}") })
            .collect();
        let updates: Vec<String> = names[1..].iter().map(|n| format!("{n} = excluded.{n}")).collect();
        format!(
            "insert into order_status ({}) select {} from unnest({}) as u({}) on conflict (order_id) do update set {}",
            names.join(", "),
            selected.join(", "),
            arrays.join(", "),
            names.join(", "),
            updates.join(", ")
        )
    })
}

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
             on conflict do nothing",
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

pub async fn insert_dead_letter(
    tx: &Transaction<'_>,
    projection: &str,
    event: &RecordedEvent,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    let metadata = serde_json::to_value(&event.metadata).unwrap_or(serde_json::Value::Null);
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

/// A stream's dead letters, oldest first, as events again.
pub async fn load_dead_letters(
    tx: &Transaction<'_>,
    projection: &str,
    stream: &str,
) -> Result<Vec<(i64, RecordedEvent)>, crate::ProjectorError> {
    let rows = tx
        .query(
            "select id, stream_id, revision, position, event_id, event_type, schema_version, data, metadata, recorded_at
             from projection_dead_letters where projection = $1 and stream_id = $2 order by revision",
            &[&projection, &stream],
        )
        .await?;
    rows.into_iter()
        .map(|r| {
            let position: String = r.get(3);
            Ok((
                r.get(0),
                RecordedEvent {
                    stream_id: r.get(1),
                    revision: r.get::<_, i64>(2) as u64,
                    position: position.parse().map_err(|e: event_store::StoreError| {
                        crate::ProjectorError::Corrupt(e.to_string())
                    })?,
                    id: r.get(4),
                    event_type: r.get(5),
                    schema_version: r.get::<_, i32>(6) as u32,
                    data: r.get(7),
                    metadata: serde_json::from_value(r.get(8)).unwrap_or_default(),
                    recorded_at: r.get(9),
                },
            ))
        })
        .collect()
}

/// Empties every table of the projection and its checkpoint.
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
                events_applied = 0, updated_at = now() where projection = $1",
        &[&projection],
    )
    .await?;
    Ok(())
}

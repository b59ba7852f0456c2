//! The runtime's SQL, shared by every projection: checkpoints, dead letters, parked streams and
//! corrections; free functions taking a client or transaction, one statement each.

use crate::correction::Correction;
use deadpool_postgres::{GenericClient, Transaction};
use event_store::{Position, RecordedEvent};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The runtime's own tables (checkpoints, dead letters, parked streams, corrections, leases),
/// from `schemas/read-models/`: applied at start-up before any projection's migrations, so a
/// projection lists only its read models.
pub const RUNTIME_MIGRATIONS: &[(&str, &str)] = &[
    (
        "0007_projection_runtime",
        include_str!("../../schemas/read-models/0007_projection_runtime.sql"),
    ),
    (
        "0010_projection_partitions",
        include_str!("../../schemas/read-models/0010_projection_partitions.sql"),
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

/// Records that `projection` runs as `count` partitions, and creates each missing partition
/// row `keys` where the projection's own row stands (so that switching to partitions does not
/// replay the log).
pub async fn ensure_partitions(
    client: &impl GenericClient,
    projection: &str,
    count: u32,
    keys: &[&str],
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "update projection_checkpoints set partitions = $2 where projection = $1",
            &[&projection, &(count as i32)],
        )
        .await?;
    client
        .execute(
            "insert into projection_checkpoints
               (projection, position, position_commit, position_prepare, event_store)
             select key, position, position_commit, position_prepare, event_store
               from projection_checkpoints, unnest($2::text[]) as key
              where projection = $1 and key <> $1
             on conflict do nothing",
            &[&projection, &keys],
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
    /// Moves whenever a retry or a correction is written (see `projection_corrections`), so
    /// that a batch applied before it, outside the lock, is not written after it.
    pub corrections_version: i64,
}

/// Locks the projection's checkpoint row for this transaction and returns it (`None` when the
/// row is missing). One statement, so that statements pipelined after it run under the lock.
/// The lock fences concurrent writers: a second one waits, then sees a moved checkpoint.
pub async fn lock_checkpoint(
    tx: &Transaction<'_>,
    projection: &str,
) -> Result<Option<LockedCheckpoint>, tokio_postgres::Error> {
    checkpoint_row(tx, projection, " for update").await
}

/// The projection's checkpoint row as the transaction sees it, without locking it.
pub async fn read_checkpoint(
    tx: &Transaction<'_>,
    projection: &str,
) -> Result<Option<LockedCheckpoint>, tokio_postgres::Error> {
    checkpoint_row(tx, projection, "").await
}

async fn checkpoint_row(
    tx: &Transaction<'_>,
    projection: &str,
    lock: &str,
) -> Result<Option<LockedCheckpoint>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "select position_commit, position_prepare, corrections_version from projection_checkpoints
             where projection = $1{lock}"
        ))
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

/// Counts the events a retry applied on the checkpoint row `key` and moves the corrections'
/// version on every row of `keys` (all the projection's partitions): every projector reloads
/// the corrections when the retry wrote some, and a catch-up batch applied before the retry
/// (outside the lock) is applied again after it. The positions stay where they are.
pub async fn record_retry(
    tx: &Transaction<'_>,
    key: &str,
    keys: &[&str],
    applied: i64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "update projection_checkpoints
            set events_applied = events_applied + case when projection = $1 then $3::bigint else 0 end,
                corrections_version = corrections_version + 1, updated_at = now()
          where projection = $1 or projection = any($2)",
        &[&key, &keys, &applied],
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

/// How many streams of this projection are parked.
pub async fn count_parked_streams(
    client: &impl GenericClient,
    projection: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "select count(*) from projection_parked_streams where projection = $1",
            &[&projection],
        )
        .await?;
    Ok(row.get(0))
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

/// Lets the stream's events through again: its dead letters and its parking go.
pub async fn unpark_stream(
    tx: &Transaction<'_>,
    projection: &str,
    stream: &str,
) -> Result<(), tokio_postgres::Error> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&projection, &stream];
    futures::try_join!(
        tx.execute(
            "delete from projection_dead_letters where projection = $1 and stream_id = $2",
            &params,
        ),
        tx.execute(
            "delete from projection_parked_streams where projection = $1 and stream_id = $2",
            &params,
        ),
    )?;
    Ok(())
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

/// Empties `tables` (the projection's), its dead letters and parked streams, and its checkpoint
/// rows `keys` (one per partition). Corrections stay: the replay applies them again.
pub async fn reset_projection(
    tx: &Transaction<'_>,
    projection: &str,
    keys: &[&str],
    tables: &[&str],
) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(&format!("truncate {}", tables.join(", ")))
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
          where projection = any($1)",
        &[&keys],
    )
    .await?;
    Ok(())
}

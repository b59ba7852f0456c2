//! The returns read models' SQL: one batched statement per table; a batch's rows travel as
//! typed arrays through `unnest`, so a whole batch costs one round trip.

use super::columns::{bind_columns, return_row, ReturnRow, RETURN_STATUS_COLUMNS};
use super::model::TimelineRow;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use uuid::Uuid;

/// The current rows of these return cases, read in binary column by column (no JSON on either
/// side but `lines`).
pub async fn load_rows(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, ReturnRow>, crate::ProjectorError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        let names: Vec<&str> = RETURN_STATUS_COLUMNS.iter().map(|(n, _)| *n).collect();
        format!(
            "select {} from return_status where order_id = any($1)",
            names.join(", ")
        )
    });
    let stmt = tx.prepare_cached(sql).await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let row = return_row(&r).map_err(|e| {
            crate::ProjectorError::Corrupt(format!("return_status row does not load: {e}"))
        })?;
        out.insert(row.order_id, row);
    }
    Ok(out)
}

/// Inserts the `new` rows and updates the `existing` ones, every column bound by its name.
pub async fn write_rows(
    tx: &Transaction<'_>,
    new: &[&ReturnRow],
    existing: &[&ReturnRow],
) -> Result<(), crate::ProjectorError> {
    let (insert, update) = row_statements();
    let (insert, update) =
        futures::try_join!(tx.prepare_cached(insert), tx.prepare_cached(update))?;
    let writes = [(insert, new), (update, existing)]
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(stmt, rows)| async move {
            let params = bind_columns(rows);
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| &**p as _).collect();
            tx.execute(&stmt, &params).await
        });
    futures::future::try_join_all(writes).await?;
    Ok(())
}

/// The insert and the update statement for [`RETURN_STATUS_COLUMNS`], built once. A plain insert
/// rather than an upsert: the caller knows which rows exist (it loaded them under the
/// checkpoint's lock), and `on conflict` costs the server a speculative insertion per row.
/// `text[]` columns travel as one array literal per row (see `Bind`), cast back here.
fn row_statements() -> (&'static str, &'static str) {
    static SQL: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (insert, update) = SQL.get_or_init(|| {
        let names: Vec<&str> = RETURN_STATUS_COLUMNS.iter().map(|(n, _)| *n).collect();
        let arrays: Vec<String> = RETURN_STATUS_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("${}::{}[]", i + 1, t.trim_end_matches("[]")))
            .collect();
        let values: Vec<String> = RETURN_STATUS_COLUMNS
            .iter()
            .map(|(n, t)| {
                if t.ends_with("[]") {
                    format!("u.{n}::{t}")
                } else {
                    format!("u.{n}")
                }
            })
            .collect();
        let source = format!("unnest({}) as u({})", arrays.join(", "), names.join(", "));
        let assigned: Vec<String> = names[1..]
            .iter()
            .zip(&values[1..])
            .map(|(n, v)| format!("{n} = {v}"))
            .collect();
        (
            format!(
                "insert into return_status ({}) select {} from {source}",
                names.join(", "),
                values.join(", ")
            ),
            format!(
                "update return_status r set {} from {source} where r.order_id = u.order_id",
                assigned.join(", ")
            ),
        )
    });
    (insert, update)
}

/// Inserts timeline entries. A plain insert: an entry is made only for an event newer than its
/// return's row, and the row moves with it in the same transaction, so an entry is never written
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
            "insert into return_timeline (order_id, revision, event_type, occurred_at, recorded_at, position,
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
            "insert into return_status_counts (status, returns) select * from unnest($1::text[], $2::bigint[])
             on conflict (status) do update set returns = return_status_counts.returns + excluded.returns",
        )
        .await?;
    tx.execute(&stmt, &[&statuses, &amounts]).await?;
    // Zero rows would make the table depend on batch boundaries.
    tx.execute("delete from return_status_counts where returns = 0", &[])
        .await?;
    Ok(())
}

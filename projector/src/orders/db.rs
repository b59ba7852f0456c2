//! The order read models' SQL: one batched statement per table; a batch's rows travel as
//! typed arrays through `unnest`, so a whole batch costs one round trip.

use super::columns::{bind_columns, order_row, OrderRow, ORDER_STATUS_COLUMNS};
use super::model::TimelineRow;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The current rows of these orders, read in binary column by column (no JSON on either side
/// but `lines` and `shipping_address`).
pub async fn load_rows(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, OrderRow>, crate::ProjectorError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        let names: Vec<&str> = ORDER_STATUS_COLUMNS.iter().map(|(n, _)| *n).collect();
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

/// Inserts the `new` rows and updates the `existing` ones, every column bound by its name.
pub async fn write_rows(
    tx: &Transaction<'_>,
    new: &[&OrderRow],
    existing: &[&OrderRow],
) -> Result<(), crate::ProjectorError> {
    let (insert, update) = row_statements();
    let (insert, update) =
        futures::try_join!(tx.prepare_cached(insert), tx.prepare_cached(update))?;
    let writes = [(insert, new), (update, existing)]
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(stmt, rows)| async move {
            let params = bind_columns(rows);
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
            tx.execute(&stmt, &params).await
        });
    futures::future::try_join_all(writes).await?;
    Ok(())
}

/// The insert and the update statement for [`ORDER_STATUS_COLUMNS`], built once. A plain insert
/// rather than an upsert: the caller knows which rows exist (it loaded them under the
/// checkpoint's lock), and `on conflict` costs the server a speculative insertion per row.
/// `text[]` columns travel as one array literal per row (see `Bind`), cast back here.
fn row_statements() -> (&'static str, &'static str) {
    static SQL: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (insert, update) = SQL.get_or_init(|| {
        let names: Vec<&str> = ORDER_STATUS_COLUMNS.iter().map(|(n, _)| *n).collect();
        let arrays: Vec<String> = ORDER_STATUS_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("${}::{}[]", i + 1, t.trim_end_matches("[]")))
            .collect();
        let values: Vec<String> = ORDER_STATUS_COLUMNS
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
                "insert into order_status ({}) select {} from {source}",
                names.join(", "),
                values.join(", ")
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
pub async fn insert_timeline(
    tx: &Transaction<'_>,
    rows: &[TimelineRow],
) -> Result<(), crate::ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Typed arrays travel in binary: no JSON for the server to parse.
    let columns: [Column<'_>; 10] = [
        column("order_id", "uuid", rows.iter().map(|r| r.order_id)),
        column("revision", "bigint", rows.iter().map(|r| r.revision)),
        column(
            "event_type",
            "text",
            rows.iter().map(|r| r.event_type.as_str()),
        ),
        column(
            "occurred_at",
            "timestamptz",
            rows.iter().map(|r| r.occurred_at),
        ),
        column(
            "recorded_at",
            "timestamptz",
            rows.iter().map(|r| r.recorded_at),
        ),
        column("position", "text", rows.iter().map(|r| r.position.as_str())),
        column("event_id", "uuid", rows.iter().map(|r| r.event_id)),
        column(
            "correlation_id",
            "text",
            rows.iter().map(|r| r.correlation_id.as_deref()),
        ),
        column(
            "causation_id",
            "text",
            rows.iter().map(|r| r.causation_id.as_deref()),
        ),
        column("summary", "text", rows.iter().map(|r| r.summary.as_str())),
    ];
    insert_unnest(tx, "order_timeline", &columns, "").await?;
    Ok(())
}

/// One column of a batched insert: its name, its SQL type and its values (one per row) as one
/// array parameter, so that each value list stands next to the name of its column.
type Column<'a> = (
    &'static str,
    &'static str,
    Box<dyn ToSql + Sync + Send + 'a>,
);

fn column<'a, T: ToSql + Sync + Send + 'a>(
    name: &'static str,
    sql_type: &'static str,
    values: impl Iterator<Item = T>,
) -> Column<'a> {
    (name, sql_type, Box::new(values.collect::<Vec<T>>()))
}

/// Inserts one row per element of `columns`' arrays into `table`, each column named with its
/// values; `tail` follows the insert (e.g. an `on conflict` clause).
async fn insert_unnest(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[Column<'_>],
    tail: &str,
) -> Result<u64, tokio_postgres::Error> {
    let names: Vec<&str> = columns.iter().map(|(name, _, _)| *name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, sql_type, _))| format!("${}::{sql_type}[]", i + 1))
        .collect();
    let sql = format!(
        "insert into {table} ({}) select * from unnest({}) {tail}",
        names.join(", "),
        arrays.join(", ")
    );
    let stmt = tx.prepare_cached(&sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|(_, _, p)| &**p as _).collect();
    tx.execute(&stmt, &params).await
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
    let columns: [Column<'_>; 2] = [
        column("status", "text", statuses.iter().map(|s| s.as_str())),
        column("orders", "bigint", statuses.iter().map(|s| deltas[*s])),
    ];
    insert_unnest(
        tx,
        "order_status_counts",
        &columns,
        "on conflict (status) do update set orders = order_status_counts.orders + excluded.orders",
    )
    .await?;
    // Zero rows would make the table depend on batch boundaries.
    tx.execute("delete from order_status_counts where orders = 0", &[])
        .await?;
    Ok(())
}

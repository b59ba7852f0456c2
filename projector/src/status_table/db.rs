//! A status table's SQL, for any [`StatusRow`]: one batched statement per table; a batch's rows
//! travel as typed arrays through `unnest`, so a whole batch costs one round trip.

use super::{StatusRow, TimelineRow};
use crate::ProjectorError;
use deadpool_postgres::Transaction;
use event_store::Principal;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The statements of one status table, built once from its column list.
#[derive(Debug)]
pub struct Statements {
    select: String,
    insert: String,
    update: String,
}

impl Statements {
    /// A plain insert rather than an upsert: the caller knows which rows exist (it loaded them
    /// under the checkpoint's lock), and `on conflict` costs the server a speculative insertion
    /// per row. `text[]` columns travel as one array literal per row (see `Bind`), cast back
    /// here. The first column is the key.
    pub fn new(table: &str, columns: &[(&str, &str)]) -> Self {
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let arrays: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("${}::{}[]", i + 1, t.trim_end_matches("[]")))
            .collect();
        let values: Vec<String> = columns
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
        let key = names[0];
        let assigned: Vec<String> = names[1..]
            .iter()
            .zip(&values[1..])
            .map(|(n, v)| format!("{n} = {v}"))
            .collect();
        Self {
            select: format!(
                "select {} from {table} where {key} = any($1)",
                names.join(", ")
            ),
            insert: format!(
                "insert into {table} ({}) select {} from {source}",
                names.join(", "),
                values.join(", ")
            ),
            update: format!(
                "update {table} t set {} from {source} where t.{key} = u.{key}",
                assigned.join(", ")
            ),
        }
    }
}

/// The current rows of these instances, read in binary column by column (no JSON on either
/// side but `jsonb` columns).
pub async fn load_rows<R: StatusRow>(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, R>, ProjectorError> {
    let stmt = tx.prepare_cached(&R::statements().select).await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let row = R::from_row(&r)
            .map_err(|e| ProjectorError::Corrupt(format!("{} row does not load: {e}", R::TABLE)))?;
        out.insert(row.id(), row);
    }
    Ok(out)
}

/// Inserts the `new` rows and updates the `existing` ones, every column bound by its name.
pub async fn write_rows<R: StatusRow>(
    tx: &Transaction<'_>,
    new: &[&R],
    existing: &[&R],
) -> Result<(), ProjectorError> {
    let sql = R::statements();
    let (insert, update) = futures::try_join!(
        tx.prepare_cached(&sql.insert),
        tx.prepare_cached(&sql.update)
    )?;
    let writes = [(insert, new), (update, existing)]
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(stmt, rows)| async move {
            let params = R::bind_columns(rows);
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
            tx.execute(&stmt, &params).await
        });
    futures::future::try_join_all(writes).await?;
    Ok(())
}

/// Inserts timeline entries into `R`'s timeline. A plain insert: an entry is made only for an
/// event newer than its instance's row, and the row moves with it in the same transaction, so
/// an entry is never written twice (a duplicate would be a bug, and fails the batch loudly
/// rather than hiding it).
pub async fn insert_timeline<R: StatusRow>(
    tx: &Transaction<'_>,
    rows: &[TimelineRow],
) -> Result<(), ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Typed arrays travel in binary: no JSON for the server to parse.
    let principal = |part: fn(&Principal) -> Option<&str>| {
        rows.iter()
            .map(move |r| r.principal.as_ref().and_then(part))
    };
    let columns: [Column<'_>; 13] = [
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
        column(
            "principal_subject",
            "text",
            principal(|p| Some(p.subject.as_str())),
        ),
        column(
            "principal_role",
            "text",
            principal(|p| Some(p.role.as_str())),
        ),
        column(
            "principal_client",
            "text",
            principal(|p| p.client.as_deref()),
        ),
    ];
    insert_unnest(tx, R::TIMELINE, &columns, "").await?;
    Ok(())
}

/// Adds `delta` to each status's count in `R`'s counts table.
pub async fn add_status_counts<R: StatusRow>(
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
    let (table, count) = (R::COUNTS, R::COUNT_COLUMN);
    let columns: [Column<'_>; 2] = [
        column("status", "text", statuses.iter().map(|s| s.as_str())),
        column(count, "bigint", statuses.iter().map(|s| deltas[*s])),
    ];
    insert_unnest(
        tx,
        table,
        &columns,
        &format!("on conflict (status) do update set {count} = {table}.{count} + excluded.{count}"),
    )
    .await?;
    // Zero rows would make the table depend on batch boundaries.
    tx.execute(&format!("delete from {table} where {count} = 0"), &[])
        .await?;
    Ok(())
}

/// One column of a batched insert: its name, its SQL type and its values (one per row) as one
/// array parameter, so that each value list stands next to the name of its column.
type Column<'a> = (&'a str, &'static str, Box<dyn ToSql + Sync + Send + 'a>);

fn column<'a, T: ToSql + Sync + Send + 'a>(
    name: &'a str,
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

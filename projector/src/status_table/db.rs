//! A status table's SQL, for any [`StatusRow`]: one batched statement per table and kind of
//! write. New rows and timeline entries go in by binary `COPY`, existing rows are updated from
//! typed arrays through `unnest`; the statements are pipelined, so a batch's writes wait on
//! the server only for each `COPY`'s go-ahead and its end.

use super::{StatusRow, TimelineRow};
use crate::ProjectorError;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// The statements of one status table, built once from its column list.
#[derive(Debug)]
pub struct Statements {
    select: String,
    copy: String,
    update: String,
}

impl Statements {
    /// New rows go in by binary `COPY` rather than an upsert: the caller knows which rows exist
    /// (it loaded them under the checkpoint's lock), `on conflict` would cost the server a
    /// speculative insertion per row, and `COPY` spares it unpacking one array per column.
    /// Existing rows are updated from typed arrays through `unnest`; `text[]` columns travel
    /// there as one array literal per row (see `Bind`), cast back here. The first column is the
    /// key.
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
            copy: copy_statement(table, names.iter().copied()),
            update: format!(
                "update {table} t set {} from {source} where t.{key} = u.{key}",
                assigned.join(", ")
            ),
        }
    }
}

fn copy_statement<'a>(table: &str, columns: impl Iterator<Item = &'a str>) -> String {
    let columns: Vec<&str> = columns.collect();
    format!(
        "copy {table} ({}) from stdin (format binary)",
        columns.join(", ")
    )
}

/// Writes `rows` into a table by binary `COPY`; `types` are the types of `copy`'s columns, in
/// its order, and each row's values come in the same order.
async fn copy_in<'r>(
    tx: &Transaction<'_>,
    copy: &str,
    types: &[Type],
    rows: impl Iterator<Item = Vec<&'r (dyn ToSql + Sync)>>,
) -> Result<(), tokio_postgres::Error> {
    let stmt = tx.prepare_cached(copy).await?;
    let sink = tx.copy_in(&stmt).await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    futures::pin_mut!(writer);
    for values in rows {
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    Ok(())
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
    let insert = async {
        if new.is_empty() {
            return Ok(());
        }
        // The select names the same columns in the same order: its types are the table's.
        let select = tx.prepare_cached(&sql.select).await?;
        let types: Vec<Type> = select.columns().iter().map(|c| c.type_().clone()).collect();
        copy_in(
            tx,
            &sql.copy,
            &types,
            new.iter().map(|row| row.copy_values()),
        )
        .await
    };
    let update = async {
        if existing.is_empty() {
            return Ok(());
        }
        let stmt = tx.prepare_cached(&sql.update).await?;
        let params = R::bind_columns(existing);
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
        tx.execute(&stmt, &params).await.map(drop)
    };
    futures::try_join!(insert, update)?;
    Ok(())
}

/// The timeline's columns and their types, in the order [`insert_timeline`] sends each
/// entry's values.
const TIMELINE_COLUMNS: [(&str, Type); 13] = [
    ("order_id", Type::UUID),
    ("revision", Type::INT8),
    ("event_type", Type::TEXT),
    ("occurred_at", Type::TIMESTAMPTZ),
    ("recorded_at", Type::TIMESTAMPTZ),
    ("position", Type::TEXT),
    ("event_id", Type::UUID),
    ("correlation_id", Type::TEXT),
    ("causation_id", Type::TEXT),
    ("summary", Type::TEXT),
    ("principal_subject", Type::TEXT),
    ("principal_role", Type::TEXT),
    ("principal_client", Type::TEXT),
];

/// Inserts timeline entries into `R`'s timeline, by binary `COPY`. A plain insert: an entry is
/// made only for an event newer than its instance's row, and the row moves with it in the same
/// transaction, so an entry is never written twice (a duplicate would be a bug, and fails the
/// batch loudly rather than hiding it).
pub async fn insert_timeline<R: StatusRow>(
    tx: &Transaction<'_>,
    rows: &[TimelineRow],
) -> Result<(), ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    let copy = copy_statement(R::TIMELINE, TIMELINE_COLUMNS.iter().map(|(name, _)| *name));
    let types = TIMELINE_COLUMNS.map(|(_, t)| t);
    let principals: Vec<[Option<&str>; 3]> = rows
        .iter()
        .map(|r| {
            let p = r.principal.as_ref();
            [
                p.map(|p| p.subject.as_str()),
                p.map(|p| p.role.as_str()),
                p.and_then(|p| p.client.as_deref()),
            ]
        })
        .collect();
    let values = rows
        .iter()
        .zip(&principals)
        .map(|(r, [subject, role, client])| {
            vec![
                &r.order_id as &(dyn ToSql + Sync),
                &r.revision,
                &r.event_type,
                &r.occurred_at,
                &r.recorded_at,
                &r.position,
                &r.event_id,
                &r.correlation_id,
                &r.causation_id,
                &r.summary,
                subject,
                role,
                client,
            ]
        });
    copy_in(tx, &copy, &types, values).await?;
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

//! Reads of the read models, by area: [`workflow`] (what every workflow's status rows,
//! timelines and counts share, read once for all), [`orders`] and [`returns`] (each workflow's
//! names, row and filters) and [`projection`] (checkpoint, lag, dead letters); [`relay`] (the relays' checkpoints). Free functions
//! over a client, prepared and cached statements, every column read by name; and the
//! [`Snapshot`] a request reads them through.

pub mod orders;
pub mod projection;
pub mod relay;
pub mod returns;
pub mod workflow;

use deadpool_postgres::{ClientWrapper, Object, Pool};
use std::sync::Arc;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use workflow::ReadModels;

/// Why a read of the read models failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no connection to the read-model database")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("read-model query failed")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("read-model column '{column}' cannot be read")]
    Column {
        column: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("read-model column '{column}' holds '{value}', which is not a known {kind}")]
    UnknownLabel {
        column: &'static str,
        kind: &'static str,
        value: String,
    },
}

impl DbError {
    /// The database cannot be reached (as opposed to a query or a row it refused).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            Self::Postgres(e) => service_kit::postgres::is_unavailable(e),
            Self::Column { .. } | Self::UnknownLabel { .. } => false,
        }
    }

    /// The read model holds what this code cannot make sense of.
    pub fn is_invalid_data(&self) -> bool {
        matches!(self, Self::Column { .. } | Self::UnknownLabel { .. })
    }
}

/// Reads the column named `column` of `row`.
///
/// # Errors
/// [`DbError::Column`] when the row has no such column or its type does not fit.
pub(crate) fn column<'a, T: FromSql<'a>>(row: &'a Row, column: &'static str) -> Result<T, DbError> {
    row.try_get(column)
        .map_err(|source| DbError::Column { column, source })
}

/// Reads the label (a status, an action...) in the text column `name` of `row`.
///
/// # Errors
/// [`DbError::UnknownLabel`] when the text is not one of `L`'s wire forms.
pub(crate) fn label<L: domain::Label>(
    row: &Row,
    name: &'static str,
    kind: &'static str,
) -> Result<L, DbError> {
    parse_label(name, kind, &column::<String>(row, name)?)
}

/// Reads the labels in the text-array column `name` of `row`.
///
/// # Errors
/// [`DbError::UnknownLabel`] naming the first text that is not one of `L`'s wire forms.
pub(crate) fn labels<L: domain::Label>(
    row: &Row,
    name: &'static str,
    kind: &'static str,
) -> Result<Vec<L>, DbError> {
    column::<Vec<String>>(row, name)?
        .iter()
        .map(|text| parse_label(name, kind, text))
        .collect()
}

fn parse_label<L: domain::Label>(
    column: &'static str,
    kind: &'static str,
    text: &str,
) -> Result<L, DbError> {
    L::parse(text).ok_or_else(|| DbError::UnknownLabel {
        column,
        kind,
        value: text.to_owned(),
    })
}

/// The tables a blue/green switch of a projection moves: every workflow's read models.
const READ_MODEL_TABLES: [&str; 6] = [
    <orders::Orders as ReadModels>::STATUS_TABLE,
    <orders::Orders as ReadModels>::TIMELINE_TABLE,
    <orders::Orders as ReadModels>::COUNTS_TABLE,
    <returns::Returns as ReadModels>::STATUS_TABLE,
    <returns::Returns as ReadModels>::TIMELINE_TABLE,
    <returns::Returns as ReadModels>::COUNTS_TABLE,
];

/// How a [`Snapshot`] begins: its transaction, then a share lock on every read-model table
/// there is, taken before the snapshot is (a `LOCK` does not take one). A blue/green switch
/// moves a projection's tables in and out of place under an exclusive lock, so it either
/// committed before the snapshot, whose reads then see the new tables and all their rows, or
/// waits until the response ends; a response never reads a table switched in after its
/// snapshot, without the rows the switch wrote. Worked out on first use, and again while some
/// table is still missing (a projection not migrated yet).
#[derive(Default)]
pub struct SnapshotBegin(tokio::sync::OnceCell<String>);

impl SnapshotBegin {
    async fn statement(&self, client: &ClientWrapper) -> Result<String, DbError> {
        if let Some(statement) = self.0.get() {
            return Ok(statement.clone());
        }
        let present: Vec<String> = client
            .query(
                "select t from unnest($1::text[]) with ordinality as u(t, i)
                  where to_regclass(t) is not null order by i",
                &[&READ_MODEL_TABLES.as_slice()],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut statement =
            "start transaction isolation level repeatable read, read only".to_owned();
        if !present.is_empty() {
            statement.push_str(&format!(
                "; lock table {} in access share mode",
                present.join(", ")
            ));
        }
        if present.len() == READ_MODEL_TABLES.len() {
            let _ = self.0.set(statement.clone());
        }
        Ok(statement)
    }
}

/// One request's view of the read models: a repeatable-read, read-only transaction on one
/// pooled connection, begun by the first read (see [`SnapshotBegin`]). Every field of a
/// response then reflects the same commits of the projector (an order's row and its timeline
/// at one revision), and the fields share one connection.
pub struct Snapshot {
    /// Where the connection comes from.
    pool: Pool,
    begin: Arc<SnapshotBegin>,
    /// The connection, inside the transaction once begun.
    client: tokio::sync::OnceCell<Object>,
}

impl Snapshot {
    pub fn new(pool: Pool, begin: Arc<SnapshotBegin>) -> Self {
        Self {
            pool,
            begin,
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
                let begin = self.begin.statement(&client).await?;
                client.batch_execute(&begin).await?;
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

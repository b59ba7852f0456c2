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
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

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

/// One request's view of the read models: a repeatable-read, read-only transaction on one
/// pooled connection, begun by the first read. Every field of a response then reflects the same
/// commits of the projector (an order's row and its timeline at one revision), and the fields
/// share one connection.
///
/// A read of a workflow's read models first takes a share lock on all of that workflow's
/// tables; the first read takes it before the snapshot is (a `LOCK` takes none). A blue/green
/// switch moves a projection's tables in and out of place under an exclusive lock, so it either
/// committed before the snapshot, whose reads then see the new tables and all their rows, or
/// waits until the response ends: a response never reads tables switched in after its snapshot
/// without the rows the switch wrote. A workflow first read later in a response (one response
/// reading orders and returns) is locked when first read, after the snapshot. The lock is the
/// workflow's own: an outage of one workflow's tables does not hold up reads of the other's.
pub struct Snapshot {
    /// Where the connection comes from.
    pool: Pool,
    /// The connection, inside the transaction once begun.
    client: tokio::sync::OnceCell<Object>,
    /// The workflows whose tables this snapshot holds a share lock on (their status tables).
    locked: tokio::sync::Mutex<Vec<&'static str>>,
}

impl Snapshot {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            client: tokio::sync::OnceCell::new(),
            locked: tokio::sync::Mutex::default(),
        }
    }

    /// The connection inside the snapshot's transaction, begun on the first call, for reads of
    /// no workflow's read models (checkpoints, relays).
    ///
    /// # Errors
    /// When no connection can be had or the transaction cannot begin.
    pub async fn client(&self) -> Result<&ClientWrapper, DbError> {
        Ok(self.begun(None).await?.0)
    }

    /// The connection inside the snapshot's transaction, holding a share lock on `W`'s tables.
    ///
    /// # Errors
    /// As [`Snapshot::client`]; when the tables cannot be locked (not migrated yet).
    pub async fn client_for<W: workflow::ReadModels>(&self) -> Result<&ClientWrapper, DbError> {
        let lock = || {
            format!(
                "lock table {}, {}, {} in access share mode",
                W::STATUS_TABLE,
                W::TIMELINE_TABLE,
                W::COUNTS_TABLE
            )
        };
        let mut locked = self.locked.lock().await;
        if locked.contains(&W::STATUS_TABLE) {
            drop(locked);
            return Ok(self.begun(None).await?.0);
        }
        let (client, locked_at_begin) = self.begun(Some(lock())).await?;
        if !locked_at_begin {
            client.batch_execute(&lock()).await?;
        }
        locked.push(W::STATUS_TABLE);
        Ok(client)
    }

    /// The connection, its transaction begun (by this call or an earlier one) with `then` run
    /// before the snapshot is taken; whether this call began it.
    async fn begun(&self, then: Option<String>) -> Result<(&ClientWrapper, bool), DbError> {
        let began = std::sync::atomic::AtomicBool::new(false);
        let client = self
            .client
            .get_or_try_init(|| async {
                let client = self.pool.get().await?;
                let mut begin =
                    "start transaction isolation level repeatable read, read only".to_owned();
                if let Some(then) = then {
                    begin.push_str("; ");
                    begin.push_str(&then);
                }
                client.batch_execute(&begin).await?;
                began.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, DbError>(client)
            })
            .await?;
        Ok((client, began.into_inner()))
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

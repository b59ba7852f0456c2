//! PostgreSQL plumbing shared by the event store and the read models: connection pools,
//! migrations, LISTEN connections, and telling an unreachable database from a refused
//! statement.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::{error::SqlState, AsyncMessage, NoTls};

/// Why a pool could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PoolSetupError {
    /// The URL is not a PostgreSQL connection string.
    #[error("{0}")]
    InvalidUrl(#[source] tokio_postgres::Error),
    /// The pool refused its settings.
    #[error("{0}")]
    Build(#[source] deadpool_postgres::BuildError),
}

/// Builds a connection pool from a URL; connections are made lazily.
///
/// # Errors
/// [`PoolSetupError::InvalidUrl`] when the URL does not parse.
pub fn build_pool(
    url: &str,
    size: usize,
) -> Result<(Pool, tokio_postgres::Config), PoolSetupError> {
    let config = tokio_postgres::Config::from_str(url).map_err(PoolSetupError::InvalidUrl)?;
    build_pool_from(config, size)
}

/// Like [`build_pool`], from a parsed configuration (to add session options, say).
///
/// # Errors
/// [`PoolSetupError::Build`] when the pool cannot be configured.
pub fn build_pool_from(
    mut config: tokio_postgres::Config,
    size: usize,
) -> Result<(Pool, tokio_postgres::Config), PoolSetupError> {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(3));
    }
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(PoolSetupError::Build)?;
    Ok((pool, config))
}

/// Applies the named SQL migrations not yet recorded in `table`, in order, each in its own
/// transaction. The whole run, the creation of `table` included, holds an advisory lock, so
/// processes starting at once on a fresh database take turns instead of racing to create it.
///
/// # Errors
/// The database's error when a migration fails; nothing of that migration is kept.
pub async fn apply_migrations(
    client: &mut tokio_postgres::Client,
    table: &str,
    migrations: &[(&str, &str)],
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("select pg_advisory_lock(hashtext($1))", &[&table])
        .await?;
    let applied = apply_migrations_locked(client, table, migrations).await;
    // A pooled connection lives on: the session lock must not outlive the run, failed or not.
    let unlocked = client
        .execute("select pg_advisory_unlock(hashtext($1))", &[&table])
        .await;
    applied?;
    unlocked.map(|_| ())
}

async fn apply_migrations_locked(
    client: &mut tokio_postgres::Client,
    table: &str,
    migrations: &[(&str, &str)],
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "create table if not exists {table} (name text primary key, applied_at timestamptz not null default now())"
        ))
        .await?;
    for (name, sql) in migrations {
        let tx = client.transaction().await?;
        let done = tx
            .query_opt(&format!("select 1 from {table} where name = $1"), &[name])
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute(&format!("insert into {table} (name) values ($1)"), &[name])
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Whether a driver error means the database cannot be reached now (a lost connection, a
/// refusal, a shutdown, a missing database), as opposed to a statement it refused: retrying
/// later may work.
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::INVALID_CATALOG_NAME
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        }
    }
}

/// The driver error behind a pool's failure to hand out a connection, if the database
/// answered; `None` when the pool itself gave up (timeout, closed pool, no runtime). Every such
/// failure means no connection: the database is unavailable.
pub fn pool_error_cause(e: &deadpool_postgres::PoolError) -> Option<&tokio_postgres::Error> {
    match e {
        deadpool_postgres::PoolError::Backend(e) => Some(e),
        _ => None,
    }
}

/// A connection that LISTENs on a channel. It owns the connection; dropping it ends the
/// listening.
pub struct Listener {
    /// Keeps the session, and so the LISTEN, open.
    _client: tokio_postgres::Client,
    /// Drives the connection and hands notifications on.
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// True once the connection is gone; the caller should listen again.
    pub fn is_closed(&self) -> bool {
        self._client.is_closed() || self.task.is_finished()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a connection that LISTENs on `channel` and hands each payload to `on_message`.
///
/// # Errors
/// The driver's error when PostgreSQL cannot be reached or refuses the LISTEN.
pub async fn listen_on(
    config: &tokio_postgres::Config,
    channel: &str,
    on_message: impl Fn(String) + Send + 'static,
) -> Result<Listener, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let task = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                on_message(n.payload().to_owned());
            }
        }
    });
    client.batch_execute(&format!("listen {channel}")).await?;
    Ok(Listener {
        _client: client,
        task,
    })
}

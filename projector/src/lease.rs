//! One active instance per projection: a session advisory lock held on a dedicated
//! connection. A standby keeps trying; when the active process dies its connection closes, the
//! lock is released and the standby takes over. The checkpoint row lock in every batch
//! transaction is the fence behind it: even a process that lost its lease cannot double-apply.

use std::time::Duration;
use tokio_postgres::NoTls;

/// A held lease; dropping it closes the connection and releases the lock.
pub struct Lease {
    client: tokio_postgres::Client,
    _connection: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Tries once to take the lease for `projection`.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn try_acquire(
        config: &tokio_postgres::Config,
        projection: &str,
    ) -> Result<Option<Self>, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        let handle = tokio::spawn(async move {
            let _ = connection.await;
        });
        let row = client
            .query_one(
                "select pg_try_advisory_lock(hashtext('milestone.projection'), hashtext($1))",
                &[&projection],
            )
            .await?;
        if row.get::<_, bool>(0) {
            Ok(Some(Self {
                client,
                _connection: handle,
            }))
        } else {
            handle.abort();
            Ok(None)
        }
    }

    /// Waits until the lease is ours, trying every `poll`.
    pub async fn acquire(
        config: &tokio_postgres::Config,
        projection: &str,
        poll: Duration,
    ) -> Self {
        let mut announced = false;
        loop {
            match Self::try_acquire(config, projection).await {
                Ok(Some(lease)) => return lease,
                Ok(None) if !announced => {
                    tracing::info!(projection, "another projector is active; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the read-model database; retrying")
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// False once the lease's connection is gone (and with it, the lock).
    pub fn is_held(&self) -> bool {
        !self.client.is_closed()
    }
}

//! A fenced lease: one active instance of a service per named piece of work (a relay's stream
//! of work, a reconciler), with hot standbys waiting to take over.
//!
//! The lease is a row of `service_leases` with an owner, an expiry and a fencing token. The
//! holder renews the expiry every fifth of the time to live; a standby takes over a lease that
//! has expired or was released, and the token goes up by one. A holder that cannot renew in
//! time counts the lease as lost.
//!
//! The token is the fence: every write the holder makes on behalf of the lease (a checkpoint
//! moving, say) names its token in the same statement, through [`fenced`], so a former holder
//! that was paused and replaced cannot write once the token has moved on.

use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_postgres::NoTls;

/// The lease table, created by [`ensure_table`].
const CREATE_TABLE: &str = "create table if not exists service_leases (
    name text primary key,
    owner text not null,
    token bigint not null,
    expires_at timestamptz not null
)";

/// Why the lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the database refused the lease")]
    Database(#[from] tokio_postgres::Error),
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
}

/// Wraps a write so that it happens only while `token` is the lease's: `sql` may use `$1` (the
/// lease's name) and `$2` (the token) and must end with a `where` clause that this function
/// extends. The lease row is locked for share, so a takeover waits for the write to commit and
/// a write after a takeover finds the token moved on and changes nothing.
///
/// `fenced("update t set x = $3 where k = $4")` checks the token as part of that update.
pub fn fenced(sql: &str) -> String {
    format!(
        "with fence as (select 1 from service_leases where name = $1 and token = $2 for share) \
         {sql} and exists (select 1 from fence)"
    )
}

/// Creates the lease table if it is missing.
///
/// # Errors
/// The database's error.
pub async fn ensure_table(
    client: &impl tokio_postgres::GenericClient,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(CREATE_TABLE).await
}

/// A held lease. Dropping it releases the lease (a standby need not wait for the expiry) and
/// stops the renewals.
pub struct FencedLease {
    name: String,
    token: i64,
    /// Until when the lease is surely ours on this host's clock.
    held_until: watch::Receiver<Instant>,
    release: oneshot::Sender<()>,
    renewals: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FencedLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedLease")
            .field("name", &self.name)
            .field("token", &self.token)
            .finish()
    }
}

impl FencedLease {
    /// Tries once to take the lease `name` for `owner`: a free, expired or released lease is
    /// taken with the next token; a live one is left alone (`None`).
    ///
    /// # Errors
    /// When the database cannot be reached or does not answer within `ttl`.
    pub async fn try_acquire(
        config: &tokio_postgres::Config,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Self>, LeaseError> {
        let sent = Instant::now();
        let attempt = async {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            ensure_table(&client).await?;
            let row = client
                .query_opt(
                    "insert into service_leases (name, owner, token, expires_at)
                     values ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
                     on conflict (name) do update
                        set owner = excluded.owner, token = service_leases.token + 1,
                            expires_at = excluded.expires_at
                        where service_leases.expires_at < clock_timestamp()
                     returning token",
                    &[&name, &owner, &millis(ttl)],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>(row.map(|r| (client, r.get::<_, i64>(0))))
        };
        let Some((client, token)) = tokio::time::timeout(ttl, attempt)
            .await
            .map_err(|_| LeaseError::TimedOut(ttl))??
        else {
            return Ok(None);
        };
        let (held, held_until) = watch::channel(sent + ttl);
        let (release, released) = oneshot::channel();
        let renewals = tokio::spawn(renew_until_released(
            client,
            name.to_owned(),
            token,
            ttl,
            held,
            released,
        ));
        Ok(Some(Self {
            name: name.to_owned(),
            token,
            held_until,
            release,
            renewals,
        }))
    }

    /// Waits until the lease is ours, trying every `poll`.
    pub async fn acquire(
        config: &tokio_postgres::Config,
        name: &str,
        owner: &str,
        ttl: Duration,
        poll: Duration,
    ) -> Self {
        let mut announced = false;
        loop {
            match Self::try_acquire(config, name, owner, ttl).await {
                Ok(Some(lease)) => return lease,
                Ok(None) if !announced => {
                    tracing::info!(lease = name, "held by another instance; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(lease = name, error = %e, "cannot take the lease; retrying")
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Releases the lease and waits (at most `wait`) until the database has it, so that a
    /// standby takes over at once; for a graceful shutdown, which would otherwise end the
    /// process before the release is sent and leave standbys waiting for the expiry.
    pub async fn release(self, wait: Duration) {
        let Self {
            release, renewals, ..
        } = self;
        let _ = release.send(());
        let _ = tokio::time::timeout(wait, renewals).await;
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token of this tenure.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// False once the lease is lost: taken over, or not renewed in time.
    pub fn is_held(&self) -> bool {
        Instant::now() < *self.held_until.borrow()
    }

    /// Resolves when the lease is lost.
    pub async fn lost(&self) {
        let mut held_until = self.held_until.clone();
        loop {
            let until = *held_until.borrow_and_update();
            tokio::select! {
                () = tokio::time::sleep_until(until) => {
                    if Instant::now() >= *held_until.borrow() {
                        return;
                    }
                }
                changed = held_until.changed() => {
                    if changed.is_err() {
                        // The renewing task has stopped: the lease lasts until its expiry.
                        let until = *held_until.borrow();
                        tokio::time::sleep_until(until).await;
                        return;
                    }
                }
            }
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn renew_until_released(
    client: tokio_postgres::Client,
    name: String,
    token: i64,
    ttl: Duration,
    held: watch::Sender<Instant>,
    mut released: oneshot::Receiver<()>,
) {
    let every = ttl / 5;
    loop {
        tokio::select! {
            _ = &mut released => {
                let _ = client
                    .execute(
                        "update service_leases set expires_at = clock_timestamp() where name = $1 and token = $2",
                        &[&name, &token],
                    )
                    .await;
                return;
            }
            () = tokio::time::sleep(every) => {}
        }
        let sent = Instant::now();
        let renewed = tokio::time::timeout(
            ttl,
            client.execute(
                "update service_leases set expires_at = clock_timestamp() + $3 * interval '1 millisecond'
                 where name = $1 and token = $2",
                &[&name, &token, &millis(ttl)],
            ),
        )
        .await;
        match renewed {
            Ok(Ok(1)) => {
                let _ = held.send(sent + ttl);
            }
            Ok(Ok(_)) => {
                // Taken over: the lease is lost at once.
                let _ = held.send(Instant::now());
                return;
            }
            Ok(Err(_)) | Err(_) => {
                if Instant::now() >= *held.borrow() {
                    return;
                }
            }
        }
    }
}

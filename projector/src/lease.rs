//! One active instance per projection: a lease row in `projection_leases` with an owner, an
//! expiry and a fencing token. The holder renews the expiry every fifth of the time to live on
//! a connection of its own; a standby takes over a lease that has expired (the token goes up
//! by one), so a host that crashed or was cut off by a partition is replaced within the time to
//! live, whatever TCP thinks of its connections. When the holder's process dies, the server
//! sees its renewing connection close and a standby takes over at once (the lease row names
//! that connection's server process). A holder that cannot renew before expiry counts the
//! lease as lost and stops.
//!
//! The token is the fence: a takeover copies it onto the projection's checkpoint row, and every
//! batch's checkpoint update requires the token of its writer, so a former holder that was
//! paused mid-batch cannot commit once it has been replaced.

use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Why the lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the read-model database refused the lease")]
    Database(#[from] tokio_postgres::Error),
    #[error("the read-model database did not answer within {0:?}")]
    TimedOut(Duration),
}

/// A held lease. Dropping it releases the lease at once (so a standby need not wait for the
/// expiry) and stops the renewals.
pub struct Lease {
    /// The fencing token of this tenure, required by every batch's checkpoint update.
    token: i64,
    /// Until when the lease is surely ours on this host's clock: the send time of the last
    /// successful renewal plus the time to live (the database's expiry is later still).
    held_until: watch::Receiver<Instant>,
    /// Dropped with the lease, which tells the renewing task to release the lease and stop.
    _release: oneshot::Sender<()>,
}

impl Lease {
    /// Tries once to take the lease for `projection`: free, expired or released leases are
    /// taken, with a new fencing token; a live one is left alone (`None`).
    ///
    /// # Errors
    /// When the database cannot be reached, or does not answer within `ttl`.
    pub async fn try_acquire(
        config: &tokio_postgres::Config,
        projection: &str,
        ttl: Duration,
    ) -> Result<Option<Self>, LeaseError> {
        let sent = Instant::now();
        let attempt = async {
            let mut client = connect(config).await?;
            let token = take_over(&mut client, projection, ttl).await?;
            Ok::<_, tokio_postgres::Error>(token.map(|token| (client, token)))
        };
        let Some((client, token)) = tokio::time::timeout(ttl, attempt)
            .await
            .map_err(|_| LeaseError::TimedOut(ttl))??
        else {
            return Ok(None);
        };
        let (held, held_until) = watch::channel(sent + ttl);
        let (release, released) = oneshot::channel();
        tokio::spawn(renew_until_released(
            Renewal {
                config: config.clone(),
                projection: projection.to_owned(),
                token,
                ttl,
                held,
            },
            client,
            released,
        ));
        Ok(Some(Self {
            token,
            held_until,
            _release: release,
        }))
    }

    /// Waits until the lease is ours, trying every `poll`.
    pub async fn acquire(
        config: &tokio_postgres::Config,
        projection: &str,
        ttl: Duration,
        poll: Duration,
    ) -> Self {
        let mut announced = false;
        loop {
            match Self::try_acquire(config, projection, ttl).await {
                Ok(Some(lease)) => return lease,
                Ok(None) if !announced => {
                    tracing::info!(projection, "another instance holds the lease; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the lease; retrying")
                }
            }
            tokio::time::sleep(poll).await;
        }
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
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                changed = held_until.changed() => {
                    if changed.is_err() {
                        // No more renewals: the lease lasts until `until`.
                        tokio::time::sleep_until(until).await;
                    }
                }
            }
        }
    }
}

pub(crate) async fn connect(
    config: &tokio_postgres::Config,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Takes the lease if it is free or expired and moves the checkpoint's fence to the new token,
/// in one transaction. A batch of the former holder still running holds the checkpoint row;
/// rather than queue behind it, the takeover gives up after a moment (`None`) and is tried
/// again at the next poll.
async fn take_over(
    client: &mut Client,
    projection: &str,
    ttl: Duration,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute("set local lock_timeout = '1s'").await?;
    let attempt = async {
        let row = tx
            .query_opt(
                "insert into projection_leases as l
                   (projection, owner, fencing_token, expires_at, holder_pid)
                 values ($1, $2, 1, now() + $3::float8 * interval '1 millisecond', pg_backend_pid())
                 on conflict (projection) do update set
                   owner = excluded.owner, fencing_token = l.fencing_token + 1,
                   expires_at = excluded.expires_at, holder_pid = excluded.holder_pid,
                   acquired_at = now(), renewed_at = now()
                 where l.expires_at <= now()
                    or not exists (select 1 from pg_stat_activity a where a.pid = l.holder_pid)
                 returning fencing_token",
                &[&projection, &owner(), &millis(ttl)],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let token: i64 = row.get(0);
        tx.execute(
            "insert into projection_checkpoints (projection, fencing_token) values ($1, $2)
             on conflict (projection) do update set fencing_token = excluded.fencing_token",
            &[&projection, &token],
        )
        .await?;
        Ok(Some(token))
    };
    let outcome: Result<_, tokio_postgres::Error> = attempt.await;
    match outcome {
        Ok(Some(token)) => {
            tx.commit().await?;
            Ok(Some(token))
        }
        Ok(None) => Ok(None),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Who holds the lease, for operators reading `projection_leases`.
fn owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown host".to_owned());
    format!("{host}, pid {}", std::process::id())
}

/// What the renewing task needs.
struct Renewal {
    config: tokio_postgres::Config,
    projection: String,
    token: i64,
    ttl: Duration,
    /// Moved on by each renewal; set to now when the lease is lost.
    held: watch::Sender<Instant>,
}

impl Renewal {
    /// Moves the expiry on; false when the lease is no longer ours.
    async fn renew(&self, client: &mut Option<Client>) -> Result<bool, tokio_postgres::Error> {
        if client.as_ref().is_none_or(Client::is_closed) {
            *client = Some(connect(&self.config).await?);
        }
        let Some(c) = client.as_ref() else {
            unreachable!("connected above")
        };
        let renewed = c
            .execute(
                "update projection_leases
                 set expires_at = now() + $3::float8 * interval '1 millisecond', renewed_at = now(),
                     holder_pid = pg_backend_pid()
                 where projection = $1 and fencing_token = $2",
                &[&self.projection, &self.token, &millis(self.ttl)],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Lets a standby take over at once.
    async fn release(&self, client: &Client) {
        let _ = client
            .execute(
                "update projection_leases set expires_at = now()
                 where projection = $1 and fencing_token = $2",
                &[&self.projection, &self.token],
            )
            .await;
    }

    fn lose(&self, why: &str) {
        tracing::warn!(projection = %self.projection, token = self.token, "lost the lease: {why}");
        self.held.send_replace(Instant::now());
    }
}

/// Renews every fifth of the time to live until the lease is released (then lets it go) or
/// lost (then marks it so). A renewal that has not answered when the lease would expire
/// counts as failed: the lease is lost.
async fn renew_until_released(
    renewal: Renewal,
    client: Client,
    mut released: oneshot::Receiver<()>,
) {
    let every = renewal.ttl / 5;
    let mut client = Some(client);
    loop {
        tokio::select! {
            _ = &mut released => break,
            () = tokio::time::sleep(every) => {}
        }
        let sent = Instant::now();
        let expiry = *renewal.held.borrow();
        tokio::select! {
            _ = &mut released => break,
            outcome = tokio::time::timeout_at(expiry, renewal.renew(&mut client)) => match outcome {
                Ok(Ok(true)) => {
                    renewal.held.send_replace(sent + renewal.ttl);
                }
                Ok(Ok(false)) => return renewal.lose("another projector took it over"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot renew the lease; retrying");
                    client = None;
                }
                Err(_) => return renewal.lose("not renewed before it expired"),
            }
        }
        if Instant::now() >= *renewal.held.borrow() {
            return renewal.lose("not renewed before it expired");
        }
    }
    if let Some(client) = &client {
        let _ = tokio::time::timeout(every, renewal.release(client)).await;
    }
}

//! Read-your-writes: the projection's checkpoint, kept current by the projector's NOTIFY, and a
//! bounded wait until it reaches a consistency token handed out by the command API.

use crate::db::projection::Checkpoint;
use deadpool_postgres::Pool;
use event_store::Position;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::schema::PROJECTION;
use projector::CHANGES_CHANNEL;

/// The latest checkpoint this process knows of.
#[derive(Clone)]
pub struct CheckpointWatch {
    tx: Arc<watch::Sender<Checkpoint>>,
    pool: Pool,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy)]
pub struct WaitOutcome {
    pub reached: bool,
    pub checkpoint: Option<Position>,
    pub waited: Duration,
}

impl CheckpointWatch {
    /// Starts listening for the projector's notifications (reconnecting when the connection
    /// drops).
    pub fn start(pool: Pool, config: tokio_postgres::Config) -> Self {
        let (tx, _) = watch::channel(Checkpoint::default());
        let watch = Self {
            tx: Arc::new(tx),
            pool,
        };
        let background = watch.clone();
        tokio::spawn(async move { background.listen_forever(config).await });
        watch
    }

    async fn listen_forever(&self, config: tokio_postgres::Config) {
        loop {
            let tx = self.tx.clone();
            let on_message = move |payload: String| {
                let position = serde_json::from_str::<serde_json::Value>(&payload)
                    .ok()
                    .and_then(|v| {
                        v["position"]
                            .as_str()
                            .and_then(|p| p.parse::<Position>().ok())
                    });
                if let Some(p) = position {
                    advance(&tx, p);
                }
            };
            match service_kit::postgres::listen_on(&config, CHANGES_CHANNEL, on_message).await {
                Ok(listener) => {
                    // Anything committed before LISTEN took effect.
                    let _ = self.refresh().await;
                    while !listener.is_closed() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    tracing::warn!("lost the projection notification connection; reconnecting");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for projection changes; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// The latest checkpoint this process knows of, without asking the database.
    pub fn known(&self) -> Option<Position> {
        self.tx.borrow().position
    }

    /// Reads the checkpoint from the database and returns it.
    ///
    /// What the watch knows only ever rises (a notification may already have announced a
    /// later checkpoint than the one this read saw), except after a rebuild, which starts the
    /// checkpoint over: then the watch starts over too.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn refresh(&self) -> Result<Option<Position>, crate::db::DbError> {
        let client = self.pool.get().await?;
        let stored = crate::db::projection::load_checkpoint(&client, PROJECTION).await?;
        self.tx.send_if_modified(|known| {
            if stored.rebuilds > known.rebuilds {
                *known = stored;
                true
            } else {
                stored.position.is_some_and(|p| raise(known, p))
            }
        });
        Ok(stored.position)
    }

    /// Waits, at most `timeout`, until the projection has applied the event at `token`.
    pub async fn wait_for(&self, token: Position, timeout: Duration) -> WaitOutcome {
        let started = Instant::now();
        let mut rx = self.tx.subscribe();
        // A notification may have been missed while reconnecting; one read settles it.
        let _ = self.refresh().await;
        let reached = tokio::time::timeout(
            timeout,
            rx.wait_for(|c| c.position.is_some_and(|c| c >= token)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        WaitOutcome {
            reached,
            checkpoint: self.known(),
            waited: started.elapsed(),
        }
    }
}

/// Raises the known checkpoint to `p`; never lowers it.
fn advance(tx: &watch::Sender<Checkpoint>, p: Position) {
    tx.send_if_modified(|known| raise(known, p));
}

fn raise(known: &mut Checkpoint, p: Position) -> bool {
    if known.position.is_none_or(|c| p > c) {
        known.position = Some(p);
        true
    } else {
        false
    }
}

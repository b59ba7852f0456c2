//! Read-your-writes: every projection's checkpoint, kept current by the projector's NOTIFY, and
//! a bounded wait until the read models show everything up to a consistency token handed out by
//! the command API. A token is reached when each projection has applied it, or has no event of
//! its own streams up to it; so one token serves every workflow, whichever projection follows
//! the stream it was written to. The same notifications feed the subscriptions
//! ([`crate::live`]): one LISTEN per process, fanned out through an in-process broadcast.

use crate::db::projection::Checkpoint;
use crate::live::Notice;
use crate::log::EventLog;
use crate::metrics::WaitLabels;
use deadpool_postgres::Pool;
use event_store::Position;
use projector::{Descriptor, CHANGES_CHANNEL, PROJECTIONS};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// How long a wait sleeps at most before looking again when the log cannot yet be seen up to
/// the token (a committed batch wakes it sooner).
const RECHECK: Duration = Duration::from_millis(50);

/// The latest checkpoint of each projection this process knows of.
#[derive(Clone)]
pub struct CheckpointWatch {
    watches: Arc<BTreeMap<&'static str, watch::Sender<Checkpoint>>>,
    pool: Pool,
    log: Arc<EventLog>,
    /// Every committed batch, for the subscriptions; each subscriber may fall this channel's
    /// capacity behind.
    changes: broadcast::Sender<Notice>,
    /// Per projection, a position up to which the log was found to hold none of its events
    /// beyond its checkpoint, with the projection's rebuild count then: later waits look at
    /// the log only from there (a projection whose streams are rare, or absent, would
    /// otherwise be looked for across the whole log on every wait).
    settled: Arc<Mutex<HashMap<&'static str, (i64, Position)>>>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy)]
pub struct WaitOutcome {
    pub reached: bool,
    /// The lowest checkpoint among the projections with events up to the token (the ones the
    /// token concerns).
    pub checkpoint: Option<Position>,
    pub waited: Duration,
}

impl CheckpointWatch {
    /// Starts listening for the projector's notifications (reconnecting when the connection
    /// drops); the log at `event_store_url` tells which projections a token concerns.
    pub fn start(pool: Pool, config: tokio_postgres::Config, event_store_url: &str) -> Self {
        Self::start_with_buffer(pool, config, event_store_url, 256)
    }

    /// As [`CheckpointWatch::start`]; a subscriber may fall `buffer` committed batches behind.
    pub fn start_with_buffer(
        pool: Pool,
        config: tokio_postgres::Config,
        event_store_url: &str,
        buffer: usize,
    ) -> Self {
        let watches = PROJECTIONS
            .iter()
            .map(|d| (d.name, watch::channel(Checkpoint::default()).0))
            .collect();
        let watch = Self {
            watches: Arc::new(watches),
            pool,
            log: Arc::new(EventLog::new(event_store_url)),
            changes: broadcast::channel(buffer.max(1)).0,
            settled: Arc::default(),
        };
        let background = watch.clone();
        tokio::spawn(async move { background.listen_forever(config).await });
        watch
    }

    async fn listen_forever(&self, config: tokio_postgres::Config) {
        loop {
            let watches = Arc::clone(&self.watches);
            let changes = self.changes.clone();
            let partition_moved = Arc::new(tokio::sync::Notify::new());
            let moved = partition_moved.clone();
            let on_message = move |payload: String| {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
                    return;
                };
                let position = v["position"].as_str().and_then(|p| p.parse().ok());
                let name = v["projection"].as_str().unwrap_or_default();
                // A repaired instance's last event lies before the checkpoint: readers following
                // positions read it again by id (a partition's repair too).
                if v["repaired"].as_bool() == Some(true) {
                    let whole = name.split('#').next().unwrap_or_default();
                    if let Some(projection) = Descriptor::named(whole) {
                        let ids =
                            serde_json::from_value::<Vec<Uuid>>(v[projection.changed_key].clone());
                        if let Ok(ids) = ids {
                            let _ = changes.send(Notice::Repaired {
                                projection: projection.name,
                                ids: Arc::from(ids),
                            });
                        }
                    }
                }
                // A partition (`name#index/count`) passing a position says nothing of the
                // others: the projection's position is read again, as its slowest partition's,
                // and subscribers read again up to it.
                if name.contains('#') {
                    moved.notify_one();
                    return;
                }
                let projection = Descriptor::named(name);
                let tx = projection.and_then(|d| watches.get(d.name));
                if let (Some(tx), Some(p)) = (tx, position) {
                    tx.send_if_modified(|known| raise(known, p));
                }
                if let (Some(projection), Some(position)) = (projection, position) {
                    // None when the list did not fit the notification: every instance may have
                    // changed.
                    let changed =
                        serde_json::from_value::<Vec<Uuid>>(v[projection.changed_key].clone())
                            .ok()
                            .map(Arc::from);
                    // No subscriber, no one to tell.
                    let _ = changes.send(Notice::Committed {
                        projection: projection.name,
                        position,
                        changed,
                    });
                }
            };
            match service_kit::postgres::listen_on(&config, CHANGES_CHANNEL, on_message).await {
                Ok(listener) => {
                    // Anything committed before LISTEN took effect.
                    let _ = self.refresh().await;
                    // Notifications sent while not listening are lost: subscribers read again.
                    let _ = self.changes.send(Notice::Resync);
                    while !listener.is_closed() {
                        let moved = tokio::time::timeout(
                            Duration::from_secs(1),
                            partition_moved.notified(),
                        )
                        .await;
                        if moved.is_ok() {
                            let _ = self.refresh().await;
                            let _ = self.changes.send(Notice::Resync);
                        }
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

    /// Every batch committed from now on, as the projector announces it.
    pub fn changes(&self) -> broadcast::Receiver<Notice> {
        self.changes.subscribe()
    }

    fn sender(&self, projection: &str) -> &watch::Sender<Checkpoint> {
        &self.watches[projection]
    }

    /// The latest checkpoint of `projection` this process knows of, without asking the
    /// database.
    ///
    /// # Panics
    /// When `projection` is not one of [`PROJECTIONS`].
    pub fn known(&self, projection: &str) -> Option<Position> {
        self.sender(projection).borrow().position
    }

    /// Reads every projection's checkpoint from the database and returns them by name.
    ///
    /// What the watch knows only ever rises (a notification may already have announced a
    /// later checkpoint than the one this read saw), except after a rebuild, which starts the
    /// checkpoint over: then the watch starts over too.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn refresh(
        &self,
    ) -> Result<BTreeMap<&'static str, Option<Position>>, crate::db::DbError> {
        let client = self.pool.get().await?;
        let names: Vec<&str> = self.watches.keys().copied().collect();
        let mut stored_all = crate::db::projection::load_checkpoints(&client, &names).await?;
        let mut read = BTreeMap::new();
        for (&name, tx) in self.watches.iter() {
            let stored = stored_all.remove(name).unwrap_or_default();
            tx.send_if_modified(|known| {
                if stored.rebuilds > known.rebuilds {
                    *known = stored;
                    true
                } else {
                    stored.position.is_some_and(|p| raise(known, p))
                }
            });
            read.insert(name, stored.position);
        }
        Ok(read)
    }

    /// Whether readers can see the log up to `token`: a projection applied it (it read the
    /// log that far), or the log's head is there. Until then an event before the token may
    /// still become visible.
    async fn visible_up_to(&self, token: Position) -> bool {
        if self
            .watches
            .values()
            .any(|w| w.borrow().position.is_some_and(|c| c >= token))
        {
            return true;
        }
        match self.log.head().await {
            Ok(head) => head.is_some_and(|h| h >= token),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the log's head to settle a consistency token");
                false
            }
        }
    }

    /// Where to look for `projection`'s events after its checkpoint `before` (of its
    /// `rebuilds`-th build): from where an earlier wait of the same build found none.
    fn settled_from(
        &self,
        projection: &'static str,
        rebuilds: i64,
        before: Option<Position>,
    ) -> Option<Position> {
        let settled = self.settled.lock().unwrap_or_else(PoisonError::into_inner);
        match settled.get(projection) {
            Some(&(at, position)) if at == rebuilds => before.max(Some(position)),
            _ => before,
        }
    }

    /// Notes that `projection`, in its `rebuilds`-th build, has applied everything the log
    /// holds of its streams up to `token` (the log is final there: readers can see that far).
    fn settle(&self, projection: &'static str, rebuilds: i64, token: Position) {
        let mut settled = self.settled.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = settled.entry(projection).or_insert((rebuilds, token));
        if rebuilds > entry.0 || (rebuilds == entry.0 && token > entry.1) {
            *entry = (rebuilds, token);
        }
    }

    /// Waits, at most `timeout`, until every projection has applied what the log holds of its
    /// streams up to the event at `token`.
    pub async fn wait_for(&self, token: Position, timeout: Duration) -> WaitOutcome {
        let started = Instant::now();
        let deadline = started + timeout;
        // A notification may have been missed while reconnecting; one read settles it.
        let _ = self.refresh().await;
        // Projections with no event of their own up to the token stay so: the log is final
        // up to the token once readers can see that far.
        let mut concerned: Vec<&'static Descriptor> = Vec::new();
        let mut open: Vec<&'static Descriptor> = PROJECTIONS.iter().collect();
        let reached = loop {
            // Taken before looking, so that a batch committed meanwhile still wakes the wait.
            let mut committed = self.changes.subscribe();
            let mut waiting_on = None;
            let mut still_open = Vec::new();
            let visible = self.visible_up_to(token).await;
            for projection in open {
                let Checkpoint {
                    position: before,
                    rebuilds,
                } = *self.sender(projection.name).borrow();
                if before.is_some_and(|c| c >= token) {
                    concerned.push(projection);
                    continue;
                }
                if !visible {
                    still_open.push(projection);
                    continue;
                }
                // Settled, and not concerned, when none of its events lie up to the token.
                let from = self.settled_from(projection.name, rebuilds, before);
                if from.is_some_and(|from| from >= token) {
                    continue;
                }
                match self.log.has_events_between(projection, from, token).await {
                    Ok(false) => self.settle(projection.name, rebuilds, token),
                    Ok(true) => {
                        waiting_on.get_or_insert((projection, before));
                        still_open.push(projection);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the log to settle a consistency token");
                        still_open.push(projection);
                    }
                }
            }
            open = still_open;
            if open.is_empty() {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            // Look again when the awaited projection's checkpoint moves (it may stop short of
            // the token, its last event being before it); when what is pending cannot be told
            // yet (a transaction before the token is still open), when any batch commits, or
            // after a while (that transaction may hold no projection's events).
            match waiting_on {
                Some((projection, before)) => {
                    let mut rx = self.sender(projection.name).subscribe();
                    if self.known(projection.name) == before {
                        let _ = tokio::time::timeout(deadline - now, rx.changed()).await;
                    }
                }
                None => {
                    let _ = tokio::time::timeout(RECHECK.min(deadline - now), async {
                        // Only a batch at or past the token can show the log that far (or a
                        // resync, after which anything may have moved).
                        while let Ok(Notice::Committed { position, .. }) = committed.recv().await {
                            if position >= token {
                                break;
                            }
                        }
                    })
                    .await;
                }
            }
        };
        concerned.extend(open);
        crate::metrics::METRICS
            .waits
            .get_or_create(&WaitLabels {
                outcome: if reached { "reached" } else { "timed_out" },
            })
            .observe(started.elapsed().as_secs_f64());
        WaitOutcome {
            reached,
            checkpoint: concerned.iter().map(|p| self.known(p.name)).min().flatten(),
            waited: started.elapsed(),
        }
    }
}

fn raise(known: &mut Checkpoint, p: Position) -> bool {
    if known.position.is_none_or(|c| p > c) {
        known.position = Some(p);
        true
    } else {
        false
    }
}

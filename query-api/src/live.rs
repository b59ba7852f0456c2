//! Live updates behind the subscriptions, for any workflow's read models.
//!
//! The projector sends one notification per committed batch (its projection, its checkpoint and
//! the instances it changed); [`crate::consistency::CheckpointWatch`] holds the process's one
//! LISTEN and re-sends each as a [`Notice`] on an in-process broadcast. Nothing is delivered
//! from a notification itself: a notice only says *when* to read, and what a subscriber gets is
//! read from the read models, after a position it keeps. So a notice missed, merged or late
//! never loses or repeats a change.
//!
//! - An instance's updates ([`instance_updates`]): one message per read that finds the instance
//!   at a newer revision, with every event since the previous message (from its timeline, one
//!   entry per event) and the row as those events left it. Subscribers are woken through a
//!   registry keyed by instance, so a batch costs its changed instances, not every subscriber;
//!   a wake is a flag, so a slow subscriber holds no queue (it reads everything new at once).
//! - A list's changes ([`list_changes`]): each instance matching a filter whose last applied
//!   event moved past the subscriber's position, in log order, once per read.
//! - Counts per status ([`status_counts`]) and the stalled instances ([`stalled`]): the current
//!   figures, sent again whenever they change.
//!
//! The list-like subscriptions read the broadcast directly; one that falls more than the
//! broadcast's capacity behind is closed with [`LiveError::TooSlow`] and the token to resume
//! from.

use crate::consistency::CheckpointWatch;
use crate::db::workflow::{self as db, ReadModels, TimelineRecord, Visible};
use crate::db::DbError;
use deadpool_postgres::Pool;
use domain::Label;
use event_store::Position;
use futures::stream::{self, Stream};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, Notify, Semaphore};
use uuid::Uuid;

/// How often the stalled instances are read again when no batch is committed (deadlines pass
/// without events).
const STALLED_RECHECK: Duration = Duration::from_secs(5);

/// The most instances a list subscription reads at once; more are read in further rounds.
const LIST_ROUND: i64 = 500;

/// The first and the longest wait before a subscription reads again after the read models
/// could not be reached.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LONGEST: Duration = Duration::from_secs(2);

/// What the projector announced.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A projection committed a batch: its checkpoint and the instances it changed (`None`
    /// when they did not fit the notification: any may have changed).
    Committed {
        projection: &'static str,
        position: Position,
        changed: Option<Arc<[Uuid]>>,
    },
    /// Dead-lettered events of these instances were applied after a fix: their rows changed,
    /// though their last applied event lies before the checkpoint.
    Repaired {
        projection: &'static str,
        ids: Arc<[Uuid]>,
    },
    /// Notifications may have been missed (the listening connection was lost and is back):
    /// every subscriber reads again.
    Resync,
}

/// Why a subscription ended.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The subscriber fell too far behind the committed batches.
    #[error("the subscriber fell too far behind; subscribe again with after: {resume_from:?}")]
    TooSlow { resume_from: Option<String> },
    #[error("the read models cannot be read")]
    Read(#[source] DbError),
}

/// What the subscriptions share in a process: the read models, the checkpoints and their
/// broadcast, and the registry of instance subscribers.
#[derive(Clone)]
pub struct Live {
    pool: Pool,
    checkpoints: CheckpointWatch,
    registry: Arc<Registry>,
    /// Subscriptions' reads under way; at most half the pool's connections, so queries keep
    /// theirs when many subscribers read at once.
    reads: Arc<Semaphore>,
}

impl Live {
    /// Starts routing committed batches to the instance subscribers.
    pub fn start(pool: Pool, checkpoints: CheckpointWatch) -> Self {
        let registry = Arc::new(Registry::default());
        let mut changes = checkpoints.changes();
        let router = Arc::downgrade(&registry);
        tokio::spawn(async move {
            loop {
                let notice = changes.recv().await;
                let Some(registry) = router.upgrade() else {
                    return;
                };
                match notice {
                    Ok(Notice::Committed {
                        projection,
                        changed: Some(ids),
                        ..
                    })
                    | Ok(Notice::Repaired { projection, ids }) => registry.wake(projection, &ids),
                    // Any instance of the projection may have changed.
                    Ok(Notice::Committed {
                        projection,
                        changed: None,
                        ..
                    }) => registry.wake_projection(projection),
                    // Notices were lost.
                    Ok(Notice::Resync) | Err(RecvError::Lagged(_)) => registry.wake_all(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let reads = Arc::new(Semaphore::new((pool.status().max_size / 2).max(1)));
        Self {
            pool,
            checkpoints,
            registry,
            reads,
        }
    }

    /// Runs `read` (one of a subscription's reads) when fewer than the cap are under way; while
    /// the read models cannot be reached (no connection, a connection lost), reads again after
    /// a wait that grows to [`RETRY_LONGEST`]: a subscription outlives an outage.
    ///
    /// # Errors
    /// [`LiveError::Read`] when the database refused the read itself.
    async fn read<T, F, Fut>(&self, read: F) -> Result<T, LiveError>
    where
        F: Fn(Pool) -> Fut,
        Fut: std::future::Future<Output = Result<T, DbError>>,
    {
        let mut wait = RETRY_FIRST;
        loop {
            let result = {
                // The semaphore is never closed.
                let _permit = self.reads.acquire().await;
                read(self.pool.clone()).await
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %e, retry_in = ?wait, "a subscription cannot read the read models; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_LONGEST);
                }
                Err(e) => return Err(LiveError::Read(e)),
            }
        }
    }
}

/// The subscribers of each instance (by projection and id): each one's key and its wake-up.
type Waiting = HashMap<(&'static str, Uuid), Vec<(u64, Arc<Notify>)>>;

/// Who waits for which instance.
#[derive(Default)]
struct Registry {
    waiting: Mutex<Waiting>,
    next: std::sync::atomic::AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // A panic elsewhere while holding the lock leaves the map consistent (single inserts
        // and removals): keep using it.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self, projection: &'static str, ids: &[Uuid]) {
        let waiting = self.lock();
        for id in ids {
            for (_, notify) in waiting.get(&(projection, *id)).into_iter().flatten() {
                notify.notify_one();
            }
        }
    }

    fn wake_projection(&self, projection: &'static str) {
        let waiting = self.lock();
        let of_projection = waiting.iter().filter(|((p, _), _)| *p == projection);
        for (_, notify) in of_projection.flat_map(|(_, list)| list) {
            notify.notify_one();
        }
    }

    fn wake_all(&self) {
        for (_, notify) in self.lock().values().flatten() {
            notify.notify_one();
        }
    }

    fn register(self: &Arc<Self>, projection: &'static str, id: Uuid) -> Registration {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.lock()
            .entry((projection, id))
            .or_default()
            .push((key, Arc::clone(&notify)));
        Registration {
            registry: Arc::clone(self),
            slot: (projection, id),
            key,
            notify,
        }
    }
}

/// An instance subscriber's place in the registry; leaves it when dropped.
struct Registration {
    registry: Arc<Registry>,
    slot: (&'static str, Uuid),
    key: u64,
    notify: Arc<Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut waiting = self.registry.lock();
        if let Some(list) = waiting.get_mut(&self.slot) {
            list.retain(|(key, _)| *key != self.key);
            if list.is_empty() {
                waiting.remove(&self.slot);
            }
        }
    }
}

/// What woke a list-like subscriber: every notice waiting for it, merged.
#[derive(Debug, Default)]
struct Wake {
    /// The newest checkpoint announced.
    upto: Option<Position>,
    /// The changed instances (`None`: any may have changed).
    changed: Option<Vec<Arc<[Uuid]>>>,
    /// Notices may have been lost: read from the checkpoint in the database.
    resync: bool,
    /// Instances repaired (see [`Notice::Repaired`]).
    repaired: Vec<Uuid>,
}

/// A list-like subscriber's share of the broadcast.
struct Feed {
    changes: broadcast::Receiver<Notice>,
    projection: &'static str,
}

impl Feed {
    fn new(live: &Live, projection: &'static str) -> Self {
        Self {
            changes: live.checkpoints.changes(),
            projection,
        }
    }

    /// Waits for a notice of the projection, then takes every one already waiting.
    ///
    /// # Errors
    /// `Err(())` when the subscriber fell behind by more than the broadcast holds.
    async fn next(&mut self) -> Result<Wake, ()> {
        let mut wake = Wake {
            changed: Some(Vec::new()),
            ..Wake::default()
        };
        let mut woken = false;
        loop {
            let notice = if woken {
                match self.changes.try_recv() {
                    Ok(notice) => notice,
                    Err(TryRecvError::Empty | TryRecvError::Closed) => return Ok(wake),
                    Err(TryRecvError::Lagged(_)) => return Err(()),
                }
            } else {
                match self.changes.recv().await {
                    Ok(notice) => notice,
                    Err(RecvError::Lagged(_)) => return Err(()),
                    // The watch lives as long as the process.
                    Err(RecvError::Closed) => std::future::pending().await,
                }
            };
            match notice {
                Notice::Committed {
                    projection,
                    position,
                    changed,
                } if projection == self.projection => {
                    woken = true;
                    wake.upto = wake.upto.max(Some(position));
                    match (&mut wake.changed, changed) {
                        (Some(all), Some(ids)) => all.push(ids),
                        (list, _) => *list = None,
                    }
                }
                Notice::Repaired { projection, ids } if projection == self.projection => {
                    woken = true;
                    wake.repaired.extend(ids.iter().copied());
                }
                Notice::Committed { .. } | Notice::Repaired { .. } => {}
                Notice::Resync => {
                    woken = true;
                    wake.resync = true;
                    wake.changed = None;
                }
            }
        }
    }
}

/// An update of one instance: every event applied since the previous update, oldest first, and
/// the instance as they left it.
pub struct Update<W: ReadModels> {
    pub record: W::Record,
    pub events: Vec<TimelineRecord>,
}

impl<W: ReadModels> Update<W> {
    /// Where the update leaves the subscriber: the log position of the last event it carries.
    pub fn token(&self) -> &str {
        W::progress(&self.record).2
    }
}

/// Every update of the instance `id` of `W`: when `after` is given, first every event applied
/// after that log position (from the read model), then each new one; otherwise from now on.
pub fn instance_updates<W: ReadModels, G: Send + 'static>(
    live: &Live,
    guard: G,
    id: Uuid,
    visible: Visible,
    after: Option<Position>,
) -> impl Stream<Item = Result<Update<W>, LiveError>> + Send + 'static {
    struct State<G> {
        live: Live,
        registration: Registration,
        id: Uuid,
        /// What the subscriber may see: nothing of an instance that is not theirs.
        visible: Visible,
        after: Option<Position>,
        /// The revision of the last update, or the one found on subscribing.
        revision: Option<i64>,
        started: bool,
        _guard: G,
    }
    let state = State {
        live: live.clone(),
        // Registered before the first read: a batch committed in between wakes it.
        registration: live.registry.register(W::PROJECTION, id),
        id,
        visible,
        after,
        revision: None,
        started: false,
        _guard: guard,
    };
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            if s.started {
                s.registration.notify.notified().await;
            }
            let first = !s.started;
            s.started = true;
            let (id, revision, visible) = (s.id, s.revision, &s.visible);
            let read = s
                .live
                .read(|pool| async move { read_update::<W>(&pool, id, visible, revision).await })
                .await;
            match read {
                Err(e) => return Some((Err(e), None)),
                Ok(None) => continue,
                Ok(Some(mut update)) => {
                    s.revision = Some(W::progress(&update.record).1);
                    match s.after {
                        // From now on: what the instance is now was seen.
                        None if first => continue,
                        None => {}
                        // The client has every event up to `after`, whichever read reaches
                        // them (the projection may still be short of it when subscribing).
                        Some(after) => update
                            .events
                            .retain(|e| e.position.parse::<Position>().is_ok_and(|p| p > after)),
                    }
                    if update.events.is_empty() {
                        continue;
                    }
                    return Some((Ok(update), Some(s)));
                }
            }
        }
    })
}

/// The instance `id` and its events after `revision`, up to the revision its row shows;
/// `None` when it is not past `revision`.
///
/// No transaction: the projector writes a row and its timeline entries in one, so the timeline,
/// read after the row, holds at least every entry up to the row's revision; later ones are left
/// for the next update.
async fn read_update<W: ReadModels>(
    pool: &Pool,
    id: Uuid,
    visible: &Visible,
    revision: Option<i64>,
) -> Result<Option<Update<W>>, DbError> {
    let client = pool.get().await?;
    let Some(record) = db::record_by_id::<W>(&client, id, visible).await? else {
        return Ok(None);
    };
    let at = W::progress(&record).1;
    if revision.is_some_and(|r| at <= r) {
        return Ok(None);
    }
    let events = db::timeline_after::<W>(&client, id, revision).await?;
    let events = events.into_iter().filter(|e| e.revision <= at).collect();
    Ok(Some(Update { record, events }))
}

/// Every instance of `W` matching `filter` whose last applied event moves past the subscriber's
/// position, in log order: when `after` is given, first those past it (from the read model),
/// then each new batch's.
pub fn list_changes<W: ReadModels, G: Send + 'static>(
    live: &Live,
    guard: G,
    filter: W::Filter,
    visible: Visible,
    after: Option<Position>,
) -> impl Stream<Item = Result<W::Record, LiveError>> + Send + 'static
where
    W::Filter: Send + Sync + 'static,
{
    struct State<W: ReadModels, G> {
        live: Live,
        feed: Feed,
        filter: W::Filter,
        /// What the subscriber may see: a customer only their own.
        visible: Visible,
        /// Every change up to here was delivered or read.
        read_to: Option<Position>,
        /// Read, not yet delivered.
        queue: std::collections::VecDeque<W::Record>,
        /// What is known to have changed and is not read yet: up to where, and which.
        pending: Option<(Position, Option<Vec<Uuid>>)>,
        /// Repaired instances to read again, among those read up to the position.
        repaired: Option<(Position, Vec<Uuid>)>,
        /// The last token delivered (or the starting point).
        delivered: Option<Position>,
        started: bool,
        _guard: G,
    }
    let state: State<W, G> = State {
        feed: Feed::new(live, W::PROJECTION),
        live: live.clone(),
        filter,
        visible,
        read_to: after,
        queue: Default::default(),
        pending: None,
        repaired: None,
        delivered: after,
        started: false,
        _guard: guard,
    };
    stream::unfold(Some(state), move |state| async move {
        let mut s = state?;
        loop {
            if let Some(record) = s.queue.pop_front() {
                // A repaired instance's token may lie before what was delivered.
                s.delivered = s.delivered.max(W::progress(&record).2.parse().ok());
                return Some((Ok(record), Some(s)));
            }
            if let Some((upto, ids)) = s.repaired.take() {
                let (filter, visible) = (&s.filter, &s.visible);
                let read = s
                    .live
                    .read(|pool| {
                        let ids = &ids;
                        async move {
                            let client = pool.get().await?;
                            db::changed_between::<W>(
                                &client,
                                filter,
                                visible,
                                None,
                                upto,
                                Some(ids),
                                LIST_ROUND,
                            )
                            .await
                        }
                    })
                    .await;
                match read {
                    Err(e) => return Some((Err(e), None)),
                    Ok(rows) => s.queue.extend(rows),
                }
                continue;
            }
            if let Some((upto, ids)) = s.pending.take() {
                let (filter, visible) = (&s.filter, &s.visible);
                let (read_to, only) = (s.read_to, ids.as_deref());
                let read = s
                    .live
                    .read(|pool| async move {
                        let client = pool.get().await?;
                        db::changed_between::<W>(
                            &client, filter, visible, read_to, upto, only, LIST_ROUND,
                        )
                        .await
                    })
                    .await;
                match read {
                    Err(e) => return Some((Err(e), None)),
                    Ok(rows) => {
                        let full = rows.len() as i64 >= LIST_ROUND;
                        let last = rows.last().and_then(|r| W::progress(r).2.parse().ok());
                        if full && last.is_some() {
                            // More to read up to `upto`: from the last row read.
                            s.read_to = last;
                            s.pending = Some((upto, ids));
                        } else {
                            s.read_to = s.read_to.max(Some(upto));
                            if rows.is_empty() {
                                s.delivered = s.delivered.max(Some(upto));
                            }
                        }
                        s.queue.extend(rows);
                    }
                }
                continue;
            }
            if !s.started {
                s.started = true;
                let known = match known_checkpoint(&s.live, W::PROJECTION).await {
                    Ok(known) => known,
                    Err(e) => return Some((Err(e), None)),
                };
                match (s.read_to, known) {
                    (Some(_), Some(known)) => s.pending = Some((known, None)),
                    // From now on.
                    (None, known) => {
                        s.read_to = known;
                        s.delivered = known;
                    }
                    (Some(_), None) => {}
                }
                continue;
            }
            let Ok(wake) = s.feed.next().await else {
                let resume_from = s.delivered.map(|p| p.to_string());
                return Some((Err(LiveError::TooSlow { resume_from }), None));
            };
            let upto = if wake.resync {
                match known_checkpoint(&s.live, W::PROJECTION).await {
                    Ok(known) => known.max(wake.upto),
                    Err(e) => return Some((Err(e), None)),
                }
            } else {
                wake.upto
            };
            // Those past the position are read with the rest.
            if let Some(read_to) = s.read_to.filter(|_| !wake.repaired.is_empty()) {
                s.repaired = Some((read_to, wake.repaired));
            }
            if let Some(upto) = upto.filter(|u| s.read_to.is_none_or(|r| *u > r)) {
                let ids = wake
                    .changed
                    .map(|lists| lists.iter().flat_map(|l| l.iter().copied()).collect());
                s.pending = Some((upto, ids));
            }
        }
    })
}

/// The projection's checkpoint as the database has it now.
async fn known_checkpoint(live: &Live, projection: &str) -> Result<Option<Position>, LiveError> {
    let checkpoints = live.read(|_| live.checkpoints.refresh()).await?;
    Ok(checkpoints.get(projection).copied().flatten())
}

/// A figure sent again whenever it changes: first as it is, then after each batch of `W`'s
/// projection (and every `recheck`, when given) if it differs.
fn figures<W, T, F, Fut, G>(
    live: &Live,
    guard: G,
    recheck: Option<Duration>,
    read: F,
) -> impl Stream<Item = Result<T, LiveError>> + Send + 'static
where
    W: ReadModels,
    T: PartialEq + Clone + Send + 'static,
    F: Fn(Pool) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, DbError>> + Send,
    G: Send + 'static,
{
    let state = (Feed::new(live, W::PROJECTION), None::<T>, false, guard);
    let live = live.clone();
    let read = Arc::new(read);
    stream::unfold(Some(state), move |state| {
        let (live, read) = (live.clone(), Arc::clone(&read));
        async move {
            let (mut feed, mut last, started, guard) = state?;
            if started {
                loop {
                    let woke = match recheck {
                        Some(every) => tokio::time::timeout(every, feed.next())
                            .await
                            .unwrap_or(Ok(Wake::default())),
                        None => feed.next().await,
                    };
                    if woke.is_err() {
                        // Figures carry no token: the current ones come first on resubscribing.
                        let error = LiveError::TooSlow { resume_from: None };
                        return Some((Err(error), None));
                    }
                    match live.read(&*read).await {
                        Err(e) => return Some((Err(e), None)),
                        Ok(now) if last.as_ref() == Some(&now) => continue,
                        Ok(now) => {
                            last = Some(now.clone());
                            return Some((Ok(now), Some((feed, last, true, guard))));
                        }
                    }
                }
            }
            match live.read(&*read).await {
                Err(e) => Some((Err(e), None)),
                Ok(now) => {
                    let next = Some((feed, Some(now.clone()), true, guard));
                    Some((Ok(now), next))
                }
            }
        }
    })
}

/// How many of `W`'s instances are in each status, every status listed: as they are, then
/// whenever they change.
pub fn status_counts<W: ReadModels, G: Send + 'static>(
    live: &Live,
    guard: G,
) -> impl Stream<Item = Result<Vec<(W::Status, i64)>, LiveError>> + Send + 'static {
    figures::<W, _, _, _, _>(live, guard, None, |pool| async move {
        let client = pool.get().await?;
        let counts = db::status_counts::<W>(&client).await?;
        Ok(<W::Status as Label>::ALL
            .iter()
            .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
            .collect())
    })
}

/// At most `limit` of `W`'s instances past their deadline, the longest overdue first: as they
/// are, then whenever the list (or one of them) changes.
pub fn stalled<W: ReadModels, G: Send + 'static>(
    live: &Live,
    guard: G,
    limit: i64,
) -> impl Stream<Item = Result<Vec<W::Record>, LiveError>> + Send + 'static
where
    W::Record: Clone,
{
    let rows =
        figures::<W, _, _, _, _>(live, guard, Some(STALLED_RECHECK), move |pool| async move {
            let client = pool.get().await?;
            let rows = db::stalled::<W>(&client, limit).await?;
            Ok(Stalled::<W>(rows))
        });
    futures::StreamExt::map(rows, |r| r.map(|s| s.0))
}

/// Stalled instances, compared by what tells them apart: ids and revisions.
struct Stalled<W: ReadModels>(Vec<W::Record>);

impl<W: ReadModels> Clone for Stalled<W>
where
    W::Record: Clone,
{
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<W: ReadModels> PartialEq for Stalled<W> {
    fn eq(&self, other: &Self) -> bool {
        let key = |r: &W::Record| {
            let (id, revision, _) = W::progress(r);
            (id, revision)
        };
        self.0.iter().map(key).eq(other.0.iter().map(key))
    }
}

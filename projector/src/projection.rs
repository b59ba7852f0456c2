//! The order projection: batches of events applied to the read models in one transaction with
//! their checkpoint, a NOTIFY after each commit, the live loop, rebuild and retry.

use crate::config::Config;
use crate::db;
use crate::db::{DeadLetter, RepairNote};
use crate::lease::Lease;
use crate::model::{apply, corrected, order_id_of, Correction, OrderRow};
use crate::ProjectorError;
use deadpool_postgres::{GenericClient, Pool};
use event_store::{EventStore, Position, RecordedEvent, StoreError, StoreOptions};
use futures::TryFutureExt;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The projection's name in `projection_checkpoints`.
pub const PROJECTION: &str = "order_status";
/// The channel notified after each committed batch: `{"position": "...", "orders": [...]}`
/// (`orders` is null when the list would not fit a notification).
pub const CHANGES_CHANNEL: &str = "milestone_projection";

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub checkpoint: Option<Position>,
    pub applied: usize,
    pub dead_lettered: usize,
    pub orders_changed: usize,
}

/// Progress of a long run (rebuild), for printing.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub events: u64,
    pub elapsed: Duration,
    pub position: Option<Position>,
}

/// The projector: reads the log, writes the read models.
#[derive(Clone)]
pub struct Projector {
    store: Arc<dyn EventStore>,
    pool: Pool,
    pg_config: tokio_postgres::Config,
    config: Config,
    /// The operators' corrections of logged events, applied in their place; shared by the
    /// clones, reloaded when the checkpoint row shows a newer corrections version.
    corrections: Arc<Mutex<CorrectionCache>>,
}

/// The corrections as of one `corrections_version` of the checkpoint row.
#[derive(Default)]
struct CorrectionCache {
    version: Option<i64>,
    events: Arc<HashMap<Uuid, Correction>>,
}

impl Projector {
    /// Connects to the event store and the read-model database and applies the read-model
    /// migrations.
    ///
    /// # Errors
    /// When either cannot be reached or a migration fails.
    pub async fn connect(config: Config) -> Result<Self, ProjectorError> {
        let store = event_store::connect(
            &config.event_store_url,
            &StoreOptions {
                pool_size: config.pool_size,
            },
        )
        .await?;
        let mut pg_config: tokio_postgres::Config = config
            .read_model_url
            .parse()
            .map_err(|e| StoreError::InvalidUrl(format!("{e}")))?;
        // Plan every statement for the table as it is now: a cached generic plan made while
        // the read models are small (after a rebuild's truncate) would keep scanning them
        // sequentially once they are large (measured: row loads went from 0.6 ms to 15 ms).
        // A transaction left open by a host that vanished mid-batch would hold the checkpoint
        // row for as long as TCP keeps its connection alive (hours) and keep a standby from
        // taking over: the server ends such a transaction after the lease's time to live, and
        // gives up on a connection that leaves its data unacknowledged (mid-statement) or stops
        // answering keepalives within about the same time.
        let ttl = config.lease_ttl.as_millis();
        let probe_secs = (config.lease_ttl.as_secs() / 3).max(1);
        pg_config.options(format!(
            "-c plan_cache_mode=force_custom_plan -c idle_in_transaction_session_timeout={ttl} \
             -c tcp_user_timeout={ttl} -c tcp_keepalives_idle={probe_secs} \
             -c tcp_keepalives_interval={probe_secs} -c tcp_keepalives_count=3"
        ));
        let (pool, pg_config) =
            event_store::postgres::build_pool_from(pg_config, config.pool_size)?;
        let projector = Self {
            store,
            pool,
            pg_config,
            config,
            corrections: Arc::default(),
        };
        projector.migrate().await?;
        Ok(projector)
    }

    async fn migrate(&self) -> Result<(), ProjectorError> {
        let mut client = self.pool.get().await?;
        event_store::postgres::apply_migrations(
            &mut client,
            "read_model_migrations",
            db::MIGRATIONS,
        )
        .await?;
        db::ensure_checkpoint(&client, PROJECTION).await?;
        Ok(())
    }

    /// Refuses to resume from a checkpoint written while reading the other backend: its
    /// position means nothing in this store's log.
    async fn claim_checkpoint(&self, client: &impl GenericClient) -> Result<(), ProjectorError> {
        let configured = self.store.backend();
        db::claim_checkpoint_backend(client, PROJECTION, configured)
            .await?
            .map_err(|checkpoint| ProjectorError::OtherEventStore {
                projection: PROJECTION,
                checkpoint,
                configured,
            })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Where the projection has got to in the configured store's log.
    ///
    /// # Errors
    /// When the read-model database cannot be reached; [`ProjectorError::OtherEventStore`]
    /// when the checkpoint was written reading the other backend.
    pub async fn checkpoint(&self) -> Result<Option<Position>, ProjectorError> {
        let client = self.pool.get().await?;
        self.claim_checkpoint(&client).await?;
        Ok(db::load_checkpoint(&client, PROJECTION).await?)
    }

    /// Applies `events` (which follow `expected` in the log) and moves the checkpoint to the
    /// last of them, all in one transaction, without a lease (tools and tests).
    ///
    /// # Errors
    /// [`ProjectorError::CheckpointMoved`] when another writer moved the checkpoint (nothing is
    /// written); database errors.
    pub async fn apply_batch(
        &self,
        expected: Option<Position>,
        events: &[RecordedEvent],
    ) -> Result<BatchOutcome, ProjectorError> {
        self.apply_fenced_batch(None, expected, events).await
    }

    /// [`Projector::apply_batch`] as the holder of `lease`: the batch commits only while the
    /// lease's fencing token is the checkpoint's, even if the lease was lost meanwhile.
    ///
    /// # Errors
    /// [`ProjectorError::LeaseLost`] when another instance has taken the lease over (nothing is
    /// written); as [`Projector::apply_batch`].
    pub async fn apply_batch_holding(
        &self,
        lease: &Lease,
        expected: Option<Position>,
        events: &[RecordedEvent],
    ) -> Result<BatchOutcome, ProjectorError> {
        self.apply_fenced_batch(Some(lease.token()), expected, events)
            .await
    }

    async fn apply_fenced_batch(
        &self,
        fence: Option<i64>,
        expected: Option<Position>,
        events: &[RecordedEvent],
    ) -> Result<BatchOutcome, ProjectorError> {
        let Some(last) = events.last() else {
            return Ok(BatchOutcome {
                checkpoint: expected,
                ..BatchOutcome::default()
            });
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut ids: Vec<Uuid> = events
            .iter()
            .filter_map(|e| order_id_of(&e.stream_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        // One round trip: the statements run in order, the loads under the lock.
        let (current, mut rows, mut parked) = futures::try_join!(
            db::lock_checkpoint(&tx, PROJECTION).err_into(),
            db::load_rows(&tx, &ids),
            db::parked_streams(&tx, PROJECTION, &streams).err_into(),
        )?;
        let current = current.ok_or_else(|| {
            ProjectorError::Corrupt(format!("the checkpoint row of {PROJECTION} is missing"))
        })?;
        if current.position != expected {
            return Err(ProjectorError::CheckpointMoved {
                expected,
                found: current.position,
            });
        }
        let corrections = self.corrections(&tx, current.corrections_version).await?;
        let before: HashMap<Uuid, String> =
            rows.iter().map(|(id, r)| (*id, r.status.clone())).collect();

        let mut touched: Vec<Uuid> = Vec::new();
        let mut touched_set = HashSet::new();
        let mut timeline = Vec::new();
        let mut dead_lettered = 0;
        for event in events {
            let event = corrected(&corrections, event);
            let event = event.as_ref();
            if parked.contains(&event.stream_id) {
                let reason =
                    "parked behind an earlier event of this order that could not be applied";
                db::insert_dead_letter(&tx, PROJECTION, event, reason).await?;
                dead_lettered += 1;
                continue;
            }
            let id = order_id_of(&event.stream_id);
            let mut slot = id.and_then(|id| rows.remove(&id));
            let result = apply(&mut slot, event, &self.config.deadlines);
            if let Some(row) = slot {
                if matches!(result, Ok(Some(_))) && touched_set.insert(row.order_id) {
                    touched.push(row.order_id);
                }
                rows.insert(row.order_id, row);
            }
            match result {
                Ok(None) => {}
                Ok(Some(entry)) => timeline.push(entry),
                Err(error) => {
                    tracing::warn!(stream = %event.stream_id, revision = event.revision, %error, "dead-lettered an event; parking its order");
                    db::insert_dead_letter(&tx, PROJECTION, event, &error).await?;
                    db::park_stream(&tx, PROJECTION, &event.stream_id, &error).await?;
                    parked.insert(event.stream_id.clone());
                    dead_lettered += 1;
                }
            }
        }
        for id in &touched {
            if let Some(row) = rows.get_mut(id) {
                row.seal().map_err(ProjectorError::Corrupt)?;
            }
        }
        let changed: Vec<&OrderRow> = touched.iter().filter_map(|id| rows.get(id)).collect();
        let (existing, new): (Vec<&OrderRow>, Vec<&OrderRow>) = changed
            .iter()
            .partition(|row| before.contains_key(&row.order_id));
        // One round trip for the writes; NOTIFY is delivered at commit.
        let notification = notification(last.position, &touched);
        let deltas = status_deltas(&before, &changed);
        let applied = timeline.len() as i64;
        let ((), (), (), stored, ()) = futures::try_join!(
            db::write_rows(&tx, &new, &existing),
            db::insert_timeline(&tx, &timeline),
            db::add_status_counts(&tx, &deltas).err_into(),
            db::store_checkpoint(&tx, PROJECTION, Some(last.position), applied, fence).err_into(),
            db::notify(&tx, CHANGES_CHANNEL, &notification).err_into(),
        )?;
        if !stored {
            return Err(ProjectorError::LeaseLost);
        }
        tx.commit().await?;
        Ok(BatchOutcome {
            checkpoint: Some(last.position),
            applied: timeline.len(),
            dead_lettered,
            orders_changed: touched.len(),
        })
    }

    /// The corrections as of `version`, from the cache when it is that recent: no round trip
    /// unless a retry has written one since the last batch.
    async fn corrections(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        version: i64,
    ) -> Result<Arc<HashMap<Uuid, Correction>>, ProjectorError> {
        {
            let cache = self
                .corrections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if cache.version == Some(version) {
                return Ok(cache.events.clone());
            }
        }
        let events = Arc::new(db::load_corrections(tx, PROJECTION).await?);
        *self
            .corrections
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = CorrectionCache {
            version: Some(version),
            events: events.clone(),
        };
        Ok(events)
    }

    /// Processes every event available now and returns how many it read. Tests drive the
    /// projector with this; no sleeping.
    ///
    /// # Errors
    /// Store or database errors; a moved checkpoint (another instance is writing).
    pub async fn run_once(&self) -> Result<u64, ProjectorError> {
        self.catch_up(None, |_| {}).await
    }

    /// Like [`Projector::run_once`], reporting progress after each batch, and stopping when
    /// `lease` is given and lost. Pages of the catch-up batch size; the next page is read while
    /// the current one is written.
    async fn catch_up(
        &self,
        lease: Option<&Lease>,
        mut progress: impl FnMut(Progress),
    ) -> Result<u64, ProjectorError> {
        let started = Instant::now();
        let mut checkpoint = self.checkpoint().await?;
        let prefix = domain::ORDER_STREAM_PREFIX;
        let size = self.config.catch_up_batch_size;
        let mut page = self.store.read_all(checkpoint, prefix, size).await?;
        let mut total = 0u64;
        while !page.is_empty() {
            if lease.is_some_and(|lease| !lease.is_held()) {
                return Err(ProjectorError::LeaseLost);
            }
            let next_from = page.last().map(|e| e.position);
            let store = self.store.clone();
            let prefetch =
                tokio::spawn(async move { store.read_all(next_from, prefix, size).await });
            let outcome = self
                .apply_fenced_batch(lease.map(Lease::token), checkpoint, &page)
                .await;
            let next = prefetch
                .await
                .map_err(|e| ProjectorError::Corrupt(e.to_string()))?;
            checkpoint = outcome?.checkpoint;
            total += page.len() as u64;
            progress(Progress {
                events: total,
                elapsed: started.elapsed(),
                position: checkpoint,
            });
            page = next?;
        }
        Ok(total)
    }

    /// Empties the read models and replays the log from its start, reporting progress. Holds
    /// the projection's lease meanwhile, so no live projector writes at the same time.
    ///
    /// # Errors
    /// [`ProjectorError::LeaseHeld`] when a live projector is running; store or database errors.
    pub async fn rebuild(&self, progress: impl FnMut(Progress)) -> Result<u64, ProjectorError> {
        let Some(lease) =
            Lease::try_acquire(&self.pg_config, PROJECTION, self.config.lease_ttl).await?
        else {
            return Err(ProjectorError::LeaseHeld);
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        db::ensure_checkpoint(&tx, PROJECTION).await?;
        db::lock_checkpoint(&tx, PROJECTION).await?;
        db::reset_projection(&tx, PROJECTION).await?;
        self.claim_checkpoint(&tx).await?;
        tx.commit().await?;
        drop(client);
        self.catch_up(Some(&lease), progress).await
    }

    /// [`Projector::retry_parked_noting`] with nothing noted.
    ///
    /// # Errors
    /// As [`Projector::retry_parked_noting`].
    pub async fn retry_parked(&self, order_id: Uuid) -> Result<usize, ProjectorError> {
        self.retry_parked_noting(order_id, &RepairNote::default())
            .await
    }

    /// Retries an order's dead-lettered events, in order, after a fix (of the code, or of the
    /// stored payload in `projection_dead_letters`). All apply and the order is unparked, or
    /// nothing changes. Returns how many events were applied; they count in the checkpoint's
    /// `events_applied`. A stored payload that differs from the logged event is kept as a
    /// correction (with `note`), which the projection applies in place of the logged event from
    /// then on, rebuilds included.
    ///
    /// # Errors
    /// [`ProjectorError::NotParked`]; [`ProjectorError::StillFailing`] with the error of the
    /// first event that still fails.
    pub async fn retry_parked_noting(
        &self,
        order_id: Uuid,
        note: &RepairNote,
    ) -> Result<usize, ProjectorError> {
        let stream = format!("{}{order_id}", domain::ORDER_STREAM_PREFIX);
        // The log as written, to tell an operator's edits from untouched letters.
        let logged = event_store::read_whole_stream(self.store.as_ref(), &stream).await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Serialises with the live projector's batches.
        db::ensure_checkpoint(&tx, PROJECTION).await?;
        db::lock_checkpoint(&tx, PROJECTION).await?;
        let letters = db::load_dead_letters(&tx, PROJECTION, &stream).await?;
        if letters.is_empty() {
            return Err(ProjectorError::NotParked(order_id));
        }
        let mut rows = db::load_rows(&tx, &[order_id]).await?;
        let before: HashMap<Uuid, String> =
            rows.iter().map(|(id, r)| (*id, r.status.clone())).collect();
        let mut row = rows.remove(&order_id);
        let mut timeline = Vec::new();
        for DeadLetter { event, .. } in &letters {
            match apply(&mut row, event, &self.config.deadlines) {
                Ok(None) => {}
                Ok(Some(entry)) => timeline.push(entry),
                Err(error) => {
                    return Err(ProjectorError::StillFailing {
                        revision: event.revision,
                        error,
                    });
                }
            }
        }
        if let Some(row) = &mut row {
            row.seal().map_err(ProjectorError::Corrupt)?;
            let (new, existing): (&[&OrderRow], &[&OrderRow]) = if before.contains_key(&order_id) {
                (&[], &[row])
            } else {
                (&[row], &[])
            };
            db::write_rows(&tx, new, existing).await?;
            db::add_status_counts(&tx, &status_deltas(&before, &[row])).await?;
        }
        db::insert_timeline(&tx, &timeline).await?;
        let mut corrected = false;
        for letter in &letters {
            let original = logged.iter().find(|e| e.id == letter.event.id);
            if let Some(correction) = Correction::of(&letter.event, original) {
                db::upsert_correction(&tx, PROJECTION, letter, &correction, note).await?;
                corrected = true;
            }
        }
        db::record_retry(&tx, PROJECTION, timeline.len() as i64, corrected).await?;
        tx.execute(
            "delete from projection_dead_letters where projection = $1 and stream_id = $2",
            &[&PROJECTION, &stream],
        )
        .await?;
        tx.execute(
            "delete from projection_parked_streams where projection = $1 and stream_id = $2",
            &[&PROJECTION, &stream],
        )
        .await?;
        let checkpoint = db::load_checkpoint(&tx, PROJECTION).await?;
        if let Some(position) = checkpoint {
            db::notify(&tx, CHANGES_CHANNEL, &notification(position, &[order_id])).await?;
        }
        tx.commit().await?;
        Ok(timeline.len())
    }

    /// The live loop: stand by until this instance holds the projection's lease, then follow the
    /// log in batches until `shutdown` resolves. Errors are logged and retried; a lost lease
    /// stops the work at once (a batch under way rolls back) and the instance stands by again.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let (ttl, poll) = (self.config.lease_ttl, self.config.standby_poll);
        loop {
            let lease = tokio::select! {
                () = &mut shutdown => return,
                lease = Lease::acquire(&self.pg_config, PROJECTION, ttl, poll) => lease,
            };
            tracing::info!(
                projection = PROJECTION,
                token = lease.token(),
                "active: applying events"
            );
            tokio::select! {
                () = &mut shutdown => return,
                () = lease.lost() => tracing::warn!("lost the lease; standing by"),
                result = self.follow(&lease) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "projection interrupted; resuming");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }

    /// Follows the log from the checkpoint while the lease is held: first catches up with the
    /// backlog in large pages, then takes live events in batches bounded by size and wait.
    async fn follow(&self, lease: &Lease) -> Result<(), ProjectorError> {
        self.catch_up(Some(lease), |_| {}).await?;
        let mut checkpoint = self.checkpoint().await?;
        let mut subscription = self
            .store
            .subscribe_all(checkpoint, domain::ORDER_STREAM_PREFIX)
            .await?;
        loop {
            let first =
                match tokio::time::timeout(Duration::from_secs(1), subscription.next()).await {
                    Err(_) => {
                        if !lease.is_held() {
                            return Err(ProjectorError::LeaseLost);
                        }
                        continue;
                    }
                    Ok(None) => return Err(ProjectorError::SubscriptionEnded),
                    Ok(Some(event)) => event?,
                };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.config.batch_wait;
            while batch.len() < self.config.batch_size {
                if let Some(event) = subscription.try_next() {
                    batch.push(event?);
                    continue;
                }
                match tokio::time::timeout_at(deadline, subscription.next()).await {
                    Ok(Some(event)) => batch.push(event?),
                    Ok(None) => return Err(ProjectorError::SubscriptionEnded),
                    Err(_) => break,
                }
            }
            if !lease.is_held() {
                return Err(ProjectorError::LeaseLost);
            }
            let outcome = self.apply_batch_holding(lease, checkpoint, &batch).await?;
            tracing::debug!(
                applied = outcome.applied,
                dead = outcome.dead_lettered,
                "batch committed"
            );
            checkpoint = outcome.checkpoint;
        }
    }
}

fn status_deltas(before: &HashMap<Uuid, String>, after: &[&OrderRow]) -> HashMap<String, i64> {
    let mut deltas: HashMap<String, i64> = HashMap::new();
    for row in after {
        let old = before.get(&row.order_id);
        if old.map(String::as_str) != Some(row.status.as_str()) {
            if let Some(old) = old {
                *deltas.entry(old.clone()).or_default() -= 1;
            }
            *deltas.entry(row.status.clone()).or_default() += 1;
        }
    }
    deltas
}

/// The NOTIFY payload; PostgreSQL refuses payloads of 8000 bytes or more.
fn notification(position: Position, orders: &[Uuid]) -> String {
    let full =
        serde_json::json!({ "position": position.to_string(), "orders": orders }).to_string();
    if full.len() < 7900 {
        full
    } else {
        serde_json::json!({ "position": position.to_string(), "orders": null }).to_string()
    }
}

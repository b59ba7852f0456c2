//! The projection runtime: batches of events applied by a [`Projection`] in one transaction
//! with their checkpoint, a NOTIFY after each commit, the live loop, rebuild and retry. Nothing
//! here knows which read model it keeps.

use crate::config::Config;
use crate::correction::{corrected, Correction};
use crate::db;
use crate::db::{DeadLetter, RepairNote};
use crate::lease::Lease;
use crate::metrics::{ProjectionLabels, METRICS};
use crate::partition::Partition;
use crate::projection::{BatchOutcome, Progress, Projection, CHANGES_CHANNEL};
use crate::ProjectorError;
use deadpool_postgres::{GenericClient, Pool};
use event_store::{EventStore, Position, RecordedEvent, StoreError, StoreOptions};
use futures::TryFutureExt;
use service_kit::trace::TraceContext;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::Instrument;
use uuid::Uuid;

mod bluegreen;
pub use bluegreen::{schema as blue_green_schema, Switched, SWITCH_BOUND};

/// Keeps one projection: reads the log, writes its read models.
pub struct Runtime<P: Projection> {
    /// The projection this runtime feeds; shared by the clones.
    projection: Arc<P>,
    store: Arc<dyn EventStore>,
    /// The read-model database.
    pool: Pool,
    /// For the lease's own connections.
    pg_config: tokio_postgres::Config,
    config: Config,
    /// The operators' corrections of logged events, applied in their place; shared by the
    /// clones, reloaded when the checkpoint row shows a newer corrections version.
    corrections: Arc<Mutex<CorrectionCache>>,
    /// The share of the log this runtime applies: `None` for the whole projection (which,
    /// when it runs as several partitions, works through one runtime per partition).
    partition: Option<Partition>,
    /// The key of this runtime's checkpoint and lease rows ([`Partition::key`]).
    key: Arc<str>,
    /// The schema of the shadow tables this runtime builds (a blue/green rebuild), or `None`
    /// for the live read models.
    shadow: Option<Arc<str>>,
}

impl<P: Projection> Clone for Runtime<P> {
    fn clone(&self) -> Self {
        Self {
            projection: self.projection.clone(),
            store: self.store.clone(),
            pool: self.pool.clone(),
            pg_config: self.pg_config.clone(),
            config: self.config.clone(),
            corrections: self.corrections.clone(),
            partition: self.partition,
            key: self.key.clone(),
            shadow: self.shadow.clone(),
        }
    }
}

/// A batch applied in memory and sealed, ready to be written: its rows, the events it
/// dead-letters, the parked streams among its own, what it did, how many events it read and
/// when each event it makes visible was decided (with its trace).
struct Prepared<P: Projection> {
    batch: P::Batch,
    dead_letters: Vec<DeadLettered>,
    /// The batch's streams that are parked, before it or by it.
    parked: HashSet<String>,
    applied: usize,
    /// The instances it changed, in the order first changed.
    changed: Vec<Uuid>,
    read: u64,
    /// The position of the last event of its page, where it moves the checkpoint.
    last: Position,
    visible: Vec<(chrono::DateTime<chrono::Utc>, Option<String>)>,
    /// The corrections' version it was applied with (the checkpoint row's).
    corrections_version: i64,
    /// When its load began, for the time a batch takes to apply and commit.
    started: Instant,
}

impl<P: Projection> Prepared<P> {
    fn outcome(&self) -> BatchOutcome {
        BatchOutcome {
            checkpoint: Some(self.last),
            applied: self.applied,
            dead_lettered: self.dead_letters.len(),
            changed: self.changed.len(),
        }
    }
}

/// What applying a batch needs, loaded: its rows, the parked streams among its own, the
/// checkpoint row it was loaded at and the corrections as of that row, and when its load began.
struct Loaded<P: Projection> {
    batch: P::Batch,
    parked: HashSet<String>,
    checkpoint: db::LockedCheckpoint,
    corrections: Arc<HashMap<Uuid, Correction>>,
    started: Instant,
}

/// An event a batch could not apply, and why; `parks` when it parks its stream (the first
/// refused event of a stream does, the later ones are held behind it).
struct DeadLettered {
    event: RecordedEvent,
    reason: String,
    parks: bool,
}

/// A catch-up page being committed while the next one is applied.
struct Committing<P: Projection> {
    page: Vec<RecordedEvent>,
    prepared: Arc<Prepared<P>>,
    task: Spawned<Result<Option<BatchOutcome>, ProjectorError>>,
}

/// A task of the catch-up pipeline (a page's commit, the next page's read), aborted if its
/// handle is dropped unawaited: when the lease is lost or the projector shuts down, the caller
/// is dropped, and a batch under way rolls back instead of committing behind its back.
struct Spawned<T>(tokio::task::JoinHandle<T>);

impl<T: Send + 'static> Spawned<T> {
    fn spawn(task: impl Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl<T> Future for Spawned<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The corrections as of one `corrections_version` of the checkpoint row.
#[derive(Default)]
struct CorrectionCache {
    version: Option<i64>,
    events: Arc<HashMap<Uuid, Correction>>,
}

impl<P: Projection> Runtime<P> {
    /// Connects to the event store and the read-model database and applies the runtime's
    /// migrations, then the projection's.
    ///
    /// # Errors
    /// When either cannot be reached or a migration fails.
    pub async fn start(config: Config, projection: P) -> Result<Self, ProjectorError> {
        let store = event_store::connect(
            config.event_store_url.expose(),
            &StoreOptions {
                pool_size: config.pool_size,
            },
        )
        .await?;
        let mut pg_config: tokio_postgres::Config = config
            .read_model_url
            .expose()
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
        let (pool, pg_config) = service_kit::postgres::build_pool_from(pg_config, config.pool_size)
            .map_err(StoreError::from)?;
        let runtime = Self {
            projection: Arc::new(projection),
            store,
            pool,
            pg_config,
            config,
            corrections: Arc::default(),
            partition: None,
            key: P::NAME.into(),
            shadow: None,
        };
        runtime.migrate().await?;
        Ok(runtime)
    }

    async fn migrate(&self) -> Result<(), ProjectorError> {
        let mut client = self.pool.get().await?;
        // The runtime's own tables first: a projection lists only its read models.
        for migrations in [db::RUNTIME_MIGRATIONS, P::MIGRATIONS] {
            service_kit::postgres::apply_migrations(
                &mut client,
                "read_model_migrations",
                migrations,
            )
            .await?;
        }
        db::ensure_checkpoint(&client, P::NAME).await?;
        let units = self.units();
        let keys: Vec<&str> = units.iter().map(|u| &*u.key).collect();
        db::ensure_partitions(&client, P::NAME, self.config.partitions, &keys).await?;
        Ok(())
    }

    /// The runtime of partition `index` of the configured count: it applies only the events of
    /// its streams, and keeps its own checkpoint and lease.
    ///
    /// # Panics
    /// When `index` is not below the configured count.
    pub fn partition(&self, index: u32) -> Self {
        let count = self.config.partitions;
        assert!(index < count, "partition {index} of {count}");
        let partition = Partition { index, count };
        Self {
            partition: Some(partition),
            key: partition.key(P::NAME).into(),
            ..self.clone()
        }
    }

    /// The units of work: this runtime when the projection runs as one partition, else one
    /// runtime per partition.
    fn units(&self) -> Vec<Self> {
        match (self.partition, self.config.partitions) {
            (Some(_), _) | (None, 1) => vec![self.clone()],
            (None, count) => (0..count).map(|i| self.partition(i)).collect(),
        }
    }

    /// Whether this runtime applies the events of `stream`.
    fn owns(&self, stream: &str) -> bool {
        self.partition.is_none_or(|p| p.owns(stream))
    }

    /// Refuses to resume from a checkpoint written while reading the other backend: its
    /// position means nothing in this store's log.
    async fn claim_checkpoint(&self, client: &impl GenericClient) -> Result<(), ProjectorError> {
        let configured = self.store.backend();
        db::claim_checkpoint_backend(client, &self.key, configured)
            .await?
            .map_err(|checkpoint| ProjectorError::OtherEventStore {
                projection: P::NAME,
                checkpoint,
                configured,
            })
    }

    pub fn projection(&self) -> &P {
        &self.projection
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Where the projection has got to in the configured store's log: when it runs as several
    /// partitions, the checkpoint of the one furthest behind (every event up to it is applied).
    ///
    /// # Errors
    /// When the read-model database cannot be reached; [`ProjectorError::OtherEventStore`]
    /// when the checkpoint was written reading the other backend.
    pub async fn checkpoint(&self) -> Result<Option<Position>, ProjectorError> {
        let mut lowest = None;
        for (i, unit) in self.units().iter().enumerate() {
            let position = unit.unit_checkpoint().await?;
            if i == 0 || position < lowest {
                lowest = position;
            }
        }
        Ok(lowest)
    }

    /// Measures, for the metrics, how far the projection is behind the log (from the
    /// checkpoint of the partition furthest behind) and how many of its streams are parked.
    /// Reads only: it takes no lock a batch holds.
    ///
    /// # Errors
    /// When the read-model database or the event store cannot be reached.
    pub async fn sample_metrics(&self) -> Result<(), ProjectorError> {
        let client = self.pool.get().await?;
        let mut lowest = None;
        for (i, unit) in self.units().iter().enumerate() {
            let position = db::load_checkpoint(&client, &unit.key).await?;
            if i == 0 || position < lowest {
                lowest = position;
            }
        }
        let parked = db::count_parked_streams(&client, P::NAME).await?;
        drop(client);
        let (events, seconds) = event_store::lag_behind(
            self.store.as_ref(),
            P::STREAM_PREFIX,
            lowest,
            crate::metrics::LAG_COUNT_LIMIT,
        )
        .await?;
        let labels = ProjectionLabels {
            projection: P::NAME,
        };
        let metrics = &*METRICS;
        metrics.lag_events.get_or_create(&labels).set(events);
        metrics.lag_seconds.get_or_create(&labels).set(seconds);
        metrics.parked.get_or_create(&labels).set(parked);
        Ok(())
    }

    async fn unit_checkpoint(&self) -> Result<Option<Position>, ProjectorError> {
        let client = self.pool.get().await?;
        self.claim_checkpoint(&client).await?;
        Ok(db::load_checkpoint(&client, &self.key).await?)
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

    /// [`Runtime::apply_batch`] as the holder of `lease`: the batch commits only while the
    /// lease's fencing token is the checkpoint's, even if the lease was lost meanwhile.
    ///
    /// # Errors
    /// [`ProjectorError::LeaseLost`] when another instance has taken the lease over (nothing is
    /// written); as [`Runtime::apply_batch`].
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
        let span = batch_span(&self.key, events);
        let outcome = self
            .commit_batch(fence, expected, events)
            .instrument(span.clone())
            .await;
        if let Ok(outcome) = &outcome {
            record_outcome(&span, outcome);
        }
        outcome
    }

    async fn commit_batch(
        &self,
        fence: Option<i64>,
        expected: Option<Position>,
        events: &[RecordedEvent],
    ) -> Result<BatchOutcome, ProjectorError> {
        if events.is_empty() {
            return Ok(BatchOutcome {
                checkpoint: expected,
                ..BatchOutcome::default()
            });
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let written = self.write_batch(&tx, fence, expected, events).await?;
        tx.commit().await?;
        self.record_committed(&written);
        Ok(written.outcome())
    }

    /// Counts a committed batch in the metrics.
    fn record_committed(&self, batch: &Prepared<P>) {
        let committed = chrono::Utc::now();
        let labels = ProjectionLabels {
            projection: P::NAME,
        };
        let metrics = &*METRICS;
        metrics.events.get_or_create(&labels).inc_by(batch.read);
        metrics
            .dead_letters
            .get_or_create(&labels)
            .inc_by(batch.dead_letters.len() as u64);
        metrics
            .batch_size
            .get_or_create(&labels)
            .observe(batch.read as f64);
        metrics
            .batch_duration
            .get_or_create(&labels)
            .observe(batch.started.elapsed().as_secs_f64());
        crate::metrics::record_visible(
            P::NAME,
            committed,
            batch
                .visible
                .iter()
                .map(|(at, trace)| (*at, trace.as_deref())),
        );
    }

    /// The events of `events` this runtime applies (a partition applies its own streams' and
    /// moves past the others'), and the position of the last of all of them.
    fn owned<'e>(
        &self,
        events: &'e [RecordedEvent],
    ) -> Result<(Position, Cow<'e, [RecordedEvent]>), ProjectorError> {
        let Some(last) = events.last() else {
            return Err(ProjectorError::Corrupt("an empty batch".into()));
        };
        let owned = if self.partition.is_some() {
            events
                .iter()
                .filter(|e| self.owns(&e.stream_id))
                .cloned()
                .collect::<Vec<_>>()
                .into()
        } else {
            events.into()
        };
        Ok((last.position, owned))
    }

    /// Applies `events` (not empty) and moves the checkpoint, in `tx`, under the checkpoint's
    /// lock; the caller commits.
    async fn write_batch(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        fence: Option<i64>,
        expected: Option<Position>,
        events: &[RecordedEvent],
    ) -> Result<Prepared<P>, ProjectorError> {
        let (last, owned) = self.owned(events)?;
        let loaded = self.load(tx, &owned, true, None).await?;
        self.expect(&loaded.checkpoint, expected)?;
        let prepared = self.prepare(loaded, &owned, last)?;
        self.write_prepared(tx, fence, &prepared).await?;
        Ok(prepared)
    }

    /// What applying `events` needs, in one round trip: the checkpoint row (under its lock when
    /// `lock`), the rows (those `carried` holds taken from it) and the parked streams; then the
    /// corrections as of the checkpoint row.
    async fn load(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        events: &[RecordedEvent],
        lock: bool,
        carried: Option<&P::Batch>,
    ) -> Result<Loaded<P>, ProjectorError> {
        let started = Instant::now();
        let streams = streams_of(events);
        let checkpoint = async {
            match lock {
                true => db::lock_checkpoint(tx, &self.key).await,
                false => db::read_checkpoint(tx, &self.key).await,
            }
        };
        let (checkpoint, batch, parked) = futures::try_join!(
            checkpoint.err_into(),
            self.projection.load(tx, events, carried),
            db::parked_streams(tx, P::NAME, &streams).err_into(),
        )?;
        let checkpoint = self.found(checkpoint)?;
        let corrections = self.corrections(tx, checkpoint.corrections_version).await?;
        Ok(Loaded {
            batch,
            parked,
            checkpoint,
            corrections,
            started,
        })
    }

    /// The checkpoint row, which must exist.
    fn found(
        &self,
        checkpoint: Option<db::LockedCheckpoint>,
    ) -> Result<db::LockedCheckpoint, ProjectorError> {
        checkpoint.ok_or_else(|| {
            ProjectorError::Corrupt(format!("the checkpoint row of {} is missing", self.key))
        })
    }

    /// Whether the checkpoint row stands at `expected`.
    fn expect(
        &self,
        checkpoint: &db::LockedCheckpoint,
        expected: Option<Position>,
    ) -> Result<(), ProjectorError> {
        if checkpoint.position != expected {
            return Err(ProjectorError::CheckpointMoved {
                expected,
                found: checkpoint.position,
            });
        }
        Ok(())
    }

    /// Applies `events` (up to `last` in the log) to the loaded batch in memory and seals it:
    /// what a batch will write. An event of a parked stream, or one the projection refuses
    /// (which parks its stream), becomes a dead letter.
    fn prepare(
        &self,
        loaded: Loaded<P>,
        events: &[RecordedEvent],
        last: Position,
    ) -> Result<Prepared<P>, ProjectorError> {
        let Loaded {
            mut batch,
            mut parked,
            checkpoint,
            corrections,
            started,
        } = loaded;
        let projection = &*self.projection;
        let mut applied = 0;
        let mut dead_letters = Vec::new();
        // When each event that becomes visible with this batch was decided, and its trace.
        let mut visible = Vec::with_capacity(events.len());
        for logged in events {
            let event = corrected(&corrections, logged);
            if parked.contains(&event.stream_id) {
                let reason =
                    "parked behind an earlier event of this stream that could not be applied";
                dead_letters.push(DeadLettered {
                    event: event.into_owned(),
                    reason: reason.to_owned(),
                    parks: false,
                });
                continue;
            }
            match projection.apply(&mut batch, &event) {
                Ok(changed) => {
                    applied += usize::from(changed);
                    if let Some(at) = logged.metadata.occurred_at {
                        visible.push((at, logged.metadata.trace_id().map(str::to_owned)));
                    }
                }
                Err(error) => {
                    let error = error.to_string();
                    tracing::warn!(projection = P::NAME, stream = %event.stream_id, revision = event.revision, %error, "dead-lettered an event; parking its stream");
                    parked.insert(event.stream_id.clone());
                    dead_letters.push(DeadLettered {
                        event: event.into_owned(),
                        reason: error,
                        parks: true,
                    });
                }
            }
        }
        let changed = projection.seal(&mut batch)?;
        Ok(Prepared {
            batch,
            dead_letters,
            parked,
            applied,
            changed,
            read: events.len() as u64,
            last,
            visible,
            corrections_version: checkpoint.corrections_version,
            started,
        })
    }

    /// Writes a prepared batch and moves the checkpoint to its last event, in `tx`, which holds
    /// the checkpoint's lock. A shadow's batch notifies no one: its rows are not the ones
    /// readers see.
    ///
    /// # Errors
    /// [`ProjectorError::LeaseLost`] when `fence` is no longer the checkpoint's; database
    /// errors.
    async fn write_prepared(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        fence: Option<i64>,
        prepared: &Prepared<P>,
    ) -> Result<(), ProjectorError> {
        for letter in &prepared.dead_letters {
            db::insert_dead_letter(tx, P::NAME, &letter.event, &letter.reason).await?;
            if letter.parks {
                db::park_stream(tx, P::NAME, &letter.event.stream_id, &letter.reason).await?;
            }
        }
        // The writes pipelined in one go; NOTIFY is delivered at commit.
        let notification = notification::<P>(&self.key, prepared.last, &prepared.changed);
        let notify = async {
            match self.shadow {
                None => db::notify(tx, CHANGES_CHANNEL, &notification).await,
                Some(_) => Ok(()),
            }
        };
        let ((), stored, ()) = futures::try_join!(
            self.projection.write(tx, &prepared.batch),
            db::store_checkpoint(
                tx,
                &self.key,
                Some(prepared.last),
                prepared.applied as i64,
                fence
            )
            .err_into(),
            notify.err_into(),
        )?;
        if !stored {
            return Err(ProjectorError::LeaseLost);
        }
        Ok(())
    }

    /// Loads and applies `events` outside the checkpoint's lock, while `previous` (the batch
    /// just before them in the log) may still be committing: the rows `previous` holds come
    /// from it, the others from the database as committed (`previous` does not write them), in
    /// one snapshot. [`Runtime::commit_prepared`] then writes it if nothing else moved the
    /// checkpoint row meanwhile.
    async fn prepare_ahead(
        &self,
        events: &[RecordedEvent],
        previous: Option<&Prepared<P>>,
    ) -> Result<Prepared<P>, ProjectorError> {
        let (last, owned) = self.owned(events)?;
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut loaded = self
            .load(&tx, &owned, false, previous.map(|p| &p.batch))
            .await?;
        tx.commit().await?;
        drop(client);
        if let Some(previous) = previous {
            loaded.parked.extend(previous.parked.iter().cloned());
            // What comes from `previous` is as of its version: a retry committed since then
            // may have changed those rows or unparked those streams, so the batch is made to
            // be refused at its commit (and that batch applied again under the lock).
            loaded.checkpoint.corrections_version = previous.corrections_version;
        }
        self.prepare(loaded, &owned, last)
    }

    /// Writes a batch from [`Runtime::prepare_ahead`] in a transaction of its own: `None`, and
    /// nothing written, when the checkpoint row changed in another way than by moving to
    /// `expected` (a retry or a correction came between: the batch must be applied again).
    ///
    /// # Errors
    /// [`ProjectorError::CheckpointMoved`], [`ProjectorError::LeaseLost`]; database errors.
    async fn commit_prepared(
        &self,
        fence: Option<i64>,
        expected: Option<Position>,
        prepared: &Prepared<P>,
    ) -> Result<Option<BatchOutcome>, ProjectorError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let current = self.found(db::lock_checkpoint(&tx, &self.key).await?)?;
        self.expect(&current, expected)?;
        if current.corrections_version != prepared.corrections_version {
            return Ok(None);
        }
        self.write_prepared(&tx, fence, prepared).await?;
        tx.commit().await?;
        self.record_committed(prepared);
        Ok(Some(prepared.outcome()))
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
        let events = Arc::new(db::load_corrections(tx, P::NAME).await?);
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
    /// projection with this; no sleeping.
    ///
    /// # Errors
    /// Store or database errors; a moved checkpoint (another instance is writing).
    pub async fn run_once(&self) -> Result<u64, ProjectorError> {
        let mut total = 0;
        for unit in self.units() {
            total += unit.catch_up(None, None, |_| {}).await?;
        }
        Ok(total)
    }

    /// Like [`Runtime::run_once`], reporting progress after each batch, stopping when `lease`
    /// is given and lost, and once past `until` when given (else when the log has no more).
    /// Pages of the catch-up batch size, in a pipeline: while one page commits, the next is
    /// applied in memory (from the rows the committing one left) and the one after is read.
    /// Pages commit one at a time, in log order.
    async fn catch_up(
        &self,
        lease: Option<&Lease>,
        until: Option<Position>,
        mut progress: impl FnMut(Progress),
    ) -> Result<u64, ProjectorError> {
        let started = Instant::now();
        let fence = lease.map(Lease::token);
        let mut checkpoint = self.unit_checkpoint().await?;
        let prefix = P::STREAM_PREFIX;
        let size = self.config.catch_up_batch_size;
        let mut page = self.store.read_all(checkpoint, prefix, size).await?;
        let mut total = 0u64;
        let mut committing: Option<Committing<P>> = None;
        loop {
            if lease.is_some_and(|lease| !lease.is_held()) {
                if let Some(committing) = committing {
                    // Refused by the fence if another instance has taken over; waited for so
                    // that nothing is left committing behind the caller's back.
                    let _ = committing.task.await;
                }
                return Err(ProjectorError::LeaseLost);
            }
            let next_from = page.last().map(|e| e.position);
            let store = self.store.clone();
            let prefetch = (!page.is_empty()).then(|| {
                Spawned::spawn(async move { store.read_all(next_from, prefix, size).await })
            });
            let mut prepared = match page.is_empty() {
                true => None,
                false => Some(
                    self.prepare_ahead(&page, committing.as_ref().map(|c| &*c.prepared))
                        .await,
                ),
            };
            if let Some(done) = committing.take() {
                let outcome = match done.task.await.map_err(|e| {
                    ProjectorError::Corrupt(format!("a batch's commit did not finish: {e}"))
                })?? {
                    Some(outcome) => outcome,
                    None => {
                        // A retry or a correction came between: that page is applied again
                        // under the lock, and this one, applied from its rows, again after it.
                        prepared = None;
                        self.apply_fenced_batch(fence, checkpoint, &done.page)
                            .await?
                    }
                };
                checkpoint = outcome.checkpoint;
                total += done.page.len() as u64;
                progress(Progress {
                    events: total,
                    elapsed: started.elapsed(),
                    position: checkpoint,
                });
                if until.is_some_and(|until| checkpoint >= Some(until)) {
                    break;
                }
            }
            let Some(prefetch) = prefetch else {
                break;
            };
            let prepared = Arc::new(match prepared {
                Some(prepared) => prepared?,
                None => self.prepare_ahead(&page, None).await?,
            });
            let span = batch_span(&self.key, &page);
            let task = Spawned::spawn({
                let (runtime, prepared, expected) = (self.clone(), prepared.clone(), checkpoint);
                async move {
                    let outcome = runtime
                        .commit_prepared(fence, expected, &prepared)
                        .instrument(span.clone())
                        .await;
                    if let Ok(Some(outcome)) = &outcome {
                        record_outcome(&span, outcome);
                    }
                    outcome
                }
            });
            let next = prefetch
                .await
                .map_err(|e| ProjectorError::Corrupt(e.to_string()))
                .and_then(|read| read.map_err(ProjectorError::from));
            let next = match next {
                Ok(next) => next,
                Err(e) => {
                    let _ = task.await;
                    return Err(e);
                }
            };
            committing = Some(Committing {
                page: std::mem::replace(&mut page, next),
                prepared,
                task,
            });
        }
        Ok(total)
    }

    /// Empties the read models and replays the log from its start, reporting progress. Holds
    /// the projection's lease (every partition's) meanwhile, so no live instance writes at the
    /// same time.
    ///
    /// # Errors
    /// [`ProjectorError::LeaseHeld`] when a live instance is running; store or database errors.
    pub async fn rebuild(&self, mut progress: impl FnMut(Progress)) -> Result<u64, ProjectorError> {
        let units = self.units();
        let mut leases = Vec::with_capacity(units.len());
        for unit in &units {
            match Lease::try_acquire(&self.pg_config, &unit.key, self.config.lease_ttl).await? {
                Some(lease) => leases.push(lease),
                None => return Err(ProjectorError::LeaseHeld),
            }
        }
        let mut keys: Vec<&str> = units.iter().map(|u| &*u.key).collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for key in &keys {
            db::ensure_checkpoint(&tx, key).await?;
            db::lock_checkpoint(&tx, key).await?;
        }
        // The projection's own row counts the rebuild for readers, partitioned or not.
        if units.len() > 1 {
            keys.push(P::NAME);
        }
        db::reset_projection(&tx, P::NAME, &keys, P::TABLES).await?;
        for unit in &units {
            unit.claim_checkpoint(&tx).await?;
        }
        tx.commit().await?;
        drop(client);
        let mut total = 0;
        for (unit, lease) in units.iter().zip(&leases) {
            let before = total;
            total += unit
                .catch_up(Some(lease), None, |p| {
                    progress(Progress {
                        events: before + p.events,
                        ..p
                    });
                })
                .await?;
        }
        Ok(total)
    }

    /// [`Runtime::retry_parked_noting`] with nothing noted.
    ///
    /// # Errors
    /// As [`Runtime::retry_parked_noting`].
    pub async fn retry_parked(&self, id: Uuid) -> Result<usize, ProjectorError> {
        self.retry_parked_noting(id, &RepairNote::default()).await
    }

    /// Retries the dead-lettered events of instance `id`'s stream, in order, after a fix (of the
    /// code, or of the stored payload in `projection_dead_letters`). All apply and the stream is
    /// unparked, or nothing changes. Returns how many events were applied; they count in the
    /// checkpoint's `events_applied`. A stored payload that differs from the logged event is
    /// kept as a correction (with `note`), which the projection applies in place of the logged
    /// event from then on, rebuilds included.
    ///
    /// # Errors
    /// [`ProjectorError::NotParked`]; [`ProjectorError::StillFailing`] with the error of the
    /// first event that still fails.
    pub async fn retry_parked_noting(
        &self,
        id: Uuid,
        note: &RepairNote,
    ) -> Result<usize, ProjectorError> {
        let projection = &*self.projection;
        let stream = format!("{}{id}", P::STREAM_PREFIX);
        // The log as written, to tell an operator's edits from untouched letters.
        let logged = event_store::read_whole_stream(self.store.as_ref(), &stream).await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Serialises with the batches of the live instance holding the stream's partition.
        let units = self.units();
        let unit = units.iter().find(|u| u.owns(&stream)).unwrap_or(self);
        db::ensure_checkpoint(&tx, &unit.key).await?;
        db::lock_checkpoint(&tx, &unit.key).await?;
        let letters = db::load_dead_letters(&tx, P::NAME, &stream).await?;
        if letters.is_empty() {
            return Err(ProjectorError::NotParked(id));
        }
        let events: Vec<RecordedEvent> = letters.iter().map(|l| l.event.clone()).collect();
        let mut batch = projection.load(&tx, &events, None).await?;
        let mut applied = 0;
        for DeadLetter { event, .. } in &letters {
            match projection.apply(&mut batch, event) {
                Ok(false) => {}
                Ok(true) => applied += 1,
                Err(error) => {
                    return Err(ProjectorError::StillFailing {
                        revision: event.revision,
                        error: Box::new(error),
                    });
                }
            }
        }
        projection.seal(&mut batch)?;
        projection.write(&tx, &batch).await?;
        for letter in &letters {
            let original = logged.iter().find(|e| e.id == letter.event.id);
            if let Some(correction) = Correction::of(&letter.event, original) {
                db::upsert_correction(&tx, P::NAME, letter, &correction, note).await?;
            }
        }
        let keys: Vec<&str> = units.iter().map(|u| &*u.key).collect();
        db::record_retry(&tx, &unit.key, &keys, applied as i64).await?;
        db::unpark_stream(&tx, P::NAME, &stream).await?;
        let checkpoint = db::load_checkpoint(&tx, &unit.key).await?;
        if let Some(position) = checkpoint {
            // Marked as a repair: the instance's last applied event lies before the checkpoint,
            // so readers following positions read it again by id.
            let mut payload: serde_json::Value =
                serde_json::from_str(&notification::<P>(&unit.key, position, &[id]))
                    .map_err(|e| ProjectorError::Corrupt(e.to_string()))?;
            payload["repaired"] = true.into();
            db::notify(&tx, CHANGES_CHANNEL, &payload.to_string()).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// The live loop: for each partition (the whole projection when it runs as one), stand by
    /// until this instance holds its lease, then follow the log in batches until `shutdown`
    /// resolves. Each partition nobody holds is claimed by the first instance to try, and a
    /// dead or paused holder's partitions are taken over once their lease expires. Errors are
    /// logged and retried; a lost lease stops that partition's work at once (a batch under way
    /// rolls back, and one that reaches its commit is refused by the fence) and the instance
    /// stands by for it again.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
        let units = self.units();
        futures::future::join_all(units.iter().map(|unit| unit.run_unit(shutdown.clone()))).await;
    }

    async fn run_unit(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let (ttl, poll) = (self.config.lease_ttl, self.config.standby_poll);
        let key = &*self.key;
        loop {
            let lease = tokio::select! {
                () = &mut shutdown => return,
                lease = Lease::acquire(&self.pg_config, key, ttl, poll) => lease,
            };
            tracing::info!(
                projection = key,
                token = lease.token(),
                "active: applying events"
            );
            tokio::select! {
                () = &mut shutdown => return,
                () = lease.lost() => tracing::warn!(projection = key, "lost the lease; standing by"),
                result = self.follow(&lease) => {
                    if let Err(e) = result {
                        tracing::warn!(projection = key, error = %e, "projection interrupted; resuming");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }

    /// Follows the log from the checkpoint while the lease is held: first catches up with the
    /// backlog in large pages, then takes live events in batches bounded by size and wait.
    async fn follow(&self, lease: &Lease) -> Result<(), ProjectorError> {
        self.catch_up(Some(lease), None, |_| {}).await?;
        let mut checkpoint = self.unit_checkpoint().await?;
        let mut subscription = self
            .store
            .subscribe_all(checkpoint, P::STREAM_PREFIX)
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
                projection = P::NAME,
                applied = outcome.applied,
                dead = outcome.dead_lettered,
                "batch committed"
            );
            checkpoint = outcome.checkpoint;
        }
    }
}

/// The NOTIFY payload of the checkpoint row `key` (the projection's name, or one of its
/// partitions' keys); PostgreSQL refuses payloads of 8000 bytes or more.
/// The most traces one batch span links to (OpenTelemetry's default limit of links per span).
const MAX_BATCH_LINKS: usize = 128;

/// The span of one batch: a trace of its own, since one batch serves many traces, linked to the
/// trace context of every event in it that carries one (the command that appended it).
fn batch_span(key: &str, events: &[RecordedEvent]) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "projector.batch",
        projection = %key,
        events = events.len(),
        first = ?events.first().map(|e| e.position),
        last = ?events.last().map(|e| e.position),
        applied = tracing::field::Empty,
        dead_lettered = tracing::field::Empty,
    );
    let mut linked = HashSet::new();
    for event in events {
        if linked.len() == MAX_BATCH_LINKS {
            break;
        }
        let Some(traceparent) = &event.metadata.traceparent else {
            continue;
        };
        if linked.insert(traceparent.as_str()) {
            let context = TraceContext::new(traceparent.clone(), event.metadata.tracestate.clone());
            service_kit::trace::link(&span, &context);
        }
    }
    span
}

fn record_outcome(span: &tracing::Span, outcome: &BatchOutcome) {
    span.record("applied", outcome.applied);
    span.record("dead_lettered", outcome.dead_lettered);
}

/// The distinct streams of `events`, sorted.
fn streams_of(events: &[RecordedEvent]) -> Vec<&str> {
    let mut streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    streams
}

fn notification<P: Projection>(key: &str, position: Position, changed: &[Uuid]) -> String {
    let mut payload = serde_json::Map::new();
    payload.insert("projection".into(), key.into());
    payload.insert("position".into(), position.to_string().into());
    payload.insert(P::CHANGED_KEY.into(), serde_json::json!(changed));
    let full = serde_json::Value::Object(payload.clone()).to_string();
    if full.len() < 7900 {
        full
    } else {
        payload.insert(P::CHANGED_KEY.into(), serde_json::Value::Null);
        serde_json::Value::Object(payload).to_string()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Projector};
    use domain::OrderCommand;
    use event_store::{RecordedEvent, StoreOptions};
    use test_support::log::{authorize, new_order, Log};
    use uuid::Uuid;

    /// A projector on a fresh database whose log holds one order placed, followed by
    /// `then`; returns the projector and the log once all of it is visible.
    async fn one_order(then: Vec<OrderCommand>) -> (Projector, Vec<RecordedEvent>) {
        let url = test_support::fresh_database().await;
        let projector = Projector::connect(Config::local(&url)).await.unwrap();
        let store = event_store::connect(&url, &StoreOptions { pool_size: 2 })
            .await
            .unwrap();
        let id = Uuid::new_v4();
        let mut commands = vec![OrderCommand::PlaceOrder(new_order(
            id,
            "cust-1",
            &[("A", 1, 100)],
        ))];
        commands.extend(then);
        let events = Log::new(store.as_ref()).order(id, commands).await.events();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = store.read_all(None, "order-", 10).await.unwrap();
            if log.len() == events || std::time::Instant::now() > deadline {
                assert_eq!(log.len(), events, "the order's events are in the log");
                return (projector, log);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// What a retry does to the checkpoint rows (`db::record_retry`).
    async fn a_retry_commits(projector: &Projector) {
        let mut client = projector.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let key = <crate::OrderProjection as crate::projection::Projection>::NAME;
        crate::db::record_retry(&tx, key, &[key], 0).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// A catch-up batch is applied outside the checkpoint's lock while the one before it
    /// commits; a retry (which moves the corrections' version, see `db::record_retry`) that
    /// commits in between must not be overwritten by it: the batch is refused, nothing is
    /// written, and the next run applies it.
    #[tokio::test]
    async fn a_batch_applied_before_a_retry_committed_is_not_written_after_it() {
        let (projector, page) = one_order(vec![]).await;
        let prepared = projector.prepare_ahead(&page, None).await.unwrap();
        a_retry_commits(&projector).await;
        let client = projector.pool().get().await.unwrap();
        let rows = |sql: &'static str| {
            let client = &client;
            async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
        };
        assert!(
            projector
                .commit_prepared(None, None, &prepared)
                .await
                .unwrap()
                .is_none(),
            "a batch applied before the retry is refused"
        );
        assert_eq!(rows("select count(*) from order_status").await, 0);
        assert_eq!(projector.checkpoint().await.unwrap(), None);

        assert_eq!(projector.run_once().await.unwrap(), 1);
        assert_eq!(rows("select count(*) from order_status").await, 1);
        assert_eq!(
            projector.checkpoint().await.unwrap(),
            Some(page[0].position)
        );
    }

    /// The same when the retry commits after the batch before it: rows carried from that
    /// batch are as of before the retry.
    #[tokio::test]
    async fn a_batch_carrying_rows_from_before_a_retry_committed_is_not_written_after_it() {
        let (projector, log) = one_order(vec![authorize("pay-1", 100)]).await;
        let (first, second) = (&log[..1], &log[1..]);
        let before = projector.prepare_ahead(first, None).await.unwrap();
        assert!(projector
            .commit_prepared(None, None, &before)
            .await
            .unwrap()
            .is_some());
        a_retry_commits(&projector).await;
        let after = projector
            .prepare_ahead(second, Some(&before))
            .await
            .unwrap();
        assert!(
            projector
                .commit_prepared(None, Some(first[0].position), &after)
                .await
                .unwrap()
                .is_none(),
            "a batch carrying rows from before the retry is refused"
        );
        assert_eq!(
            projector.checkpoint().await.unwrap(),
            Some(first[0].position)
        );
    }
}

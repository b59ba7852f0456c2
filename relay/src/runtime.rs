//! The relay runtime, written once for every workflow: follow the log from the checkpoint,
//! turn each event into its messages (knowing the instance's state before and after it), publish
//! them, and move the checkpoint once JetStream has acknowledged them, under the fenced lease.

use crate::contract::{messages, Contract, Outgoing};
use crate::db::{self, DeadLetter};
use crate::metrics::{RelayLabels, METRICS};
use crate::publisher::{batched, publish_all};
use crate::{Config, RelayError};
use deadpool_postgres::Pool;
use domain::EventContract;
use event_store::{Direction, EventStore, Position, RecordedEvent};
use service_kit::lease::FencedLease;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The states of recently seen instances, each as of a revision, so that an event's state
/// before it is usually at hand; a miss rebuilds the instance from its stream. Bounded: the
/// oldest entries go first.
struct StateCache<W: Contract> {
    states: HashMap<String, (u64, W::State)>,
    order: VecDeque<String>,
    capacity: usize,
}

impl<W: Contract> StateCache<W> {
    fn new(capacity: usize) -> Self {
        Self {
            states: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// The state of `stream` just before revision `revision`, if that is what is cached; taken
    /// out (the entry stays, as of no revision, until [`Self::put`] brings the next state).
    fn take(&mut self, stream: &str, revision: u64) -> Option<W::State> {
        match self.states.get_mut(stream) {
            Some((at, state)) if at.checked_add(1) == Some(revision) => {
                *at = u64::MAX;
                Some(std::mem::take(state))
            }
            _ => None,
        }
    }

    fn put(&mut self, stream: &str, revision: u64, state: W::State) {
        if let Some(entry) = self.states.get_mut(stream) {
            *entry = (revision, state);
            return;
        }
        self.states.insert(stream.to_owned(), (revision, state));
        self.order.push_back(stream.to_owned());
        while self.states.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.states.remove(&old);
                }
                None => break,
            }
        }
    }
}

/// One workflow's relay.
pub struct Relay<W: Contract> {
    name: String,
    store: Arc<dyn EventStore>,
    pool: Pool,
    pg_config: tokio_postgres::Config,
    /// Publishes each batch (a clone of it runs as the batch's task).
    publisher: BatchPublisher,
    config: Config,
    _workflow: PhantomData<fn() -> W>,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub checkpoint: Option<Position>,
    pub published: usize,
    pub dead_letters: Vec<DeadLetter>,
}

/// A batch translated: its messages, the events that cannot be read, and its last position.
#[derive(Default)]
struct Translated {
    outgoing: Vec<Outgoing>,
    dead_letters: Vec<DeadLetter>,
    last: Option<Position>,
}

/// Publishes a translated batch and moves the checkpoint; owns what it needs, so that it runs
/// as a task of its own while the next batch is read and translated.
#[derive(Clone)]
struct BatchPublisher {
    jetstream: async_nats::jetstream::Context,
    pool: Pool,
    name: String,
    backend: &'static str,
    backoff: crate::publisher::Backoff,
    /// Whether messages go out in fast-ingest batches (see [`crate::publisher`]).
    batched: Arc<AtomicBool>,
    labels: RelayLabels,
}

impl BatchPublisher {
    /// Publishes the batch's messages, then moves the checkpoint under `token` (the lease's
    /// fencing token). A checkpoint that no longer moves means the lease was lost.
    async fn publish(self, batch: Translated, token: i64) -> Result<BatchOutcome, RelayError> {
        let Translated {
            outgoing,
            mut dead_letters,
            last,
        } = batch;
        let total = outgoing.len();
        let refused = publish_all(
            &self.jetstream,
            outgoing,
            self.backoff,
            &self.name,
            &self.batched,
        )
        .await;
        let published = total - refused.len();
        dead_letters.extend(refused);
        if let Some(position) = last {
            let mut client = self.pool.get().await?;
            let moved = db::advance(
                &mut client,
                &self.name,
                token,
                self.backend,
                position,
                published as i64,
                &dead_letters,
            )
            .await?;
            if !moved {
                return Err(RelayError::LeaseLost);
            }
            METRICS
                .published
                .get_or_create(&self.labels)
                .inc_by(published as u64);
            METRICS
                .dead_letters
                .get_or_create(&self.labels)
                .inc_by(dead_letters.len() as u64);
        }
        Ok(BatchOutcome {
            checkpoint: last,
            published,
            dead_letters,
        })
    }
}

/// A task that is stopped when its handle is dropped (the relay stopping or losing its lease
/// while a batch is being published).
struct Publishing(tokio::task::JoinHandle<Result<BatchOutcome, RelayError>>);

impl Drop for Publishing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Publishing {
    async fn finish(mut self) -> Result<BatchOutcome, RelayError> {
        outcome((&mut self.0).await)
    }
}

/// A publishing task's outcome; its panic goes on.
fn outcome(
    joined: Result<Result<BatchOutcome, RelayError>, tokio::task::JoinError>,
) -> Result<BatchOutcome, RelayError> {
    match joined {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(RelayError::Stopped),
    }
}

impl<W: Contract> Relay<W> {
    /// The name of this workflow's relay: its checkpoint row and its lease (`relay-order`).
    pub fn name() -> String {
        format!("relay-{}", W::NAME)
    }

    /// Prepares the relay's tables in the read-model database.
    ///
    /// # Errors
    /// When the database cannot be reached or a migration fails.
    pub async fn start(
        config: Config,
        store: Arc<dyn EventStore>,
        jetstream: async_nats::jetstream::Context,
    ) -> Result<Self, RelayError> {
        let (pool, pg_config) =
            service_kit::postgres::build_pool(config.read_model_url.expose(), config.pool_size)?;
        let publisher = BatchPublisher {
            batched: Arc::new(AtomicBool::new(
                batched(&jetstream, &config.stream.name).await,
            )),
            jetstream,
            pool: pool.clone(),
            name: Self::name(),
            backend: store.backend(),
            backoff: config.backoff,
            labels: Self::labels(),
        };
        let relay = Self {
            name: Self::name(),
            store,
            pool,
            pg_config,
            publisher,
            config,
            _workflow: PhantomData,
        };
        let mut client = relay.pool.get().await?;
        service_kit::postgres::apply_migrations(&mut client, "relay_migrations", db::MIGRATIONS)
            .await?;
        service_kit::lease::ensure_table(&**client).await?;
        db::ensure_checkpoint(&**client, &relay.name, W::STREAM_PREFIX).await?;
        Ok(relay)
    }

    fn labels() -> RelayLabels {
        RelayLabels { workflow: W::NAME }
    }

    /// Measures, for the metrics, how far the relay is behind the log.
    ///
    /// # Errors
    /// When the database or the event store cannot be reached.
    pub async fn sample_metrics(&self) -> Result<(), RelayError> {
        let checkpoint = self.checkpoint().await?;
        let (events, seconds) = event_store::lag_behind(
            self.store.as_ref(),
            W::STREAM_PREFIX,
            checkpoint,
            crate::metrics::LAG_COUNT_LIMIT,
        )
        .await?;
        let labels = Self::labels();
        METRICS.lag_events.get_or_create(&labels).set(events);
        METRICS.lag_seconds.get_or_create(&labels).set(seconds);
        Ok(())
    }

    /// Where the relay has got to in the configured store's log.
    ///
    /// # Errors
    /// [`RelayError::OtherEventStore`] when the checkpoint was written reading the other
    /// backend; database errors.
    pub async fn checkpoint(&self) -> Result<Option<Position>, RelayError> {
        let client = self.pool.get().await?;
        let (backend, position) = db::load_checkpoint(&**client, &self.name).await?;
        let configured = self.store.backend();
        if let Some(backend) = backend.filter(|b| b != configured) {
            return Err(RelayError::OtherEventStore {
                relay: self.name.clone(),
                checkpoint: backend,
                configured,
            });
        }
        position
            .map(|p| {
                p.parse().map_err(|_| RelayError::BadCheckpoint {
                    relay: self.name.clone(),
                    position: p,
                })
            })
            .transpose()
    }

    /// Runs until `shutdown` resolves: stands by until the lease is ours, then follows the log;
    /// a lost lease or a failure sends it back to standing by.
    ///
    /// # Errors
    /// None so far: failures are logged and retried.
    pub async fn run(
        &self,
        owner: &str,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RelayError> {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let lease = tokio::select! {
                lease = FencedLease::acquire(&self.pg_config, &self.name, owner, self.config.lease_ttl, self.config.standby_poll) => lease,
                () = &mut shutdown => return Ok(()),
            };
            tracing::info!(relay = %self.name, token = lease.token(), "active");
            let outcome = tokio::select! {
                outcome = self.follow(&lease) => Some(outcome),
                () = lease.lost() => Some(Err(RelayError::LeaseLost)),
                () = &mut shutdown => None,
            };
            let Some(outcome) = outcome else {
                // A standby takes over at once instead of waiting for the expiry.
                lease.release(self.config.lease_ttl).await;
                return Ok(());
            };
            drop(lease);
            if let Err(e) = outcome {
                METRICS.failures.get_or_create(&Self::labels()).inc();
                tracing::warn!(relay = %self.name, error = %e, source = ?std::error::Error::source(&e), "relay interrupted; standing by again");
                tokio::time::sleep(self.config.backoff.delay(failures)).await;
                failures = failures.saturating_add(1);
            }
        }
    }

    /// Follows the log while `lease` is held: batches of what the subscription has buffered,
    /// up to the batch size. A batch is published (and its checkpoint moved) by a task of its
    /// own while the next one is read and translated; it starts once the one before it is done,
    /// so batches reach the broker in order.
    async fn follow(&self, lease: &FencedLease) -> Result<(), RelayError> {
        let checkpoint = self.checkpoint().await?;
        let mut subscription = self
            .store
            .subscribe_all(checkpoint, W::STREAM_PREFIX)
            .await?;
        let mut cache = StateCache::<W>::new(self.config.state_cache);
        let mut publishing: Option<Publishing> = None;
        // The next batch, read and translated while the one before it is out.
        let mut next = Translated::default();
        let mut gathered = 0;
        loop {
            let room = self.config.batch_size.saturating_sub(gathered);
            let event = match publishing.as_mut() {
                Some(previous) if room > 0 => tokio::select! {
                    event = subscription.next() => Some(event),
                    joined = &mut previous.0 => {
                        publishing = None;
                        outcome(joined)?;
                        None
                    }
                },
                Some(_) => {
                    if let Some(previous) = publishing.take() {
                        previous.finish().await?;
                    }
                    None
                }
                None if gathered == 0 => Some(subscription.next().await),
                None => None,
            };
            if let Some(event) = event {
                let mut events = vec![event.ok_or(RelayError::Stopped)??];
                while events.len() < room {
                    match subscription.try_next() {
                        Some(event) => events.push(event?),
                        None => break,
                    }
                }
                self.translate_into(&mut cache, &events, &mut next).await?;
                gathered += events.len();
                continue;
            }
            if publishing.is_none() && gathered > 0 {
                let task = self
                    .publisher
                    .clone()
                    .publish(std::mem::take(&mut next), lease.token());
                publishing = Some(Publishing(tokio::spawn(task)));
                gathered = 0;
            }
        }
    }

    /// Publishes every event available now, without a lease (tools and tests); returns the
    /// outcome of each batch.
    ///
    /// # Errors
    /// Store, database or broker errors.
    pub async fn run_once(&self) -> Result<Vec<BatchOutcome>, RelayError> {
        let mut cache = StateCache::<W>::new(self.config.state_cache);
        let mut checkpoint = self.checkpoint().await?;
        let mut outcomes = Vec::new();
        loop {
            let batch = self
                .store
                .read_all(checkpoint, W::STREAM_PREFIX, self.config.batch_size)
                .await?;
            if batch.is_empty() {
                return Ok(outcomes);
            }
            // Without a lease (tools, tests) the relay takes a one-off tenure.
            let token = self.token_without_lease(&self.pool.get().await?).await?;
            let outcome = self.relay_batch(&mut cache, token, &batch).await?;
            checkpoint = outcome.checkpoint;
            outcomes.push(outcome);
        }
    }

    /// Translates a batch, then publishes it and moves the checkpoint.
    async fn relay_batch(
        &self,
        cache: &mut StateCache<W>,
        token: i64,
        batch: &[RecordedEvent],
    ) -> Result<BatchOutcome, RelayError> {
        let mut translated = Translated::default();
        self.translate_into(cache, batch, &mut translated).await?;
        self.publisher.clone().publish(translated, token).await
    }

    /// Adds the messages of `events` to `batch`, and the events that cannot be read.
    async fn translate_into(
        &self,
        cache: &mut StateCache<W>,
        events: &[RecordedEvent],
        batch: &mut Translated,
    ) -> Result<(), RelayError> {
        for event in events {
            match self.translate(cache, event).await? {
                Ok(messages) => batch.outgoing.extend(messages),
                Err(reason) => {
                    tracing::warn!(relay = %self.name, stream = %event.stream_id, revision = event.revision, %reason, "an event does not decode; dead-lettered");
                    batch.dead_letters.push(DeadLetter {
                        event_id: event.id,
                        stream_id: event.stream_id.clone(),
                        revision: event.revision,
                        subject: String::new(),
                        message_id: event.id.to_string(),
                        reason,
                    });
                }
            }
            batch.last = Some(event.position);
        }
        Ok(())
    }

    /// The current token of the relay's lease, for writes made without holding it; a lease row
    /// is created when there is none.
    async fn token_without_lease(
        &self,
        client: &deadpool_postgres::Object,
    ) -> Result<i64, RelayError> {
        let row = client
            .query_one(
                "insert into service_leases (name, owner, token, expires_at)
                 values ($1, 'tool', 0, '-infinity')
                 on conflict (name) do update set name = excluded.name
                 returning token",
                &[&self.name],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The messages of one event, or why it cannot be read.
    async fn translate(
        &self,
        cache: &mut StateCache<W>,
        event: &RecordedEvent,
    ) -> Result<Result<Vec<Outgoing>, String>, RelayError> {
        if let Some(reason) = &event.malformed {
            return Ok(Err(reason.clone()));
        }
        let decoded = match W::Event::decode(&event.event_type, event.schema_version, &event.data) {
            Ok(decoded) => decoded,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let before = match cache.take(&event.stream_id, event.revision) {
            Some(state) => state,
            None => self.rebuild(&event.stream_id, event.revision).await?,
        };
        let was = W::pending_actions(&before);
        let after = W::evolve(before, &decoded);
        let out = messages::<W>(event, &decoded, &was, &after);
        cache.put(&event.stream_id, event.revision, after);
        Ok(Ok(out))
    }

    /// The state of `stream` before revision `revision`, from its events.
    async fn rebuild(&self, stream: &str, revision: u64) -> Result<W::State, RelayError> {
        let mut state = W::State::default();
        if revision == 0 {
            return Ok(state);
        }
        let events = self
            .store
            .read_stream(stream, Direction::Forwards, Some(0), revision as usize)
            .await?;
        for e in events.iter().filter(|e| e.revision < revision) {
            if e.malformed.is_some() {
                continue;
            }
            if let Ok(decoded) = W::Event::decode(&e.event_type, e.schema_version, &e.data) {
                state = W::evolve(state, &decoded);
            }
        }
        Ok(state)
    }
}

//! The PostgreSQL backend: the embedded default and the test suite's store.
//!
//! Global order is `(tx_id, seq)`: the appending transaction's id, then an identity column.
//! A plain sequence is not a safe order, because transactions commit out of sequence order and
//! a reader that moves past a gap skips the late event forever. Readers here only see rows whose
//! transaction is older than the oldest transaction still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`); every later commit then sorts after what was read.
//! An append is one `insert ... select` statement, so it needs one round trip and no lock beyond
//! the unique indexes.
//!
//! Group commit (a setting, off by default): single-event appends made at the same time to any
//! streams share one `insert` statement, so one transaction and one commit (see
//! [`GroupCommit`]). Each row keeps its own expected-revision check (`on conflict do nothing` on
//! the `(stream, revision)` key and the `exists` check), so a refused append leaves the rest of
//! its group written and is explained alone afterwards, exactly as a single one. Appends of
//! several events go alone.
//!
//! An append can be guarded by another stream ([`EventStore::append_guarded`]): the same
//! statement writes it only while that stream holds no event, so the check costs no round trip.
//!
//! Wake-ups: a `NOTIFY` inside every append transaction would serialise all commits on
//! PostgreSQL's notification queue lock (measured: 16 writers fell from ~14k to ~4k appends/s).
//! Instead each store sends one coalesced `NOTIFY es_events` after its appends commit, from a
//! background task; subscribers also re-check on a short timer, which covers writers that do
//! not notify.

use crate::{
    AppendResult, CurrentRevision, Direction, EventStore, ExpectedRevision, GuardedAppend,
    NewEvent, Position, RecordedEvent, StoreError, Subscription,
};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use service_kit::postgres::{self, apply_migrations, build_pool_from, PoolSetupError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_postgres::{error::SqlState, Row};
use uuid::Uuid;

/// The channel notified (coalesced, after commit) when appends have been written.
pub const NOTIFY_CHANNEL: &str = "es_events";

const MIGRATIONS: &[(&str, &str)] =
    &[("0001_events", include_str!("../migrations/0001_events.sql"))];

/// How often an idle subscription looks for events that arrived without a notification.
const IDLE_RECHECK: Duration = Duration::from_millis(500);

const COLUMNS: &str = "stream_id, revision, tx_id, seq, event_id, event_type, schema_version, \
                       data, metadata, recorded_at";

/// How the PostgreSQL backend commits single-event appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupCommit {
    /// Every append is its own statement and commit.
    Off,
    /// At most this many groups are written at once; appends that arrive meanwhile wait and
    /// form the next group, written in one statement and one commit. An append alone on an idle
    /// store is written at once.
    On { groups_in_flight: usize },
}

/// Off by default: on this project's machine it lowered the commands' rate (see
/// `docs/performance.md`, "Command path from outside").
impl Default for GroupCommit {
    fn default() -> Self {
        Self::Off
    }
}

impl GroupCommit {
    /// On, with the default number of groups in flight.
    pub const ON: Self = Self::On {
        groups_in_flight: 2,
    };
}

impl std::str::FromStr for GroupCommit {
    type Err = String;

    /// `off`, `on` (the default number of groups in flight), or a number of groups in flight.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "on" => Ok(Self::ON),
            n => match n.parse() {
                Ok(groups_in_flight) if groups_in_flight > 0 => Ok(Self::On { groups_in_flight }),
                _ => Err(format!(
                    "'{s}' is neither on, off nor a number of groups in flight"
                )),
            },
        }
    }
}

/// The most appends one group carries.
const MAX_GROUP: usize = 128;

/// The event store on PostgreSQL.
#[derive(Clone)]
pub struct PgEventStore {
    pool: Pool,
    config: tokio_postgres::Config,
    notifier: Arc<Notifier>,
    groups: Option<Arc<Groups>>,
}

/// A single-event append waiting for its group.
struct Queued {
    stream: String,
    last: i64,
    /// Written only while this stream holds no event.
    guard: Option<String>,
    event: NewEvent,
    metadata: serde_json::Value,
    done: oneshot::Sender<Grouped>,
}

/// What became of an append in its group.
enum Grouped {
    /// Written: its revision and position.
    Written(u64, Position),
    /// Not written: the stream was not at the expected revision, the event was stored
    /// already, or the guard stream holds events; explained like a single refused append.
    Refused,
    /// The group's statement failed as a whole: the append is made again alone, which gives it
    /// its own answer (an already-stored one if the statement did commit after all).
    Alone,
}

/// Forms groups from the appends queued while earlier groups are being written.
struct Groups {
    queue: mpsc::UnboundedSender<Queued>,
    task: tokio::task::JoinHandle<()>,
}

impl Groups {
    fn start(pool: Pool, groups_in_flight: usize) -> Self {
        let (queue, mut arrivals) = mpsc::unbounded_channel::<Queued>();
        let in_flight = Arc::new(Semaphore::new(groups_in_flight.max(1)));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = arrivals.recv().await else {
                    return;
                };
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match arrivals.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let pool = pool.clone();
                tokio::spawn(async move {
                    write_group(&pool, group).await;
                    drop(permit);
                });
            }
        });
        Self { queue, task }
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes a group in one statement and tells each append what became of it. Rows go in stream
/// order, so two groups waiting on each other's keys take them in the same order (no deadlock).
async fn write_group(pool: &Pool, mut group: Vec<Queued>) {
    group.sort_by(|a, b| a.stream.cmp(&b.stream));
    let mut written: Vec<Option<(u64, Position)>> = vec![None; group.len()];
    let failed = match insert_group(pool, &group).await {
        Ok(rows) => {
            for row in &rows {
                let stream: &str = row.get("stream_id");
                let revision = row.get::<_, i64>("revision");
                let id: Uuid = row.get("event_id");
                let slot = group.iter().enumerate().position(|(i, q)| {
                    written[i].is_none()
                        && q.stream == stream
                        && q.last + 1 == revision
                        && q.event.id == id
                });
                if let Some(i) = slot {
                    written[i] = Some((revision as u64, row_position(row)));
                }
            }
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, size = group.len(), "group append failed; appending alone");
            true
        }
    };
    for (queued, written) in group.into_iter().zip(written) {
        let answer = match written {
            _ if failed => Grouped::Alone,
            Some((revision, position)) => Grouped::Written(revision, position),
            None => Grouped::Refused,
        };
        let _ = queued.done.send(answer);
    }
}

async fn insert_group(pool: &Pool, group: &[Queued]) -> Result<Vec<Row>, StoreError> {
    let streams: Vec<&str> = group.iter().map(|q| q.stream.as_str()).collect();
    let lasts: Vec<i64> = group.iter().map(|q| q.last).collect();
    let guards: Vec<Option<&str>> = group.iter().map(|q| q.guard.as_deref()).collect();
    let ids: Vec<Uuid> = group.iter().map(|q| q.event.id).collect();
    let types: Vec<&str> = group.iter().map(|q| q.event.event_type.as_str()).collect();
    let versions: Vec<i32> = group
        .iter()
        .map(|q| q.event.schema_version as i32)
        .collect();
    let data: Vec<&serde_json::Value> = group.iter().map(|q| &q.event.data).collect();
    let metadata: Vec<&serde_json::Value> = group.iter().map(|q| &q.metadata).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
             select e.stream, e.last + 1, e.id, e.typ, e.ver, e.data, e.meta
             from unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[], $8::text[])
                  as e(stream, last, id, typ, ver, data, meta, guard)
             where (e.last = -1
                    or exists (select 1 from es_events x where x.stream_id = e.stream and x.revision = e.last))
               and (e.guard is null
                    or not exists (select 1 from es_events g where g.stream_id = e.guard))
             on conflict (stream_id, revision) do nothing
             returning stream_id, revision, event_id, tx_id, seq",
        )
        .await?;
    Ok(client
        .query(
            &stmt,
            &[
                &streams, &lasts, &ids, &types, &versions, &data, &metadata, &guards,
            ],
        )
        .await?)
}

/// Sends one `NOTIFY` for any number of appends that committed since the last one.
struct Notifier {
    pending: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Notifier {
    fn start(pool: Pool) -> Self {
        let pending = Arc::new(Notify::new());
        let wake = pending.clone();
        let task = tokio::spawn(async move {
            loop {
                wake.notified().await;
                if let Ok(client) = pool.get().await {
                    let _ = client
                        .batch_execute(&format!("notify {NOTIFY_CHANNEL}"))
                        .await;
                }
            }
        });
        Self { pending, task }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Maps a driver error: an unreachable database is `Unavailable`, the rest `Backend`.
pub fn map_pg_error(e: &tokio_postgres::Error) -> StoreError {
    if postgres::is_unavailable(e) {
        return StoreError::Unavailable(e.to_string());
    }
    StoreError::Backend(
        e.as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_else(|| e.to_string()),
    )
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        map_pg_error(&e)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        map_pool_error(e)
    }
}

/// Maps a pool error: every failure to get a connection is `Unavailable`.
pub fn map_pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match postgres::pool_error_cause(&e) {
        Some(cause) => map_pg_error(cause),
        None => StoreError::Unavailable(e.to_string()),
    }
}

impl From<PoolSetupError> for StoreError {
    fn from(e: PoolSetupError) -> Self {
        StoreError::InvalidUrl(e.to_string())
    }
}

/// A page of the log: the events after position (`$1`, `$2`) of the streams whose names start
/// with `$3`, at most `$4`, in log order; only what every transaction before them committed.
/// The prefix is compared with `left()`, which no index serves: `starts_with` under the `C`
/// collation is a range of the (stream, revision) index, which the planner would read whole
/// and sort instead of following the primary key.
fn read_all_statement() -> String {
    format!(
        "select {COLUMNS} from es_events
         where (tx_id, seq) > ($1, $2)
           and tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
           and left(stream_id, length($3)) = $3
         order by tx_id, seq limit $4"
    )
}

/// The parameters of [`read_all_statement`] for a page of up to `max` events after `after`.
fn page_bounds(after: Option<Position>, max: usize) -> ((i64, i64), i64) {
    let after = after.unwrap_or_default();
    (
        (to_i64(after.commit), to_i64(after.prepare)),
        max.min(100_000) as i64,
    )
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row_position(row: &Row) -> Position {
    Position::new(
        row.get::<_, i64>("tx_id") as u64,
        row.get::<_, i64>("seq") as u64,
    )
}

/// Decodes a row; metadata that does not decode makes the event malformed, not the read.
fn row_to_event(row: &Row) -> RecordedEvent {
    let (metadata, malformed) =
        crate::decode_metadata(&row.get::<_, serde_json::Value>("metadata"));
    RecordedEvent {
        stream_id: row.get("stream_id"),
        revision: row.get::<_, i64>("revision") as u64,
        position: row_position(row),
        id: row.get("event_id"),
        event_type: row.get("event_type"),
        schema_version: row.get::<_, i32>("schema_version") as u32,
        data: row.get("data"),
        metadata,
        recorded_at: row.get("recorded_at"),
        malformed,
    }
}

/// Refuses a log whose transaction ids are ahead of this cluster's counter. A logical copy of
/// `es_events` (dump and restore, logical replication) keeps the ids of the cluster it came
/// from; readers here see only ids below the oldest running transaction, so such a history is
/// invisible and every new event sorts before it, behind the checkpoints of its readers.
async fn check_log_belongs_to_cluster(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    let row = client
        .query_one(
            "select (select max(tx_id) from es_events) as newest,
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint as next",
            &[],
        )
        .await?;
    let next = row.get::<_, i64>("next") as u64;
    match row.get::<_, Option<i64>>("newest") {
        Some(newest) if newest as u64 >= next => Err(StoreError::LogFromAnotherCluster {
            newest: newest as u64,
            next,
        }),
        _ => Ok(()),
    }
}

impl PgEventStore {
    /// Connects, creates the event tables if they are missing, and checks that the log was
    /// written by this cluster.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`]; [`StoreError::Unavailable`] when PostgreSQL cannot be
    /// reached; [`StoreError::LogFromAnotherCluster`] when the log was copied from another
    /// cluster.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::connect_with(url, pool_size, GroupCommit::default()).await
    }

    /// As [`PgEventStore::connect`], committing appends as `group_commit` says.
    ///
    /// # Errors
    /// As [`PgEventStore::connect`].
    pub async fn connect_with(
        url: &str,
        pool_size: usize,
        group_commit: GroupCommit,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::from(PoolSetupError::InvalidUrl(e)))?;
        // The log is read in its order, by its primary key, a page at a time. Without
        // statistics (a log loaded or grown since the last analyze) the planner guesses that
        // few events match a stream prefix and, for every page, gathers the whole rest of the
        // log by a bitmap or sequential scan and sorts it: a catch-up became quadratic (measured:
        // 14 ms instead of 0.5 ms a page of 1,000 at 30k events, PostgreSQL at 60 % of the
        // CPU while the relay caught up). Every statement of the store is an index lookup or
        // an index range; these settings only price the other ways out (options given in the
        // URL come after them, and win).
        let options = config.get_options().unwrap_or_default();
        let options = format!("-c enable_bitmapscan=off -c enable_seqscan=off {options}");
        config.options(options.trim_end());
        let (pool, config) = build_pool_from(config, pool_size)?;
        let mut client = pool.get().await?;
        apply_migrations(&mut client, "es_migrations", MIGRATIONS).await?;
        check_log_belongs_to_cluster(&client).await?;
        drop(client);
        let notifier = Arc::new(Notifier::start(pool.clone()));
        let groups = match group_commit {
            GroupCommit::Off => None,
            GroupCommit::On { groups_in_flight } => {
                Some(Arc::new(Groups::start(pool.clone(), groups_in_flight)))
            }
        };
        Ok(Self {
            pool,
            config,
            notifier,
            groups,
        })
    }

    /// The pool, for callers that keep their own tables in the same database.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// A page of the log as [`EventStore::read_all`] reads it, and a position the next page
    /// can be read after: past the last event of a full page, or, when the page is not full,
    /// past every event looked at, those of other prefixes included. Without that second
    /// part, a subscriber to a prefix rarely appended to (returns, among many orders) would
    /// read every event since its last one again at each wake-up. (Rows written with a
    /// transaction id of the past, a restore into a running log, are not seen by a running
    /// subscription once it has moved past that id; a subscriber started afterwards reads them
    /// from its checkpoint.)
    async fn read_page(
        &self,
        after: Option<Position>,
        prefix: &str,
        max: usize,
    ) -> Result<(Vec<RecordedEvent>, Option<Position>), StoreError> {
        let client = self.client().await?;
        let horizon = client
            .prepare_cached("select pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .await?;
        let page = client.prepare_cached(&read_all_statement()).await?;
        let (from, limit) = page_bounds(after, max);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&from.0, &from.1, &prefix, &limit];
        // Sent together, in this order: the horizon's snapshot is taken before the page's, so
        // every transaction below it had ended when the page was read, and the page looked at
        // every event below it that it did not return (unless the page is full).
        let (horizon, rows) = tokio::try_join!(
            biased;
            client.query_one(&horizon, &[]),
            client.query(&page, &params),
        )?;
        let events: Vec<RecordedEvent> = rows.iter().map(row_to_event).collect();
        let last = events.last().map(|e| e.position).or(after);
        if events.len() as i64 >= limit {
            return Ok((events, last));
        }
        let horizon: i64 = horizon.get(0);
        let looked_at = (horizon > 0).then(|| Position::new(horizon as u64 - 1, i64::MAX as u64));
        Ok((events, last.max(looked_at)))
    }

    async fn current_revision(&self, stream: &str) -> Result<CurrentRevision, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("select max(revision) as r from es_events where stream_id = $1")
            .await?;
        let row = client.query_one(&stmt, &[&stream]).await?;
        Ok(match row.get::<_, Option<i64>>("r") {
            Some(r) => CurrentRevision::Current(r as u64),
            None => CurrentRevision::NoStream,
        })
    }

    /// Appends after revision `last` (-1 for a new stream), while `guard` (if any) holds no
    /// event, or explains why not. The unique (stream, revision) index refuses a stream that is
    /// ahead; the `exists` check refuses one that is behind.
    async fn append_after(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        last: i64,
        events: &[NewEvent],
        guard: Option<&str>,
    ) -> Result<GuardedAppend, StoreError> {
        if let (Some(groups), [event]) = (&self.groups, events) {
            let (done, answer) = oneshot::channel();
            let queued = Queued {
                stream: stream.to_owned(),
                last,
                guard: guard.map(str::to_owned),
                event: event.clone(),
                metadata: serde_json::to_value(&event.metadata)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
                done,
            };
            if groups.queue.send(queued).is_ok() {
                match answer.await {
                    Ok(Grouped::Written(revision, position)) => {
                        self.notifier.pending.notify_one();
                        return Ok(GuardedAppend::Appended(AppendResult {
                            next_expected_revision: revision,
                            position,
                            already_stored: false,
                        }));
                    }
                    Ok(Grouped::Refused) => {
                        return self
                            .explain_refusal(stream, expected, last, events, guard)
                            .await
                    }
                    Ok(Grouped::Alone) | Err(_) => {}
                }
            }
        }
        self.append_alone(stream, expected, last, events, guard)
            .await
    }

    /// [`PgEventStore::append_after`] in a statement and commit of its own.
    async fn append_alone(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        last: i64,
        events: &[NewEvent],
        guard: Option<&str>,
    ) -> Result<GuardedAppend, StoreError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<i32> = events.iter().map(|e| e.schema_version as i32).collect();
        let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.data).collect();
        let metadata = events
            .iter()
            .map(|e| {
                serde_json::to_value(&e.metadata).map_err(|e| StoreError::Backend(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = self.client().await?;
        // Most appends carry one event; a plain VALUES row is cheaper than unnest.
        let sql = if events.len() == 1 {
            "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
             select $1, $2::bigint + 1, ($3::uuid[])[1], ($4::text[])[1], ($5::int[])[1], ($6::jsonb[])[1], ($7::jsonb[])[1]
             where ($2::bigint = -1
                    or exists (select 1 from es_events where stream_id = $1 and revision = $2::bigint))
               and ($8::text is null or not exists (select 1 from es_events where stream_id = $8::text))
             returning revision, tx_id, seq"
        } else {
            "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
             select $1, $2::bigint + e.ord, e.id, e.typ, e.ver, e.data, e.meta
             from unnest($3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[])
                  with ordinality as e(id, typ, ver, data, meta, ord)
             where ($2::bigint = -1
                    or exists (select 1 from es_events where stream_id = $1 and revision = $2::bigint))
               and ($8::text is null or not exists (select 1 from es_events where stream_id = $8::text))
             returning revision, tx_id, seq"
        };
        let stmt = client.prepare_cached(sql).await?;
        let outcome = client
            .query(
                &stmt,
                &[
                    &stream, &last, &ids, &types, &versions, &data, &metadata, &guard,
                ],
            )
            .await;
        drop(client);
        match outcome {
            Ok(rows) if !rows.is_empty() => {
                let top = rows
                    .iter()
                    .max_by_key(|r| r.get::<_, i64>("revision"))
                    .map(|r| (r.get::<_, i64>("revision") as u64, row_position(r)));
                let (revision, position) = top.unwrap_or_default();
                self.notifier.pending.notify_one();
                Ok(GuardedAppend::Appended(AppendResult {
                    next_expected_revision: revision,
                    position,
                    already_stored: false,
                }))
            }
            Ok(_) => {
                self.explain_refusal(stream, expected, last, events, guard)
                    .await
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                self.explain_refusal(stream, expected, last, events, guard)
                    .await
            }
            Err(e) => Err(map_pg_error(&e)),
        }
    }

    /// After a refused append: a guard stream holding events says so; the same events already
    /// stored at that place is an idempotent success with the original result; anything else
    /// is a conflict.
    async fn explain_refusal(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        last: i64,
        events: &[NewEvent],
        guard: Option<&str>,
    ) -> Result<GuardedAppend, StoreError> {
        let client = self.client().await?;
        if let Some(guard) = guard {
            let stmt = client
                .prepare_cached("select 1 from es_events where stream_id = $1 limit 1")
                .await?;
            if client.query_opt(&stmt, &[&guard]).await?.is_some() {
                return Ok(GuardedAppend::GuardHasEvents);
            }
        }
        let stmt = client
            .prepare_cached(&format!(
                "select {COLUMNS} from es_events
                 where stream_id = $1 and revision > $2 and revision <= $2 + $3 order by revision"
            ))
            .await?;
        let rows = client
            .query(&stmt, &[&stream, &last, &(events.len() as i64)])
            .await?;
        let stored: Vec<RecordedEvent> = rows.iter().map(row_to_event).collect();
        drop(client);
        if let Some(original) = crate::compare_with_stored(&stored, events)? {
            return Ok(GuardedAppend::Appended(original));
        }
        Err(StoreError::WrongExpectedRevision {
            stream: stream.to_owned(),
            expected,
            actual: self.current_revision(stream).await?,
        })
    }
}

impl PgEventStore {
    /// [`EventStore::append`], guarded by `guard` when there is one.
    async fn append_checked(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        guard: Option<&str>,
    ) -> Result<GuardedAppend, StoreError> {
        if events.is_empty() {
            return Err(StoreError::Backend(
                "an append needs at least one event".into(),
            ));
        }
        match expected {
            ExpectedRevision::NoStream => {
                self.append_after(stream, expected, -1, &events, guard)
                    .await
            }
            ExpectedRevision::Exact(r) => {
                self.append_after(stream, expected, to_i64(r), &events, guard)
                    .await
            }
            ExpectedRevision::Any => {
                let mut attempts = 0;
                loop {
                    let last = match self.current_revision(stream).await? {
                        CurrentRevision::NoStream => -1,
                        CurrentRevision::Current(r) => to_i64(r),
                    };
                    match self
                        .append_after(stream, expected, last, &events, guard)
                        .await
                    {
                        Err(StoreError::WrongExpectedRevision { .. }) if attempts < 10 => {
                            attempts += 1;
                        }
                        other => return other,
                    }
                }
            }
        }
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    #[tracing::instrument(name = "event_store.append", skip_all, fields(stream = %stream, expected = %expected, events = events.len()))]
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        match self.append_checked(stream, expected, events, None).await? {
            GuardedAppend::Appended(result) => Ok(result),
            GuardedAppend::GuardHasEvents => Err(StoreError::Backend(
                "an append without a guard was refused for its guard".into(),
            )),
        }
    }

    /// The guard is checked in the append's own statement: one round trip.
    #[tracing::instrument(name = "event_store.append", skip_all, fields(stream = %stream, expected = %expected, events = events.len(), guard = %guard))]
    async fn append_guarded(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        guard: &str,
    ) -> Result<GuardedAppend, StoreError> {
        self.append_checked(stream, expected, events, Some(guard))
            .await
    }

    #[tracing::instrument(name = "event_store.read_stream", skip_all, fields(stream = %stream, direction = ?direction, from = ?from, max = max))]
    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        let (sql, from) = match direction {
            Direction::Forwards => (
                format!("select {COLUMNS} from es_events where stream_id = $1 and revision >= $2 order by revision limit $3"),
                from.map(to_i64).unwrap_or(0),
            ),
            Direction::Backwards => (
                format!("select {COLUMNS} from es_events where stream_id = $1 and revision <= $2 order by revision desc limit $3"),
                from.map(to_i64).unwrap_or(i64::MAX),
            ),
        };
        let stmt = client.prepare_cached(&sql).await?;
        let rows = client
            .query(&stmt, &[&stream, &from, &(max.min(100_000) as i64)])
            .await?;
        // Nothing from the start forwards means no stream; otherwise ask.
        let from_start = direction == Direction::Forwards && from == 0;
        if rows.is_empty() && from_start {
            return Err(StoreError::StreamNotFound(stream.to_owned()));
        }
        if rows.is_empty() {
            let exists = client
                .query_opt(
                    "select 1 from es_events where stream_id = $1 limit 1",
                    &[&stream],
                )
                .await?
                .is_some();
            if !exists {
                return Err(StoreError::StreamNotFound(stream.to_owned()));
            }
        }
        Ok(rows.iter().map(row_to_event).collect())
    }

    #[tracing::instrument(name = "event_store.read_all", skip_all, fields(after = ?after, prefix = %prefix, max = max))]
    async fn read_all(
        &self,
        after: Option<Position>,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&read_all_statement()).await?;
        let (after, max) = page_bounds(after, max);
        let rows = client
            .query(&stmt, &[&after.0, &after.1, &prefix, &max])
            .await?;
        Ok(rows.iter().map(row_to_event).collect())
    }

    async fn subscribe_all(
        &self,
        after: Option<Position>,
        prefix: &str,
    ) -> Result<Subscription, StoreError> {
        let wake = Arc::new(Notify::new());
        let listener = listen(&self.config, wake.clone()).await?;
        // Pages of up to 1000 events, read up to four ahead of the subscriber.
        let (tx, rx) = mpsc::channel(4);
        let store = self.clone();
        let prefix = prefix.to_owned();
        let task = tokio::spawn(async move {
            // Keeps the LISTEN connection open for as long as the subscription runs.
            let _listener = listener;
            let mut after = after;
            let mut failures = 0u32;
            // After a wake-up that found nothing visible yet (an older transaction still in
            // flight), look again soon, backing off to the idle timer.
            let mut recheck: Option<Duration> = None;
            loop {
                match store.read_page(after, &prefix, 1000).await {
                    Ok((batch, next)) if batch.is_empty() => {
                        failures = 0;
                        after = next;
                        let wait = recheck.unwrap_or(IDLE_RECHECK);
                        // Woken by a NOTIFY after appends; the timer covers commits that sent
                        // none (other writers, or a transaction that was still running).
                        tokio::select! {
                            () = wake.notified() => recheck = Some(Duration::from_millis(2)),
                            () = tokio::time::sleep(wait) => {
                                recheck = recheck.map(|r| r * 2).filter(|r| *r < IDLE_RECHECK);
                            }
                        }
                    }
                    Ok((batch, next)) => {
                        failures = 0;
                        recheck = None;
                        after = next;
                        if tx.send(Ok(batch)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        let unavailable = matches!(e, StoreError::Unavailable(_));
                        if tx.send(Err(e)).await.is_err() || !unavailable || failures > 30 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(
                            200 * u64::from(failures.min(10)),
                        ))
                        .await;
                    }
                }
            }
        });
        Ok(Subscription::new(rx, task))
    }

    #[tracing::instrument(name = "event_store.head_position", skip_all)]
    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "select tx_id, seq from es_events
                 where tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                 order by tx_id desc, seq desc limit 1",
            )
            .await?;
        let row = client.query_opt(&stmt, &[]).await?;
        Ok(row.as_ref().map(row_position))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("select 1").await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

/// Opens a LISTEN connection on [`NOTIFY_CHANNEL`] that wakes `wake` on each notification.
async fn listen(
    config: &tokio_postgres::Config,
    wake: Arc<Notify>,
) -> Result<postgres::Listener, StoreError> {
    Ok(postgres::listen_on(config, NOTIFY_CHANNEL, move |_| wake.notify_one()).await?)
}

#[cfg(test)]
mod tests {
    use super::{read_all_statement, GroupCommit, PgEventStore};
    use serde_json::Value;

    /// The kinds of the nodes of an `explain (format json)` plan, depth first.
    fn nodes(plan: &Value, into: &mut Vec<String>) {
        if let Some(kind) = plan["Node Type"].as_str() {
            into.push(kind.to_owned());
        }
        for child in plan["Plans"].as_array().into_iter().flatten() {
            nodes(child, into);
        }
    }

    async fn plan_of_a_page(client: &tokio_postgres::Client) -> Vec<String> {
        let rows = client
            .query(
                &format!("explain (format json) {}", read_all_statement()),
                &[&0i64, &0i64, &"order-", &1000i64],
            )
            .await
            .unwrap();
        let plan: Value = rows[0].get(0);
        let mut kinds = Vec::new();
        nodes(&plan[0]["Plan"], &mut kinds);
        kinds
    }

    fn event() -> crate::NewEvent {
        crate::NewEvent {
            id: uuid::Uuid::new_v4(),
            event_type: "Noted".to_owned(),
            schema_version: 1,
            data: serde_json::json!({}),
            metadata: crate::Metadata::default(),
        }
    }

    /// What `read` gives once `done` says so. Transactions still running in other databases
    /// hold back what is visible (the horizon is the cluster's), so a step waits for what it
    /// looks for, up to 20 s.
    async fn until<T, F: std::future::Future<Output = Result<T, crate::StoreError>>>(
        mut read: impl FnMut() -> F,
        done: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let value = read().await.unwrap();
            if done(&value) || std::time::Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_short_of_its_prefix_moves_past_the_other_events_but_not_a_transaction_still_running(
    ) {
        use crate::{EventStore, ExpectedRevision};
        let url = test_support::fresh_database().await;
        let store = PgEventStore::connect(&url, 2).await.unwrap();
        for i in 0..3 {
            let stream = format!("order-{i}");
            store
                .append(&stream, ExpectedRevision::NoStream, vec![event(), event()])
                .await
                .unwrap();
        }
        let orders = until(
            || store.read_all(None, "order-", 100),
            |orders: &Vec<_>| orders.len() == 6,
        )
        .await;
        let last_order = orders[5].position;
        let (page, next) = until(
            || store.read_page(None, "return-", 1000),
            |(_, next): &(_, Option<crate::Position>)| *next >= Some(last_order),
        )
        .await;
        assert!(page.is_empty());
        let next = next.unwrap();
        assert!(
            next >= last_order,
            "an empty page looks past every order: {next} < {last_order}"
        );

        // A return written by a transaction still running, then an order committed after it.
        let (late, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        late.batch_execute(
            "begin;
             insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
             values ('return-late', 0, gen_random_uuid(), 'Noted', 1, '{}', '{}')",
        )
        .await
        .unwrap();
        let running: i64 = late
            .query_one("select pg_current_xact_id()::text::bigint", &[])
            .await
            .unwrap()
            .get(0);
        store
            .append("order-after", ExpectedRevision::NoStream, vec![event()])
            .await
            .unwrap();
        let (page, after_running) = store.read_page(Some(next), "return-", 1000).await.unwrap();
        assert!(page.is_empty());
        let after_running = after_running.unwrap();
        assert!(
            after_running.commit < running as u64,
            "a page must not move past a transaction still running: {after_running} >= {running}"
        );
        late.batch_execute("commit").await.unwrap();
        let (page, _) = until(
            || store.read_page(Some(after_running), "return-", 1000),
            |(page, _): &(Vec<_>, _)| !page.is_empty(),
        )
        .await;
        assert_eq!(
            page.iter()
                .map(|e| e.stream_id.as_str())
                .collect::<Vec<_>>(),
            ["return-late"],
            "the return committed late is read once it commits"
        );

        // A full page moves only past its last event.
        let (page, next) = store.read_page(None, "order-", 2).await.unwrap();
        assert_eq!(next, Some(page[1].position));
        test_support::drop_database(&url).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_of_a_log_without_statistics_is_read_along_its_index_not_sorted_whole() {
        plan_of_a_page_without_statistics("").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_the_c_collation_too_a_page_is_read_along_the_log_index() {
        plan_of_a_page_without_statistics("template template0 locale 'C'").await;
    }

    async fn plan_of_a_page_without_statistics(database: &str) {
        let url = test_support::fresh_database_with(database).await;
        let store = PgEventStore::connect(&url, 2).await.unwrap();
        let client = store.pool().get().await.unwrap();
        // A log written since the last analyze: the planner has no statistics for it.
        client
            .batch_execute(
                "alter table es_events set (autovacuum_enabled = off);
                 insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
                 select 'order-' || (g / 4), g % 4, gen_random_uuid(), 'OrderPlaced', 1, '{}', '{}'
                 from generate_series(0, 39999) g",
            )
            .await
            .unwrap();
        let (plain, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let unguided = plan_of_a_page(&plain).await;
        assert!(
            unguided.iter().any(|k| k == "Sort"),
            "without statistics, a plain session sorts the rest of the log for a page: {unguided:?}"
        );
        let kinds = plan_of_a_page(&client).await;
        assert_eq!(kinds, ["Limit", "Index Scan"], "{kinds:?}");
        test_support::drop_database(&url).await;
    }

    #[test]
    fn group_commit_is_set_as_off_on_or_a_number_of_groups_in_flight() {
        assert_eq!("off".parse(), Ok(GroupCommit::Off));
        assert_eq!("off".parse(), Ok(GroupCommit::default()));
        assert_eq!(
            "on".parse(),
            Ok(GroupCommit::On {
                groups_in_flight: 2
            })
        );
        assert_eq!(
            "8".parse(),
            Ok(GroupCommit::On {
                groups_in_flight: 8
            })
        );
        for bad in ["0", "-1", "yes", ""] {
            assert!(bad.parse::<GroupCommit>().is_err(), "{bad}");
        }
    }
}

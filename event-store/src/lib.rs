//! The event-store port and its two backends.
//!
//! [`EventStore`] is what the command API, the projector and the analyst tools talk to.
//! [`postgres::PgEventStore`] keeps events in PostgreSQL (the embedded default, and what the test
//! suite runs on); [`kurrent::KurrentStore`] uses KurrentDB through the official `kurrentdb`
//! client. [`connect`] picks one from the scheme of a URL. Both honour the same contract,
//! pinned by the contract tests in `tests/contract`: optimistic concurrency, idempotent appends
//! (KurrentDB's semantics), reads in both directions, reads of the global log, and catch-up
//! subscriptions that never skip an event.

#![forbid(unsafe_code)]

mod error;
pub mod kurrent;
mod position;
pub mod postgres;

pub use error::{CurrentRevision, StoreError};
pub use position::Position;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Streams whose names start with this hold a service's own bookkeeping (such as the answer
/// recorded for an idempotent command that wrote no events), never workflow events. No
/// workflow's stream prefix starts with it, so projections never follow these streams, and
/// exports skip them whatever prefix they are given.
pub const BOOKKEEPING_STREAM_PREFIX: &str = "_bookkeeping-";

/// Whether `stream` is a bookkeeping stream (see [`BOOKKEEPING_STREAM_PREFIX`]).
pub fn is_bookkeeping_stream(stream: &str) -> bool {
    stream.starts_with(BOOKKEEPING_STREAM_PREFIX)
}

/// The revision a stream must be at for an append to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this revision.
    Exact(u64),
    /// No check. The application never uses this for decisions; it exists for tooling.
    Any,
}

impl std::fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(r) => write!(f, "revision {r}"),
            Self::Any => f.write_str("any revision"),
        }
    }
}

/// Context carried with every event. Correlation and causation use KurrentDB's well-known
/// metadata keys so its projections understand them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(
        rename = "$correlationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
    #[serde(
        rename = "$causationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub causation_id: Option<String>,
    #[serde(
        rename = "idempotencyKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub idempotency_key: Option<String>,
    #[serde(
        rename = "requestHash",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_hash: Option<String>,
    #[serde(
        rename = "occurredAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub occurred_at: Option<DateTime<Utc>>,
    /// Who caused the event: the authenticated caller of the command, or the service acting
    /// on its own (none when authentication is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// The W3C trace context (`traceparent` header value) of the request that caused the
    /// event, so the work that follows it (projection, relay, reconciler) joins the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The W3C `tracestate` that came with [`Metadata::traceparent`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl Metadata {
    /// The trace id of [`Metadata::traceparent`] (32 lowercase hex digits), when it has a
    /// well-formed one: `version-traceid-parentid-flags`, an all-zero trace id being invalid.
    pub fn trace_id(&self) -> Option<&str> {
        let mut parts = self.traceparent.as_deref()?.split('-');
        let (version, trace_id) = (parts.next()?, parts.next()?);
        let well_formed = version.len() == 2
            && trace_id.len() == 32
            && trace_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && trace_id.bytes().any(|b| b != b'0');
        well_formed.then_some(trace_id)
    }
}

/// Who decided: the subject, role and client of an authenticated caller, as recorded in the
/// metadata of every event it caused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The token's `sub`: the user or service account.
    pub subject: String,
    /// The role whose scopes the caller used, e.g. `shop`, `payment`, `support`, `customer`.
    pub role: String,
    /// The OAuth2 client the token was issued to (`azp` or `client_id`), when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// An event to append. The id makes appends idempotent: derive it deterministically from the
/// command (e.g. UUIDv5 of the idempotency key and the event's index).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: Metadata,
}

/// An event as stored.
///
/// A stored event that does not decode (data that is not JSON, metadata of other types, as
/// another tool may write them) is still delivered, in its place in the log, with `malformed`
/// saying why: a reader sets it aside (a projector dead-letters it) instead of stalling on it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub stream_id: String,
    pub revision: u64,
    pub position: Position,
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// The payload; `null` when a malformed event's data is not JSON.
    pub data: serde_json::Value,
    /// The context; of a malformed event, the fields that decoded.
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
    /// Why the stored event does not decode, if it does not. Such an event must not be
    /// applied as if it were well formed.
    pub malformed: Option<String>,
}

/// Decodes stored metadata leniently: the fields that decode are kept, and the first that
/// does not (or a value that is not an object) is the reason the event is malformed.
pub(crate) fn decode_metadata(value: &serde_json::Value) -> (Metadata, Option<String>) {
    if let Ok(metadata) = Metadata::deserialize(value) {
        return (metadata, None);
    }
    let serde_json::Value::Object(fields) = value else {
        return (
            Metadata::default(),
            Some(format!("metadata is not a JSON object: {value}")),
        );
    };
    let mut reason = None;
    let mut kept = serde_json::Map::new();
    for (key, field) in fields {
        let alone = serde_json::Map::from_iter([(key.clone(), field.clone())]);
        match Metadata::deserialize(&serde_json::Value::Object(alone)) {
            Ok(_) => {
                kept.insert(key.clone(), field.clone());
            }
            Err(e) => {
                reason.get_or_insert_with(|| format!("metadata field {key}: {e}"));
            }
        }
    }
    let metadata = Metadata::deserialize(&serde_json::Value::Object(kept)).unwrap_or_default();
    (metadata, reason)
}

/// The outcome of an append (or of an idempotent replay of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The revision of the last event written; the expected revision for the next append.
    pub next_expected_revision: u64,
    /// The log position of the last event written: the consistency token.
    pub position: Position,
    /// True when an earlier identical append had already stored these events and this one
    /// wrote nothing (an idempotent retry); the result is then that append's.
    pub already_stored: bool,
}

/// The outcome of [`EventStore::append_guarded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardedAppend {
    /// The guard stream was empty: the append's outcome, as [`EventStore::append`] answers.
    Appended(AppendResult),
    /// The guard stream holds events: nothing was appended.
    GuardHasEvents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// A catch-up subscription: history after a position, then live events, in log order.
/// Dropping it stops the background reader.
///
/// The reader hands events over in pages (as it reads them): one hand-over between tasks per
/// event cost more than reading the event (a wake-up of the other task each time).
pub struct Subscription {
    rx: mpsc::Receiver<Result<Vec<RecordedEvent>, StoreError>>,
    page: std::collections::VecDeque<RecordedEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    pub(crate) fn new(
        rx: mpsc::Receiver<Result<Vec<RecordedEvent>, StoreError>>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            rx,
            page: Default::default(),
            task,
        }
    }

    /// The next event, waiting for one; `None` once the subscription has ended. Cancel-safe:
    /// no event is lost when the future is dropped.
    pub async fn next(&mut self) -> Option<Result<RecordedEvent, StoreError>> {
        loop {
            if let Some(event) = self.page.pop_front() {
                return Some(Ok(event));
            }
            match self.rx.recv().await? {
                Ok(page) => self.page = page.into(),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next event if one is already buffered, without waiting.
    pub fn try_next(&mut self) -> Option<Result<RecordedEvent, StoreError>> {
        loop {
            if let Some(event) = self.page.pop_front() {
                return Some(Ok(event));
            }
            match self.rx.try_recv().ok()? {
                Ok(page) => self.page = page.into(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The port. Implementations are cheap to share (`Arc<dyn EventStore>`).
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events atomically if the stream is at `expected`.
    ///
    /// Re-sending events whose ids were already appended at that place succeeds without writing
    /// and returns the original result; the same ids with other content fail.
    ///
    /// # Errors
    /// [`StoreError::WrongExpectedRevision`], [`StoreError::DuplicateEventId`],
    /// [`StoreError::Unavailable`].
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Appends as [`EventStore::append`] does, only while the stream `guard` holds no event.
    ///
    /// A backend that can check `guard` in the append's own statement (PostgreSQL) saves the
    /// read. The default reads `guard` first and then appends, which is what a caller doing
    /// both itself would do: an event written to `guard` between the two is not seen.
    ///
    /// # Errors
    /// As [`EventStore::append`]; errors reading `guard`.
    async fn append_guarded(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        guard: &str,
    ) -> Result<GuardedAppend, StoreError> {
        match self.read_stream(guard, Direction::Forwards, None, 1).await {
            Ok(found) if !found.is_empty() => return Ok(GuardedAppend::GuardHasEvents),
            Ok(_) | Err(StoreError::StreamNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.append(stream, expected, events)
            .await
            .map(GuardedAppend::Appended)
    }

    /// Reads up to `max` events of one stream starting at revision `from` (inclusive; `None` is
    /// the start going forwards, the end going backwards).
    ///
    /// # Errors
    /// [`StoreError::StreamNotFound`] when the stream has no events.
    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `max` events of the global log strictly after `after` (`None`: from the
    /// start), in log order, keeping only streams whose name starts with `prefix`.
    async fn read_all(
        &self,
        after: Option<Position>,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Subscribes to the global log strictly after `after`, filtered by stream prefix.
    async fn subscribe_all(
        &self,
        after: Option<Position>,
        prefix: &str,
    ) -> Result<Subscription, StoreError>;

    /// The position of the newest event readers can see, if any.
    async fn head_position(&self) -> Result<Option<Position>, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Which backend this is, for logs and health output.
    fn backend(&self) -> &'static str;
}

/// Reads a whole stream forwards, in pages.
///
/// # Errors
/// As [`EventStore::read_stream`]; a missing stream gives an empty list, not an error.
pub async fn read_whole_stream(
    store: &dyn EventStore,
    stream: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    const PAGE: usize = 1000;
    let mut all: Vec<RecordedEvent> = Vec::new();
    loop {
        let from = all.last().map(|e| e.revision + 1);
        let page = match store
            .read_stream(stream, Direction::Forwards, from, PAGE)
            .await
        {
            Ok(page) => page,
            Err(StoreError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// How far a reader of the streams starting with `prefix` (a projection, a relay) whose
/// checkpoint is `checkpoint` is behind the log: how many events follow the checkpoint (at most
/// `limit`), and the age in seconds of the oldest of them (0 when none).
///
/// # Errors
/// As [`EventStore::head_position`] and [`EventStore::read_all`].
pub async fn lag_behind(
    store: &dyn EventStore,
    prefix: &str,
    checkpoint: Option<Position>,
    limit: usize,
) -> Result<(i64, f64), StoreError> {
    let head = store.head_position().await?;
    if head.is_none() || head <= checkpoint {
        return Ok((0, 0.0));
    }
    let behind = store.read_all(checkpoint, prefix, limit).await?;
    let age = behind.first().map_or(0.0, |oldest| {
        (Utc::now() - oldest.recorded_at).as_seconds_f64().max(0.0)
    });
    Ok((behind.len() as i64, age))
}

/// Compares the events stored where an append was aimed with the events it carries. The same
/// ids with the same type and data are that append's earlier success (an idempotent retry):
/// its original result. The same ids with other content, or only some of the ids, are a
/// conflict. None of the ids is `Ok(None)`: an ordinary revision mismatch.
pub(crate) fn compare_with_stored(
    stored: &[RecordedEvent],
    events: &[NewEvent],
) -> Result<Option<AppendResult>, StoreError> {
    let same_ids =
        stored.len() == events.len() && stored.iter().zip(events).all(|(s, e)| s.id == e.id);
    if same_ids {
        if let Some((_, e)) = stored
            .iter()
            .zip(events)
            .find(|(s, e)| s.event_type != e.event_type || s.data != e.data)
        {
            return Err(StoreError::DuplicateEventId { event_id: e.id });
        }
        return Ok(stored.last().map(|s| AppendResult {
            next_expected_revision: s.revision,
            position: s.position,
            already_stored: true,
        }));
    }
    match stored.iter().find(|s| events.iter().any(|e| e.id == s.id)) {
        Some(s) => Err(StoreError::DuplicateEventId { event_id: s.id }),
        None => Ok(None),
    }
}

/// Settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections kept by the PostgreSQL backend's pool.
    pub pool_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { pool_size: 16 }
    }
}

/// Connects to the store named by `url`: `postgres://` / `postgresql://` for PostgreSQL (its
/// tables are created if missing), `kurrentdb://`, `esdb://` (and their `+discover` forms) for
/// KurrentDB.
///
/// # Errors
/// [`StoreError::InvalidUrl`] for another scheme; [`StoreError::Unavailable`] when the store
/// cannot be reached.
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn EventStore>, StoreError> {
    connect_with(url, options, postgres::GroupCommit::default()).await
}

/// As [`connect`], with PostgreSQL's appends committed as `group_commit` says (KurrentDB has
/// its own append path and ignores it).
///
/// # Errors
/// As [`connect`].
pub async fn connect_with(
    url: &str,
    options: &StoreOptions,
    group_commit: postgres::GroupCommit,
) -> Result<Arc<dyn EventStore>, StoreError> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    match scheme {
        "postgres" | "postgresql" => Ok(Arc::new(
            postgres::PgEventStore::connect_with(url, options.pool_size, group_commit).await?,
        )),
        "kurrentdb" | "kurrentdb+discover" | "esdb" | "esdb+discover" | "kdb" | "kdb+discover" => {
            Ok(Arc::new(kurrent::KurrentStore::connect(url)?))
        }
        _ => Err(StoreError::InvalidUrl(format!(
            "unknown scheme '{scheme}': use postgres://... or kurrentdb://..."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::Metadata;

    fn with(traceparent: &str) -> Metadata {
        Metadata {
            traceparent: Some(traceparent.to_owned()),
            ..Metadata::default()
        }
    }

    #[test]
    fn the_trace_id_is_read_from_a_well_formed_traceparent_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            with(&format!("00-{id}-00f067aa0ba902b7-01")).trace_id(),
            Some(id)
        );
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(with(bad).trace_id(), None, "{bad:?}");
        }
        assert_eq!(Metadata::default().trace_id(), None);
    }
}

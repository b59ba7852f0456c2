//! The KurrentDB backend, through the official `kurrentdb` client (the maintained successor of
//! the end-of-life `eventstore` crate).
//!
//! Appends always state the expected revision, so the server's event-id de-duplication applies.
//! The server accepts re-sent ids without comparing content, so after every append the written
//! range is read back from the leader and compared: the same ids with other content is reported
//! as a conflict, as on PostgreSQL. Correlation and causation go in the well-known
//! `$correlationId` and `$causationId` metadata keys; the schema version rides along as
//! `schemaVersion`.
//!
//! The client needs help to survive first contact. Its connection task exits for good when a
//! connection attempt fails, so a client that answers "connection closed" is replaced by a new
//! one (which also moves a cluster client off a dead node). A server that is not ready, busy or
//! slow to index answers `ServerError`, `Aborted` or a timeout; those requests are sent again,
//! unchanged, a bounded number of times: an append carries its event ids, so a resent append
//! lands once. The decoding of events and the mapping of the client's errors are pure
//! functions, tested without a server.

use crate::{
    AppendResult, CurrentRevision, Direction, EventStore, ExpectedRevision, Metadata, NewEvent,
    Position, RecordedEvent, StoreError, Subscription,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, ReadStreamOptions,
    StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionFilter,
};
use serde::Serialize;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many times a request is sent in all when the server answers with a transient error.
const ATTEMPTS: u32 = 5;
/// The wait before the first resend; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long the readiness check waits for an answer.
const PING_DEADLINE: Duration = Duration::from_secs(3);
/// A stream the readiness check reads. It need not exist, and reading an ordinary stream needs
/// no permission on `$all`.
const PING_STREAM: &str = "milestone-readiness";

/// The event store on a KurrentDB node or cluster.
#[derive(Clone)]
pub struct KurrentStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Kept to build a new client when the current one's connection task has exited.
    settings: ClientSettings,
    /// The client in use, and how many clients were built before it.
    current: Mutex<(Client, u64)>,
}

/// What is written as the event's custom metadata.
#[derive(Serialize)]
struct StoredMetadata<'a> {
    #[serde(flatten)]
    metadata: &'a Metadata,
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
}

/// What to do after the client reports an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// The client's connection task has exited: every later call would fail the same way.
    /// Build a new client, then send the request again.
    Rebuild,
    /// A transient answer (not ready, busy, a timeout, an append aborted while an identical
    /// one was being indexed): send the same request again.
    Resend,
    /// Final: report it.
    Report,
}

/// The gRPC status code inside a `ServerError` (the client keeps only the status's text,
/// `status: Unavailable, message: ...`).
fn server_error_code(status: &str) -> Option<&str> {
    let rest = status.strip_prefix("status: ")?;
    rest.split([',', ' ']).next()
}

fn recovery(e: &kurrentdb::Error) -> Recovery {
    use kurrentdb::Error as E;
    match e {
        E::ConnectionClosed | E::GrpcConnectionError(_) => Recovery::Rebuild,
        // The client has already picked the leader it was told about.
        E::NotLeaderException(_) | E::DeadlineExceeded => Recovery::Resend,
        E::ServerError(status) if server_error_code(status) != Some("DataLoss") => Recovery::Resend,
        E::Grpc { code, .. } if transient_code(*code) => Recovery::Resend,
        _ => Recovery::Report,
    }
}

fn transient_code(code: tonic::Code) -> bool {
    use tonic::Code as C;
    matches!(
        code,
        C::Aborted | C::Cancelled | C::ResourceExhausted | C::Unavailable | C::DeadlineExceeded
    )
}

/// Maps a client error about `stream` (`$all` for the log) to the port's error.
fn map_error(e: kurrentdb::Error, stream: &str) -> StoreError {
    use kurrentdb::Error as E;
    match e {
        E::ResourceNotFound => StoreError::StreamNotFound(stream.to_owned()),
        E::ResourceDeleted => StoreError::StreamDeleted(stream.to_owned()),
        e if recovery(&e) != Recovery::Report => StoreError::Unavailable(e.to_string()),
        E::AccessDenied => StoreError::Backend(format!("{e} (check the connection string's user)")),
        other => StoreError::Backend(other.to_string()),
    }
}

fn to_kurrent_position(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

/// The parts of a stored event the backend reads, as the client hands them over.
struct StoredEvent<'a> {
    stream_id: &'a str,
    revision: u64,
    position: kurrentdb::Position,
    id: uuid::Uuid,
    event_type: &'a str,
    data: &'a [u8],
    custom_metadata: &'a [u8],
    /// The server's `created` stamp: 100-nanosecond ticks since the Unix epoch.
    created_ticks: Option<&'a str>,
    /// The client's reading of it, truncated to the second.
    created: DateTime<Utc>,
}

impl<'a> StoredEvent<'a> {
    fn of(event: &'a kurrentdb::RecordedEvent) -> Self {
        Self {
            stream_id: event.stream_id(),
            revision: event.revision,
            position: event.position,
            id: event.id,
            event_type: &event.event_type,
            data: &event.data,
            custom_metadata: &event.custom_metadata,
            created_ticks: event.metadata.get("created").map(String::as_str),
            created: event.created,
        }
    }
}

/// When the event was stored, to the tick the server recorded.
fn created_at(ticks: Option<&str>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    ticks
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| {
            let nanos = u32::try_from(t.rem_euclid(10_000_000) * 100).ok()?;
            DateTime::from_timestamp(t.div_euclid(10_000_000), nanos)
        })
        .unwrap_or(fallback)
}

/// Decodes a stored event. Data that is not JSON, or metadata that does not decode, makes the
/// event malformed, never the read: it is delivered with the reason.
fn decode(event: &StoredEvent<'_>) -> RecordedEvent {
    let mut malformed = None;
    let data = if event.data.is_empty() {
        malformed = Some("data is empty".to_owned());
        serde_json::Value::Null
    } else {
        serde_json::from_slice(event.data).unwrap_or_else(|e| {
            malformed = Some(format!("data is not JSON: {e}"));
            serde_json::Value::Null
        })
    };
    let (metadata, schema_version) = if event.custom_metadata.is_empty() {
        (Metadata::default(), 1)
    } else {
        match serde_json::from_slice::<serde_json::Value>(event.custom_metadata) {
            Err(e) => {
                malformed.get_or_insert_with(|| format!("metadata is not JSON: {e}"));
                (Metadata::default(), 1)
            }
            Ok(mut value) => {
                let version = value
                    .as_object_mut()
                    .and_then(|fields| fields.remove("schemaVersion"));
                let schema_version = match version {
                    None => 1,
                    Some(v) => v
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or_else(|| {
                            malformed.get_or_insert_with(|| {
                                format!("metadata field schemaVersion is not a version: {v}")
                            });
                            1
                        }),
                };
                let (metadata, reason) = crate::decode_metadata(&value);
                if let Some(reason) = reason {
                    malformed.get_or_insert(reason);
                }
                (metadata, schema_version)
            }
        }
    };
    RecordedEvent {
        stream_id: event.stream_id.to_owned(),
        revision: event.revision,
        position: Position::new(event.position.commit, event.position.prepare),
        id: event.id,
        event_type: event.event_type.to_owned(),
        schema_version,
        data,
        metadata,
        recorded_at: created_at(event.created_ticks, event.created),
        malformed,
    }
}

fn to_recorded(event: &kurrentdb::ResolvedEvent) -> RecordedEvent {
    decode(&StoredEvent::of(event.get_original_event()))
}

/// The server-side filter for a stream prefix. No prefix means every stream but the server's
/// own (`$`…): filtering those on the client would leave pages empty in the middle of the log.
fn stream_filter(prefix: &str) -> SubscriptionFilter {
    let filter = SubscriptionFilter::on_stream_name();
    if prefix.is_empty() {
        filter.exclude_system_events()
    } else {
        filter.add_prefix(prefix)
    }
}

/// A connection string with its password replaced by `***`, fit for errors and logs.
fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Parses a connection string; an error never shows its password.
fn parse_settings(url: &str) -> Result<ClientSettings, StoreError> {
    url.parse()
        .map_err(|e: kurrentdb::ClientSettingsParseError| {
            let shown = masked(url);
            let mut text = e.to_string().replace(url, &shown);
            // The client may quote a rewritten form of the string; never let the secret through.
            if let Some(password) = password_of(url) {
                text = text.replace(password, "***");
            }
            StoreError::InvalidUrl(text)
        })
}

fn password_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let credentials = &authority[..authority.rfind('@')?];
    let password = credentials.split_once(':')?.1;
    (!password.is_empty()).then_some(password)
}

fn state_of(expected: ExpectedRevision) -> StreamState {
    match expected {
        ExpectedRevision::NoStream => StreamState::NoStream,
        ExpectedRevision::Exact(r) => StreamState::StreamRevision(r),
        ExpectedRevision::Any => StreamState::Any,
    }
}

impl KurrentStore {
    /// Creates a client from a `kurrentdb://` or `esdb://` connection string. The connection is
    /// made lazily.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the connection string does not parse (the error shows
    /// it with its password masked).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let settings = parse_settings(url)?;
        let client = build_client(&settings)?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                current: Mutex::new((client, 0)),
            }),
        })
    }

    /// How many times the client was replaced after its connection task had exited.
    pub fn client_rebuilds(&self) -> u64 {
        self.current().1
    }

    fn current(&self) -> (Client, u64) {
        let current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (current.0.clone(), current.1)
    }

    /// Replaces client `generation` with a new one, unless another caller already did.
    fn rebuild(&self, generation: u64) {
        let mut current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.1 != generation {
            return;
        }
        match build_client(&self.inner.settings) {
            Ok(client) => {
                tracing::info!(rebuilds = generation + 1, "KurrentDB client rebuilt");
                *current = (client, generation + 1);
            }
            Err(e) => tracing::warn!(error = %e, "KurrentDB client could not be rebuilt"),
        }
    }

    /// Runs `request` with the current client, sending it again after transient errors and
    /// replacing a client whose connection has died, at most [`ATTEMPTS`] times in all.
    async fn send<T, F, Fut>(&self, request: F) -> Result<T, kurrentdb::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, kurrentdb::Error>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let (client, generation) = self.current();
            let e = match request(client).await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            let recovery = recovery(&e);
            if recovery == Recovery::Rebuild {
                self.rebuild(generation);
            }
            if recovery == Recovery::Report || attempt >= ATTEMPTS {
                return Err(e);
            }
            tracing::debug!(error = %e, attempt, "KurrentDB request sent again");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// Reads a stream; `leader` asks for the leader's view (a follower may not have an append
    /// that was just acknowledged).
    async fn read_stream_from(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        max: usize,
        leader: bool,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default()
            .max_count(max)
            .requires_leader(leader);
        let options = match (direction, from) {
            (Direction::Forwards, None) => options.forwards().position(StreamPosition::Start),
            (Direction::Backwards, None) => options.backwards().position(StreamPosition::End),
            (Direction::Forwards, Some(r)) => {
                options.forwards().position(StreamPosition::Position(r))
            }
            (Direction::Backwards, Some(r)) => {
                options.backwards().position(StreamPosition::Position(r))
            }
        };
        let read = self
            .send(|client| {
                let options = options.clone();
                async move {
                    let mut reader = client.read_stream(stream, &options).await?;
                    let mut out = Vec::new();
                    while let Some(event) = reader.next().await? {
                        out.push(to_recorded(&event));
                    }
                    Ok(out)
                }
            })
            .await;
        match read.map_err(|e| map_error(e, stream)) {
            // A deleted stream reads as one that does not exist.
            Err(StoreError::StreamDeleted(s)) => Err(StoreError::StreamNotFound(s)),
            other => other,
        }
    }

    /// What the leader holds from revision `first`, up to `count` events.
    async fn read_range(
        &self,
        stream: &str,
        first: u64,
        count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self
            .read_stream_from(stream, Direction::Forwards, Some(first), count, true)
            .await
        {
            Err(StoreError::StreamNotFound(_)) => Ok(Vec::new()),
            other => other,
        }
    }
}

fn build_client(settings: &ClientSettings) -> Result<Client, StoreError> {
    Client::new(settings.clone()).map_err(|e| StoreError::InvalidUrl(e.to_string()))
}

#[async_trait]
impl EventStore for KurrentStore {
    #[tracing::instrument(name = "event_store.append", skip_all, fields(stream = %stream, expected = %expected, events = events.len()))]
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if events.is_empty() {
            return Err(StoreError::Backend(
                "an append needs at least one event".into(),
            ));
        }
        let data = events
            .iter()
            .map(|e| {
                let meta = StoredMetadata {
                    metadata: &e.metadata,
                    schema_version: e.schema_version,
                };
                EventData::json(&e.event_type, &e.data)
                    .and_then(|d| d.id(e.id).metadata_as_json(&meta))
                    .map_err(|err| StoreError::Backend(err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().stream_state(state_of(expected));
        let n = events.len() as u64;
        // Resending the same events (same ids) is what makes a retry safe: the server writes
        // them once.
        let written = self
            .send(|client| {
                let (options, data) = (options.clone(), data.clone());
                async move { client.append_to_stream(stream, &options, data).await }
            })
            .await;
        match written {
            Ok(write) => {
                let first = (write.next_expected_version + 1).saturating_sub(n);
                let stored = self.read_range(stream, first, events.len()).await?;
                let mut result = crate::compare_with_stored(&stored, &events)?.ok_or_else(|| {
                    StoreError::Backend(format!(
                        "append to {stream} succeeded but the events were not found at revision {first}"
                    ))
                })?;
                // The server answers an identical retry with success too; what it holds is then
                // the earlier write, whose metadata (its time, its causation) is not this one's.
                result.already_stored = stored
                    .iter()
                    .zip(&events)
                    .any(|(s, e)| s.metadata != e.metadata);
                Ok(result)
            }
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                let first = match expected {
                    ExpectedRevision::Exact(r) => r + 1,
                    _ => 0,
                };
                let stored = self.read_range(stream, first, events.len()).await?;
                if let Some(original) = crate::compare_with_stored(&stored, &events)? {
                    return Ok(original);
                }
                Err(StoreError::WrongExpectedRevision {
                    stream: stream.to_owned(),
                    expected,
                    actual: match current {
                        kurrentdb::CurrentRevision::NoStream => CurrentRevision::NoStream,
                        kurrentdb::CurrentRevision::Current(r) => CurrentRevision::Current(r),
                    },
                })
            }
            Err(e) => Err(map_error(e, stream)),
        }
    }

    #[tracing::instrument(name = "event_store.read_stream", skip_all, fields(stream = %stream, direction = ?direction, from = ?from, max = max))]
    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_from(stream, direction, from, max, false)
            .await
    }

    #[tracing::instrument(name = "event_store.read_all", skip_all, fields(after = ?after, prefix = %prefix, max = max))]
    async fn read_all(
        &self,
        after: Option<Position>,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let start = after.map_or(StreamPosition::Start, |p| {
            StreamPosition::Position(to_kurrent_position(p))
        });
        // Reading $all from a position includes the event at that position; ask for one more.
        let options = ReadAllOptions::default()
            .forwards()
            .position(start)
            .filter(stream_filter(prefix))
            .max_count(max + 1);
        self.send(|client| {
            let options = options.clone();
            async move {
                let mut reader = client.read_all(&options).await?;
                let mut out = Vec::new();
                while let Some(event) = reader.next().await? {
                    let recorded = to_recorded(&event);
                    if after.is_some_and(|a| recorded.position <= a) {
                        continue;
                    }
                    out.push(recorded);
                    if out.len() == max {
                        break;
                    }
                }
                Ok(out)
            }
        })
        .await
        .map_err(|e| map_error(e, "$all"))
    }

    async fn subscribe_all(
        &self,
        after: Option<Position>,
        prefix: &str,
    ) -> Result<Subscription, StoreError> {
        let start = after.map_or(StreamPosition::Start, |p| {
            StreamPosition::Position(to_kurrent_position(p))
        });
        let options = SubscribeToAllOptions::default()
            .position(start)
            .filter(stream_filter(prefix));
        let (client, generation) = self.current();
        let mut subscription = client.subscribe_to_all(&options).await;
        let store = self.clone();
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            loop {
                let event = match subscription.next().await {
                    Ok(event) => to_recorded(&event),
                    Err(e) => {
                        // The subscriber subscribes again; let it find a working client.
                        if recovery(&e) == Recovery::Rebuild {
                            store.rebuild(generation);
                        }
                        let _ = tx.send(Err(map_error(e, "$all"))).await;
                        return;
                    }
                };
                if after.is_some_and(|a| event.position <= a) {
                    continue;
                }
                if tx.send(Ok(vec![event])).await.is_err() {
                    return;
                }
            }
        });
        Ok(Subscription::new(rx, task))
    }

    #[tracing::instrument(name = "event_store.head_position", skip_all)]
    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        let options = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .max_count(1);
        self.send(|client| {
            let options = options.clone();
            async move {
                let mut reader = client.read_all(&options).await?;
                Ok(reader.next().await?.map(|e| {
                    let p = e.get_original_event().position;
                    Position::new(p.commit, p.prepare)
                }))
            }
        })
        .await
        .map_err(|e| map_error(e, "$all"))
    }

    /// Reads one event of an ordinary stream (missing is fine) within a deadline: the server
    /// answers, without needing the right to read `$all`.
    async fn ping(&self) -> Result<(), StoreError> {
        let options = ReadStreamOptions::default()
            .max_count(1)
            .deadline(PING_DEADLINE);
        let (client, generation) = self.current();
        let answer = tokio::time::timeout(PING_DEADLINE, async {
            let mut reader = client.read_stream(PING_STREAM, &options).await?;
            reader.next().await.map(|_| ())
        })
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "no answer from KurrentDB within {} s",
                PING_DEADLINE.as_secs()
            ))
        })?;
        match answer {
            Ok(()) | Err(kurrentdb::Error::ResourceNotFound) => Ok(()),
            Err(e) => {
                if recovery(&e) == Recovery::Rebuild {
                    self.rebuild(generation);
                }
                Err(map_error(e, PING_STREAM))
            }
        }
    }

    fn backend(&self) -> &'static str {
        "kurrentdb"
    }
}

#[cfg(test)]
mod tests;

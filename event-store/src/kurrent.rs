//! The KurrentDB backend, through the official `kurrentdb` client (the maintained successor of
//! the end-of-life `eventstore` crate).
//!
//! Appends always state the expected revision, so the server's event-id de-duplication applies.
//! The server accepts re-sent ids without comparing content, so after every append the written
//! range is read back and compared: the same ids with other content is reported as a conflict,
//! as on PostgreSQL. Correlation and causation go in the well-known `$correlationId` and
//! `$causationId` metadata keys; the schema version rides along as `schemaVersion`.

use crate::{
    AppendResult, CurrentRevision, Direction, EventStore, ExpectedRevision, Metadata, NewEvent,
    Position, RecordedEvent, StoreError, Subscription,
};
use async_trait::async_trait;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, ReadStreamOptions,
    StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The event store on a KurrentDB node or cluster.
#[derive(Clone)]
pub struct KurrentStore {
    client: Client,
}

/// What is written as the event's custom metadata.
#[derive(Serialize, Deserialize)]
struct StoredMetadata {
    #[serde(flatten)]
    metadata: Metadata,
    #[serde(rename = "schemaVersion", default = "one")]
    schema_version: u32,
}

fn one() -> u32 {
    1
}

fn map_error(e: kurrentdb::Error) -> StoreError {
    use kurrentdb::Error as E;
    match e {
        E::ResourceNotFound => StoreError::StreamNotFound(String::new()),
        E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::DeadlineExceeded
        | E::NotLeaderException(_) => StoreError::Unavailable(e.to_string()),
        E::Grpc {
            code: tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled,
            ..
        } => StoreError::Unavailable(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

fn to_kurrent_position(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

fn to_recorded(event: &kurrentdb::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    let position = Position::new(event.position.commit, event.position.prepare);
    let corrupt = |what: &str, e: serde_json::Error| StoreError::Corrupt {
        position,
        reason: format!("{what}: {e}"),
    };
    let data = serde_json::from_slice(&event.data).map_err(|e| corrupt("data", e))?;
    let stored: StoredMetadata = if event.custom_metadata.is_empty() {
        StoredMetadata {
            metadata: Metadata::default(),
            schema_version: 1,
        }
    } else {
        serde_json::from_slice(&event.custom_metadata).map_err(|e| corrupt("metadata", e))?
    };
    Ok(RecordedEvent {
        stream_id: event.stream_id().to_owned(),
        revision: event.revision,
        position,
        id: event.id,
        event_type: event.event_type.clone(),
        schema_version: stored.schema_version,
        data,
        metadata: stored.metadata,
        recorded_at: event.created,
        malformed: None,
    })
}

impl KurrentStore {
    /// Creates a client from a `kurrentdb://` or `esdb://` connection string. The connection is
    /// made lazily.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the connection string does not parse.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let settings: ClientSettings =
            url.parse()
                .map_err(|e: kurrentdb::ClientSettingsParseError| {
                    StoreError::InvalidUrl(e.to_string())
                })?;
        let client = Client::new(settings).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        Ok(Self { client })
    }

    async fn read_range(
        &self,
        stream: &str,
        first: u64,
        count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self
            .read_stream(stream, Direction::Forwards, Some(first), count)
            .await
        {
            Err(StoreError::StreamNotFound(_)) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Compares what is stored from revision `first` with what we meant to write.
    async fn check_written(
        &self,
        stream: &str,
        first: u64,
        events: &[NewEvent],
    ) -> Result<Option<AppendResult>, StoreError> {
        let stored = self.read_range(stream, first, events.len()).await?;
        crate::compare_with_stored(&stored, events)
    }
}

#[async_trait]
impl EventStore for KurrentStore {
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
        let state = match expected {
            ExpectedRevision::NoStream => StreamState::NoStream,
            ExpectedRevision::Exact(r) => StreamState::StreamRevision(r),
            ExpectedRevision::Any => StreamState::Any,
        };
        let data = events
            .iter()
            .map(|e| {
                let meta = StoredMetadata {
                    metadata: e.metadata.clone(),
                    schema_version: e.schema_version,
                };
                EventData::json(&e.event_type, &e.data)
                    .and_then(|d| d.id(e.id).metadata_as_json(&meta))
                    .map_err(|err| StoreError::Backend(err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().stream_state(state);
        let n = events.len() as u64;
        match self.client.append_to_stream(stream, &options, data).await {
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
                if let Some(original) = self.check_written(stream, first, &events).await? {
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
            Err(e) => Err(map_error(e)),
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default().max_count(max);
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
        let not_found = |e: kurrentdb::Error| match map_error(e) {
            StoreError::StreamNotFound(_) => StoreError::StreamNotFound(stream.to_owned()),
            other => other,
        };
        let mut reader = self
            .client
            .read_stream(stream, &options)
            .await
            .map_err(not_found)?;
        let mut out = Vec::new();
        while let Some(event) = reader.next().await.map_err(not_found)? {
            out.push(to_recorded(event.get_original_event())?);
        }
        Ok(out)
    }

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
            .filter(SubscriptionFilter::on_stream_name().add_prefix(prefix))
            .max_count(max + 1);
        let mut reader = self.client.read_all(&options).await.map_err(map_error)?;
        let mut out = Vec::new();
        while let Some(event) = reader.next().await.map_err(map_error)? {
            let recorded = to_recorded(event.get_original_event())?;
            if after.is_some_and(|a| recorded.position <= a) || recorded.stream_id.starts_with('$')
            {
                continue;
            }
            out.push(recorded);
            if out.len() == max {
                break;
            }
        }
        Ok(out)
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
            .filter(SubscriptionFilter::on_stream_name().add_prefix(prefix));
        let mut subscription = self.client.subscribe_to_all(&options).await;
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            loop {
                let item = match subscription.next().await {
                    Ok(event) => to_recorded(event.get_original_event()),
                    Err(e) => Err(map_error(e)),
                };
                let failed = item.is_err();
                if let Ok(e) = &item {
                    if after.is_some_and(|a| e.position <= a) || e.stream_id.starts_with('$') {
                        continue;
                    }
                }
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Subscription::new(rx, task))
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        let options = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .max_count(1);
        let mut reader = self.client.read_all(&options).await.map_err(map_error)?;
        let head = reader.next().await.map_err(map_error)?;
        Ok(head.map(|e| {
            let p = e.get_original_event().position;
            Position::new(p.commit, p.prepare)
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.head_position().await.map(|_| ())
    }

    fn backend(&self) -> &'static str {
        "kurrentdb"
    }
}

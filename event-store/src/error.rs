use crate::{ExpectedRevision, Position};
use uuid::Uuid;

/// What can go wrong talking to an event store. Callers branch on these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the expected revision; nothing was written.
    #[error("stream {stream} is at {actual}, not at the expected {expected}")]
    WrongExpectedRevision {
        stream: String,
        expected: ExpectedRevision,
        actual: CurrentRevision,
    },
    /// An event id was already used for other content (or in another place); nothing was written.
    #[error("event id {event_id} was already appended with different content")]
    DuplicateEventId { event_id: Uuid },
    #[error("stream {0} not found")]
    StreamNotFound(String),
    /// The stream was deleted and cannot be written again; nothing was written.
    #[error("stream {0} was deleted")]
    StreamDeleted(String),
    /// The store cannot be reached now; retrying later may work.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("'{0}' is not a valid position")]
    InvalidPosition(String),
    #[error("invalid event store url: {0}")]
    InvalidUrl(String),
    /// A stored event could not be read back (bad JSON, missing fields).
    #[error("corrupt event at {position}: {reason}")]
    Corrupt { position: Position, reason: String },
    /// The PostgreSQL log holds transaction ids this cluster has not reached: it was copied
    /// from another cluster. Its history would be invisible and new events would sort before
    /// it, so the store refuses to start.
    #[error(
        "es_events holds transaction ids up to {newest}, ahead of this PostgreSQL cluster's next \
         transaction id {next}: the log was copied from another cluster (dump and restore, or \
         logical replication) and would be read out of order. Stop PostgreSQL, advance its \
         transaction id epoch past the copied ids with `pg_resetwal --epoch={epoch} -D <data \
         directory>`, and start it again",
        epoch = (.newest >> 32) + 1
    )]
    LogFromAnotherCluster { newest: u64, next: u64 },
    #[error("event store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// A concurrency conflict: re-read and decide again, or report a conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::WrongExpectedRevision { .. } | Self::DuplicateEventId { .. }
        )
    }
}

/// Where a stream actually stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentRevision {
    NoStream,
    Current(u64),
}

impl std::fmt::Display for CurrentRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoStream => f.write_str("no stream"),
            Self::Current(r) => write!(f, "revision {r}"),
        }
    }
}

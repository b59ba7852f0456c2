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

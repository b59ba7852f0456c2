//! `milestone`, the analyst's command line, over either event-store backend.
//!
//! `args` declares the commands; `history` prints one order's events; `export` streams the log
//! to JSON Lines, CSV or Parquet through a temporary file that is renamed only when complete;
//! `travel` folds the domain's `evolve` over an order's history up to a revision or a moment.
//! `rebuild` delegates to the projector.

#![forbid(unsafe_code)]

pub mod args;
pub mod export;
pub mod history;
pub mod travel;

use domain::EventContract;
use event_store::{EventStore, RecordedEvent, StoreError};

/// What the command line reports to the user, with the exit code it leaves.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("order {0} not found: its stream has no events")]
    UnknownOrder(String),
    #[error("the event store cannot be reached: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Output(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// 2 for what the user can fix in the command, 3 for an unreachable store, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::UnknownOrder(_) | Self::Usage(_) | Self::Output(_) => 2,
            Self::Unreachable(_) => 3,
            Self::Failed(_) => 1,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unreachable(m),
            StoreError::InvalidUrl(m) => Self::Usage(format!("invalid event store URL: {m}")),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// Connects to the store, mapping failures to what the user should hear.
///
/// # Errors
/// [`CliError::Unreachable`] or [`CliError::Usage`].
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn EventStore>, CliError> {
    let store = event_store::connect(url, &event_store::StoreOptions { pool_size: 4 }).await?;
    store.ping().await?;
    Ok(store)
}

/// An order's events, oldest first.
///
/// # Errors
/// [`CliError::UnknownOrder`] when the stream is empty; store errors.
pub async fn order_events(
    store: &dyn EventStore,
    order_id: &str,
) -> Result<Vec<RecordedEvent>, CliError> {
    let id = domain::OrderId::parse(order_id).map_err(|e| CliError::Usage(e.to_string()))?;
    let events = event_store::read_whole_stream(store, &id.stream_name()).await?;
    if events.is_empty() {
        return Err(CliError::UnknownOrder(id.to_string()));
    }
    Ok(events)
}

/// When an event happened: the command's time if recorded, else when it was stored.
pub fn occurred_at(e: &RecordedEvent) -> chrono::DateTime<chrono::Utc> {
    e.metadata.occurred_at.unwrap_or(e.recorded_at)
}

/// The domain event a stored event holds; a malformed one does not decode, with its reason.
///
/// # Errors
/// Why the event does not decode.
pub fn decode(e: &RecordedEvent) -> Result<domain::OrderEvent, String> {
    if let Some(reason) = &e.malformed {
        return Err(format!("malformed: {reason}"));
    }
    domain::OrderEvent::decode(&e.event_type, e.schema_version, &e.data).map_err(|e| e.to_string())
}

/// A readable one-line summary; the raw type when the event does not decode.
pub fn summary(e: &RecordedEvent) -> String {
    decode(e)
        .map(|d| d.summary())
        .unwrap_or_else(|err| format!("(cannot decode: {err})"))
}

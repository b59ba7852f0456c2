//! `milestone`, the analyst's command line, over either event-store backend.
//!
//! `args` declares the commands; `workflows` lists the workflows they serve (`--workflow`,
//! default `orders`); `history` prints one instance's events; `export` streams the log to JSON
//! Lines, CSV or Parquet through a temporary file that is renamed only when complete, each event
//! upcast to its current version; `travel` folds the workflow's `evolve` over an instance's
//! history up to a revision or a moment. `rebuild` delegates to the projector.

#![forbid(unsafe_code)]

pub mod args;
pub mod export;
pub mod history;
pub mod travel;
pub mod workflows;

use event_store::{EventStore, RecordedEvent, StoreError};
use workflows::CliWorkflow;

/// What the command line reports to the user, with the exit code it leaves.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{instance} {id} not found: its stream has no events")]
    UnknownInstance { instance: &'static str, id: String },
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
            Self::UnknownInstance { .. } | Self::Usage(_) | Self::Output(_) => 2,
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

/// One instance's events, oldest first.
///
/// # Errors
/// [`CliError::Usage`] for an id that is not a UUID; [`CliError::UnknownInstance`] when the
/// stream is empty; store errors.
pub async fn instance_events(
    store: &dyn EventStore,
    workflow: &CliWorkflow,
    id: &str,
) -> Result<Vec<RecordedEvent>, CliError> {
    let stream = workflow.stream(id)?;
    let events = event_store::read_whole_stream(store, &stream).await?;
    if events.is_empty() {
        return Err(CliError::UnknownInstance {
            instance: workflow.instance,
            id: stream[workflow.stream_prefix.len()..].to_owned(),
        });
    }
    Ok(events)
}

/// When an event happened: the command's time if recorded, else when it was stored.
pub fn occurred_at(e: &RecordedEvent) -> chrono::DateTime<chrono::Utc> {
    e.metadata.occurred_at.unwrap_or(e.recorded_at)
}

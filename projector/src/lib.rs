//! Milestone's projector: the PostgreSQL read models of the order workflow.
//!
//! `model` is the pure part (a row, and what one event does to it); `db` holds the SQL, one
//! batched statement per table; `projection` applies batches of events and their checkpoint in
//! one transaction, NOTIFYs listeners, follows the log live, rebuilds and retries parked
//! orders; `lease` keeps one active instance per projection and fences the ones it replaced.
//! The read-model SQL itself lives in `schemas/read-models/`, the contract with the query API.

#![forbid(unsafe_code)]

pub mod config;
pub mod db;
pub mod lease;
pub mod model;
pub mod projection;
pub mod startup;

pub use config::{Config, Deadlines};
pub use projection::{BatchOutcome, Progress, Projector, CHANGES_CHANNEL, PROJECTION};

use event_store::{Position, StoreError};

impl From<deadpool_postgres::PoolError> for ProjectorError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("read-model database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("the checkpoint moved (expected {expected:?}, found {found:?}): another projector is writing")]
    CheckpointMoved {
        expected: Option<Position>,
        found: Option<Position>,
    },
    #[error("another projector holds the projection; stop it first")]
    LeaseHeld,
    #[error("lost the projection's lease")]
    LeaseLost,
    #[error("cannot take the projection's lease")]
    Lease(#[from] lease::LeaseError),
    #[error("the event subscription ended")]
    SubscriptionEnded,
    #[error("order {0} has no parked events")]
    NotParked(uuid::Uuid),
    #[error("revision {revision} still cannot be applied: {error}")]
    StillFailing { revision: u64, error: String },
    #[error("{0}")]
    Corrupt(String),
    #[error(
        "the checkpoint of projection {projection} was written reading the {checkpoint} event store, \
         but the configured event store is {configured}; positions of the two cannot be compared: \
         point MILESTONE_EVENT_STORE_URL back at the {checkpoint} store, or rebuild the projection \
         (`projector rebuild`) to replay it from the {configured} store"
    )]
    OtherEventStore {
        projection: &'static str,
        checkpoint: String,
        configured: &'static str,
    },
}

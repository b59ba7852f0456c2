//! The relay: follows the event log from its own checkpoint (either backend) and publishes the
//! public integration contract to NATS JetStream: public events, and work requests for the
//! payment, inventory, warehouse, carrier and returns services (see [`contract`]).
//!
//! One relay runs per workflow (its stream of work), generic over [`domain::Workflow`]; a
//! fenced lease keeps one instance active while others stand by. The checkpoint moves only after
//! JetStream acknowledged every message of a batch, and only under the lease's token. `metrics`
//! declares what the relay counts (published, dead letters, interruptions) and its lag.

#![forbid(unsafe_code)]

pub mod config;
pub mod contract;
pub mod db;
pub mod metrics;
pub mod nats_server;
pub mod publisher;
pub mod runtime;

pub use config::Config;
pub use runtime::Relay;

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the event store failed")]
    Store(#[from] event_store::StoreError),
    #[error("the relay's database failed")]
    Database(#[from] tokio_postgres::Error),
    #[error("no connection to the relay's database")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the relay's database URL is invalid")]
    PoolSetup(#[from] service_kit::postgres::PoolSetupError),
    #[error("NATS refused the connection or the stream")]
    Nats(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the checkpoint of {relay} was written reading the {checkpoint} event store, not the configured {configured} one")]
    OtherEventStore {
        relay: String,
        checkpoint: String,
        configured: &'static str,
    },
    #[error("the checkpoint of {relay} is not a log position: {position}")]
    BadCheckpoint { relay: String, position: String },
    #[error("the lease was lost")]
    LeaseLost,
    #[error("stopped")]
    Stopped,
}

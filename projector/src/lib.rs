//! Milestone's projector: PostgreSQL read models kept from the event log.
//!
//! `projection` says what a projection is (the [`Projection`] trait); `runtime` runs any
//! projection: batches of events applied with their checkpoint in one transaction, NOTIFY,
//! the live loop, rebuild, dead letters, parking, retries and `correction`s; `db` holds the
//! runtime's SQL; `lease` keeps one active instance per projection and fences the ones it
//! replaced; `metrics` declares what the runtime measures (lag, batches, dead letters, parked
//! streams, command -> visible). `status_table` is what every "one status row per instance, a timeline, counts by
//! status" projection shares (the row made from its column list, its SQL, its batch, the checks
//! every event passes); `orders` is the order projection on it (its columns, how an event changes
//! an order's row), `returns` the returns projection (with its own deadlines); `startup`
//! registers the projections and carries out the command line. The read-model SQL itself lives
//! in `schemas/read-models/`, the contract with the query API.

#![forbid(unsafe_code)]

pub mod config;
pub mod correction;
pub mod db;
pub mod lease;
pub mod metrics;
pub mod orders;
pub mod partition;
pub mod projection;
pub mod returns;
pub mod runtime;
pub mod startup;
pub mod status_table;

pub use config::{Config, Deadlines};
pub use orders::{OrderProjection, ORDER_STATUS_COLUMNS};
pub use partition::Partition;
pub use projection::{BatchOutcome, Descriptor, Progress, Projection, CHANGES_CHANNEL};
pub use returns::{ReturnProjection, RETURN_STATUS_COLUMNS};
pub use runtime::{Runtime, Switched};

use event_store::{Position, StoreError};

/// Every projection the projector keeps, as other processes (the query API, the command line)
/// know them. `startup` starts one runtime for each and refuses to start when they differ.
pub const PROJECTIONS: &[Descriptor] = &[
    Descriptor::of::<OrderProjection>(),
    Descriptor::of::<ReturnProjection>(),
];

/// The order projection's runtime, as the binaries and tests use it.
pub type Projector = Runtime<OrderProjection>;
/// The order projection's name in `projection_checkpoints`.
pub const PROJECTION: &str = <OrderProjection as Projection>::NAME;

impl Projector {
    /// Connects the order projection, its deadlines from `config`.
    ///
    /// # Errors
    /// As [`Runtime::start`].
    pub async fn connect(config: Config) -> Result<Self, ProjectorError> {
        let projection = OrderProjection::new(config.deadlines.clone())
            .with_reminder_spacing(config.reminder_spacing);
        Self::start(config, projection).await
    }
}

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
    #[error("a blue/green rebuild or rollback of {0} is already running; wait for it to finish")]
    BlueGreenRunning(&'static str),
    #[error("{0} has no previous version to roll back to: only a blue/green rebuild keeps one")]
    NoPreviousVersion(&'static str),
    #[error("the shadow of {projection} stayed more than {bound} events behind the live projection at every attempt to switch it in; the log grows faster than it catches up")]
    ShadowBehind {
        projection: &'static str,
        bound: usize,
    },
    #[error("lost the projection's lease")]
    LeaseLost,
    #[error("cannot take the projection's lease")]
    Lease(#[from] lease::LeaseError),
    #[error("the event subscription ended")]
    SubscriptionEnded,
    #[error("{0} has no parked events")]
    NotParked(uuid::Uuid),
    #[error("revision {revision} still cannot be applied: {error}")]
    StillFailing {
        revision: u64,
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Corrupt(String),
    /// A projection's own settings do not hold.
    #[error("the configuration of {what} is not valid")]
    Config {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("a row of the batch cannot be written")]
    Seal(#[source] Box<dyn std::error::Error + Send + Sync>),
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

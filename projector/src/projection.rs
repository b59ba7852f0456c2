//! What a projection is to the runtime: its name, the streams it follows, its tables and how it
//! turns a batch of events into rows. The runtime ([`crate::runtime::Runtime`]) owns everything
//! else: subscription, catch-up, checkpoint and fencing, dead letters and parking, retries and
//! corrections, the lease, NOTIFY and rebuild.

use crate::ProjectorError;
use deadpool_postgres::Transaction;
use event_store::{Position, RecordedEvent};
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// The channel notified after each committed batch:
/// `{"projection": "<name>", "position": "...", "<changed key>": [...]}`
/// (the list is null when it would not fit a notification).
pub const CHANGES_CHANNEL: &str = "milestone_projection";

/// A read model kept from the log. The runtime calls, per batch and in one transaction:
/// [`Projection::load`] (pipelined with the checkpoint's lock), [`Projection::apply`] for each
/// event in log order, [`Projection::seal`], then [`Projection::write`] (pipelined with the
/// checkpoint's update and the NOTIFY).
pub trait Projection: Send + Sync + 'static {
    /// The name in `projection_checkpoints`, leases, dead letters and corrections.
    const NAME: &'static str;
    /// The streams it follows: `<STREAM_PREFIX><instance id>`.
    const STREAM_PREFIX: &'static str;
    /// Its read-model migrations, applied in order at start-up after the runtime's own
    /// ([`crate::db::RUNTIME_MIGRATIONS`]).
    const MIGRATIONS: &'static [(&'static str, &'static str)];
    /// The tables a rebuild empties.
    const TABLES: &'static [&'static str];
    /// The key of the changed instances' ids in a NOTIFY payload.
    const CHANGED_KEY: &'static str;

    /// What a batch works on: the rows it loaded and what applying events made of them.
    type Batch: Send + Sync;
    /// Why an event cannot be applied; the event is dead-lettered with its text and its stream
    /// parked.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Loads what applying `events` needs, in one statement where it can (it is pipelined).
    /// What `carried` (the batch just before this one in the log, applied but perhaps not yet
    /// committed) holds is taken from it instead: its rows are newer than the database's.
    fn load<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        events: &'a [RecordedEvent],
        carried: Option<&'a Self::Batch>,
    ) -> impl Future<Output = Result<Self::Batch, ProjectorError>> + Send + 'a;

    /// Applies one event: `Ok(true)` when applied, `Ok(false)` when it had been applied before.
    ///
    /// # Errors
    /// Why the event cannot be applied; the batch is then as it was before the event.
    fn apply(&self, batch: &mut Self::Batch, event: &RecordedEvent) -> Result<bool, Self::Error>;

    /// Finishes the batch before it is written, and returns the ids of the instances it changed,
    /// in the order first changed.
    ///
    /// # Errors
    /// When a row cannot be finished.
    fn seal(&self, batch: &mut Self::Batch) -> Result<Vec<Uuid>, ProjectorError>;

    /// Writes the batch's rows, its statements pipelined.
    fn write<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        batch: &'a Self::Batch,
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send + 'a;

    /// The instance id of one of its streams.
    fn instance_of(stream_id: &str) -> Option<Uuid> {
        stream_id
            .strip_prefix(Self::STREAM_PREFIX)
            .and_then(|id| Uuid::parse_str(id).ok())
    }
}

/// What other processes know of a projection: its name, the streams it follows and the key of
/// the changed ids in its notifications. [`crate::PROJECTIONS`] lists every registered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub name: &'static str,
    pub stream_prefix: &'static str,
    pub changed_key: &'static str,
}

impl Descriptor {
    pub const fn of<P: Projection>() -> Self {
        Self {
            name: P::NAME,
            stream_prefix: P::STREAM_PREFIX,
            changed_key: P::CHANGED_KEY,
        }
    }

    /// The registered projection named `name`.
    pub fn named(name: &str) -> Option<&'static Self> {
        crate::PROJECTIONS.iter().find(|d| d.name == name)
    }

    /// The registered projection following `stream`, and the instance id the stream names.
    pub fn following(stream: &str) -> Option<(&'static Self, &str)> {
        crate::PROJECTIONS.iter().find_map(|d| {
            stream
                .strip_prefix(d.stream_prefix)
                .map(|instance| (d, instance))
        })
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub checkpoint: Option<Position>,
    pub applied: usize,
    pub dead_lettered: usize,
    pub changed: usize,
}

/// Progress of a long run (rebuild), for printing.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub events: u64,
    pub elapsed: Duration,
    pub position: Option<Position>,
}

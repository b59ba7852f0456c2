//! The repair of parked instances (`retryParked`): the projector's own retry, run here so an
//! operator can call it over the API. The projections' runtimes are connected on the first
//! retry, with the projector's settings, and kept.

use projector::db::RepairNote;
use projector::startup::{self, Registered, Retried};
use projector::ProjectorError;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Retries parked instances in every registered projection.
pub struct Repairs {
    config: projector::Config,
    /// Every registered projection's runtime, connected on first use.
    projections: OnceCell<Vec<Box<dyn Registered>>>,
}

impl Repairs {
    pub fn new(config: projector::Config) -> Self {
        Self {
            config,
            projections: OnceCell::new(),
        }
    }

    /// Applies instance `id`'s dead-lettered events again and unparks it, in each projection
    /// that parked it: see [`startup::retry_parked`].
    ///
    /// # Errors
    /// [`ProjectorError::NotParked`], [`ProjectorError::StillFailing`], or what connecting
    /// to the event store and the read models ran into.
    pub async fn retry(&self, id: Uuid, note: &RepairNote) -> Result<Vec<Retried>, ProjectorError> {
        let projections = self
            .projections
            .get_or_try_init(|| startup::register(&self.config))
            .await?;
        startup::retry_parked(projections, id, note).await
    }
}

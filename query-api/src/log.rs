//! The event log, reached through the event store's port on first use: how far a projection is
//! behind it, and whether a projection has events of its own up to a consistency token.

use event_store::{EventStore, Position, StoreError, StoreOptions};
use projector::Descriptor;
use std::sync::Arc;

/// How many unapplied events `lagEvents` counts at most: past this, the projection is far
/// behind and an exact count is not worth reading the log for.
pub const LAG_COUNT_LIMIT: usize = 10_000;

pub struct EventLog {
    url: String,
    store: tokio::sync::OnceCell<Arc<dyn EventStore>>,
}

impl EventLog {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            store: tokio::sync::OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&Arc<dyn EventStore>, StoreError> {
        self.store
            .get_or_try_init(|| event_store::connect(&self.url, &StoreOptions { pool_size: 2 }))
            .await
    }

    /// How many events of `projection`'s streams after `checkpoint` it has not applied (at most
    /// [`LAG_COUNT_LIMIT`]), and the age in seconds of the oldest of them (0 when none).
    pub async fn lag(
        &self,
        projection: &Descriptor,
        checkpoint: Option<Position>,
    ) -> Result<(i64, f64), StoreError> {
        self.lag_of(projection.stream_prefix, checkpoint).await
    }

    /// How many events of the streams starting with `prefix` follow `checkpoint` (at most
    /// [`LAG_COUNT_LIMIT`]), and the age in seconds of the oldest of them (0 when none): the
    /// lag of any reader of the log with a checkpoint (a projection, a relay).
    pub async fn lag_of(
        &self,
        prefix: &str,
        checkpoint: Option<Position>,
    ) -> Result<(i64, f64), StoreError> {
        let store = self.store().await?;
        event_store::lag_behind(store.as_ref(), prefix, checkpoint, LAG_COUNT_LIMIT).await
    }

    /// The position of the newest event readers can see.
    pub async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.store().await?.head_position().await
    }

    /// Whether the log holds an event of `projection`'s streams after `checkpoint` and at or
    /// before `token` (as far as readers can see it).
    pub async fn has_events_between(
        &self,
        projection: &Descriptor,
        checkpoint: Option<Position>,
        token: Position,
    ) -> Result<bool, StoreError> {
        let next = self
            .store()
            .await?
            .read_all(checkpoint, projection.stream_prefix, 1)
            .await?;
        Ok(next.first().is_some_and(|e| e.position <= token))
    }
}

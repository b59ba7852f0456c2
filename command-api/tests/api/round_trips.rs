//! How often a command asks the event store: each request is a round trip to the database.

use crate::helpers::*;
use async_trait::async_trait;
use event_store::{
    AppendResult, Direction, EventStore, ExpectedRevision, GuardedAppend, NewEvent, Position,
    RecordedEvent, StoreError, Subscription,
};
use std::sync::{Arc, Mutex};

/// The real store, with a note of every call made to it.
struct Noting {
    inner: Arc<dyn EventStore>,
    calls: Mutex<Vec<&'static str>>,
}

impl Noting {
    fn note(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait]
impl EventStore for Noting {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.note("append");
        self.inner.append(stream, expected, events).await
    }

    async fn append_guarded(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        guard: &str,
    ) -> Result<GuardedAppend, StoreError> {
        self.note("append_guarded");
        self.inner
            .append_guarded(stream, expected, events, guard)
            .await
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.note("read_stream");
        self.inner.read_stream(stream, direction, from, max).await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.note("read_all");
        self.inner.read_all(after, prefix, max).await
    }

    async fn subscribe_all(
        &self,
        after: Option<Position>,
        prefix: &str,
    ) -> Result<Subscription, StoreError> {
        self.note("subscribe_all");
        self.inner.subscribe_all(after, prefix).await
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        self.note("head_position");
        self.inner.head_position().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.note("ping");
        self.inner.ping().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[tokio::test]
async fn placing_an_order_with_an_idempotency_key_asks_the_event_store_once() {
    let noting: Arc<Mutex<Option<Arc<Noting>>>> = Arc::default();
    let slot = noting.clone();
    let app = spawn_app_with(move |inner| {
        let store = Arc::new(Noting {
            inner,
            calls: Mutex::default(),
        });
        *slot.lock().unwrap() = Some(store.clone());
        store
    })
    .await;
    let store = noting.lock().unwrap().clone().unwrap();

    let placed = app.keyed("/orders", "checkout-7", order_body()).await;
    assert_eq!(placed.status, 201, "{placed:?}");
    assert_eq!(store.take(), ["append_guarded"]);

    // A retry is answered from the stream, as before.
    let again = app.keyed("/orders", "checkout-7", order_body()).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, placed.text);
}

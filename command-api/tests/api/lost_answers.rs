//! An append whose commit went through but whose answer was lost (a group commit's reply that
//! never arrived) is redone, and the store answers that the events were already stored: the
//! command is answered as the success it was.

use crate::helpers::*;
use async_trait::async_trait;
use event_store::{
    AppendResult, Direction, EventStore, ExpectedRevision, GuardedAppend, NewEvent, Position,
    RecordedEvent, StoreError, Subscription,
};
use serde_json::json;
use std::sync::Arc;

/// The real store, each of whose appends commits, loses its answer and is redone: what the
/// caller gets is the store's answer to the repeat.
struct AnswerLost {
    inner: Arc<dyn EventStore>,
}

#[async_trait]
impl EventStore for AnswerLost {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let _lost = self.inner.append(stream, expected, events.clone()).await?;
        self.inner.append(stream, expected, events).await
    }

    async fn append_guarded(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        guard: &str,
    ) -> Result<GuardedAppend, StoreError> {
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
        self.inner.read_stream(stream, direction, from, max).await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, prefix, max).await
    }

    async fn subscribe_all(
        &self,
        after: Option<Position>,
        prefix: &str,
    ) -> Result<Subscription, StoreError> {
        self.inner.subscribe_all(after, prefix).await
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        self.inner.head_position().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[tokio::test]
async fn an_order_placed_without_a_key_whose_commit_answer_was_lost_is_answered_as_created() {
    let app = spawn_app_with(|inner| Arc::new(AnswerLost { inner })).await;

    let placed = app.place(order_body()).await;
    assert_eq!(placed.status, 201, "{placed:?}");
    assert_eq!(placed.header("idempotent-replayed"), None);
    assert_eq!(placed.body["status"], "PLACED");
    assert_eq!(placed.body["events"], json!(["OrderPlaced"]));
    assert_eq!(placed.body["revision"], 0);
    let id = placed.body["order_id"].as_str().unwrap();
    let stream = app.stream(id).await;
    assert_eq!(types(&stream), ["OrderPlaced"]);
    assert_eq!(
        placed.body["consistency_token"],
        stream[0].position.to_string()
    );

    let paid = app.action(id, "payment-authorized", payment("pay-1")).await;
    assert_eq!(paid.status, 200, "{paid:?}");
    assert_eq!(paid.body["events"], json!(["PaymentAuthorized"]));
    assert_eq!(paid.body["revision"], 1);
    assert_eq!(
        types(&app.stream(id).await),
        ["OrderPlaced", "PaymentAuthorized"]
    );
}

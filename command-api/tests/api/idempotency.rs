use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn a_retried_request_returns_the_original_outcome_however_often_and_whatever_came_after() {
    let app = spawn_app().await;
    let place = || {
        app.post("/orders")
            .header("Idempotency-Key", "checkout-1")
            .json(&order_body())
    };
    let first = app.send(place()).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let id = first.body["order_id"].as_str().unwrap().to_owned();

    app.action(&id, "payment-authorized", payment("pay-1"))
        .await;
    for _ in 0..3 {
        let again = app.send(place()).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.text, first.text, "same body as the original");
    }
    assert_eq!(app.stream(&id).await.len(), 2);

    let pay = || {
        app.post(&format!("/orders/{id}/inventory-reserved"))
            .header("Idempotency-Key", "res-call-1")
            .json(&json!({"reservation_id": "r1"}))
    };
    let accepted = app.send(pay()).await;
    assert_eq!(accepted.body["status"], "ACCEPTED");
    app.action(&id, "start-fulfillment", json!({})).await;
    let replay = app.send(pay()).await;
    assert_eq!(replay.text, accepted.text);
    assert_eq!(
        replay.body["status"], "ACCEPTED",
        "the original outcome, not today's state"
    );
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_refused() {
    let app = spawn_app().await;
    let first = app
        .send(
            app.post("/orders")
                .header("Idempotency-Key", "k-1")
                .json(&order_body()),
        )
        .await;
    let id = first.body["order_id"].as_str().unwrap().to_owned();
    let mut other = order_body();
    other["customer_id"] = json!("someone-else");
    let reply = app
        .send(
            app.post("/orders")
                .header("Idempotency-Key", "k-1")
                .json(&other),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.code(), "idempotency_key_reused");
    assert_eq!(app.stream(&id).await.len(), 1);
}

/// Asserts that `again` is `original` replayed: the same status and body, byte for byte, marked
/// as a replay.
fn assert_replay_of(again: &Reply, original: &Reply) {
    assert_eq!(again.status, original.status, "{again:?}");
    assert_eq!(again.text, original.text, "same body as the original");
    assert_eq!(
        again.header("content-type"),
        original.header("content-type")
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn a_keyed_refusal_retried_after_the_order_changed_is_replayed_not_executed() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    let path = format!("/orders/{id}/start-fulfillment");
    let refused = app.keyed(&path, "start-1", json!({})).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.code(), "illegal_transition");
    assert_eq!(refused.header("idempotent-replayed"), None);

    app.action(&id, "payment-authorized", payment("pay-1"))
        .await;
    app.action(&id, "inventory-reserved", json!({"reservation_id": "r1"}))
        .await;
    let again = app.keyed(&path, "start-1", json!({})).await;
    assert_replay_of(&again, &refused);
    assert_eq!(
        types(&app.stream(&id).await),
        [
            "OrderPlaced",
            "PaymentAuthorized",
            "InventoryReserved",
            "OrderAccepted"
        ],
        "the retried refusal started nothing"
    );
}

#[tokio::test]
async fn a_keyed_re_report_retried_after_later_events_returns_its_original_outcome() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    let path = format!("/orders/{id}/payment-authorized");
    app.action(&id, "payment-authorized", payment("pay-1"))
        .await;
    let no_op = app.keyed(&path, "pay-again", payment("pay-1")).await;
    assert_eq!(no_op.status, 200);
    assert_eq!(no_op.body["events"], json!([]));
    assert_eq!(no_op.body["status"], "PLACED");
    assert_eq!(no_op.header("idempotent-replayed"), None);

    app.action(&id, "inventory-reserved", json!({"reservation_id": "r1"}))
        .await;
    let again = app.keyed(&path, "pay-again", payment("pay-1")).await;
    assert_replay_of(&again, &no_op);
    assert_eq!(again.header("etag"), no_op.header("etag"));
    assert_eq!(again.body["status"], "PLACED", "the original outcome");
}

#[tokio::test]
async fn a_key_that_answered_without_events_refuses_a_different_request() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    let refused = app
        .keyed(&format!("/orders/{id}/start-fulfillment"), "k", json!({}))
        .await;
    assert_eq!(refused.status, 409);
    let reused = app
        .keyed(
            &format!("/orders/{id}/payment-authorized"),
            "k",
            payment("pay-1"),
        )
        .await;
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(reused.code(), "idempotency_key_reused");

    app.action(&id, "payment-authorized", payment("pay-1"))
        .await;
    let no_op = app
        .keyed(
            &format!("/orders/{id}/payment-authorized"),
            "n",
            payment("pay-1"),
        )
        .await;
    assert_eq!(no_op.status, 200);
    let reused = app
        .keyed(
            &format!("/orders/{id}/inventory-reserved"),
            "n",
            json!({"reservation_id": "r1"}),
        )
        .await;
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(
        types(&app.stream(&id).await),
        ["OrderPlaced", "PaymentAuthorized"],
        "neither reuse wrote anything"
    );
}

#[tokio::test]
async fn a_keyed_action_on_a_missing_order_keeps_its_404_after_the_order_is_placed() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4().to_string();
    let path = format!("/orders/{id}/payment-authorized");
    let missing = app.keyed(&path, "early", payment("pay-1")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "order_not_found");

    let mut body = order_body();
    body["order_id"] = json!(id);
    let reused = app.keyed("/orders", "early", body.clone()).await;
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert!(app.stream(&id).await.is_empty(), "the reuse placed nothing");

    assert_eq!(app.place(body).await.status, 201);
    let again = app.keyed(&path, "early", payment("pay-1")).await;
    assert_replay_of(&again, &missing);
    assert_eq!(types(&app.stream(&id).await), ["OrderPlaced"]);
}

#[tokio::test]
async fn recorded_answers_stay_out_of_the_order_streams_readers_follow() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    let refused = app
        .keyed(&format!("/orders/{id}/start-fulfillment"), "k", json!({}))
        .await;
    assert_eq!(refused.status, 409);
    // The log's readers see a commit once no older transaction is still running.
    let mut everything = Vec::new();
    for _ in 0..1500 {
        everything = app.store.read_all(None, "", 100).await.unwrap();
        if everything.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(everything.len(), 2, "the refusal is recorded somewhere");
    let followed = app
        .store
        .read_all(None, domain::ORDER_STREAM_PREFIX, 100)
        .await
        .unwrap();
    assert_eq!(types(&followed), ["OrderPlaced"]);
    assert!(everything
        .iter()
        .filter(|e| !e.stream_id.starts_with(domain::ORDER_STREAM_PREFIX))
        .all(|e| event_store::is_bookkeeping_stream(&e.stream_id)));
}

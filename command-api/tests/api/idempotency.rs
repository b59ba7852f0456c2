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

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn an_order_walks_from_placed_to_delivered() {
    let app = spawn_app().await;
    let placed = app.place(order_body()).await;
    assert_eq!(placed.status, 201, "{placed:?}");
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(
        placed.header("location"),
        Some(format!("/orders/{id}").as_str())
    );
    assert_eq!(placed.body["status"], "PLACED");
    assert_eq!(
        placed.body["pending_actions"],
        json!(["AUTHORIZE_PAYMENT", "RESERVE_INVENTORY"])
    );
    assert_eq!(placed.body["revision"], 0);
    assert_eq!(placed.header("etag"), Some("\"0\""));

    let steps = [
        (
            "payment-authorized",
            payment("pay-1"),
            "PLACED",
            json!(["RESERVE_INVENTORY"]),
        ),
        (
            "inventory-reserved",
            json!({"reservation_id": "res-1"}),
            "ACCEPTED",
            json!(["START_FULFILLMENT"]),
        ),
        (
            "start-fulfillment",
            json!({}),
            "IN_FULFILLMENT",
            json!(["SHIP"]),
        ),
        (
            "ship",
            json!({"carrier": "DHL", "tracking_number": "JD0146000062"}),
            "SHIPPED",
            json!(["CONFIRM_DELIVERY"]),
        ),
        ("confirm-delivery", json!({}), "DELIVERED", json!([])),
    ];
    let mut token = placed.body["consistency_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (action, body, status, pending) in steps {
        let reply = app.action(&id, action, body).await;
        assert_eq!(reply.status, 200, "{action}: {reply:?}");
        assert_eq!(reply.body["status"], status, "{action}");
        assert_eq!(reply.body["pending_actions"], pending, "{action}");
        let next = reply.body["consistency_token"].as_str().unwrap().to_owned();
        assert!(
            next.parse::<event_store::Position>().unwrap()
                > token.parse::<event_store::Position>().unwrap(),
            "tokens move forward"
        );
        token = next;
    }
    let events = app.stream(&id).await;
    assert_eq!(
        types(&events),
        [
            "OrderPlaced",
            "PaymentAuthorized",
            "InventoryReserved",
            "OrderAccepted",
            "FulfillmentStarted",
            "OrderShipped",
            "OrderDelivered"
        ]
    );
    assert_eq!(events[0].data["total_minor"], TOTAL);
}

#[tokio::test]
async fn an_empty_body_is_accepted_for_commands_without_fields() {
    let app = spawn_app().await;
    let id = app.accepted_order().await;
    let reply = app
        .send(app.post(&format!("/orders/{id}/start-fulfillment")))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["status"], "IN_FULFILLMENT");
}

#[tokio::test]
async fn cancelling_an_accepted_order_owes_compensations_until_they_are_recorded() {
    let app = spawn_app().await;
    let id = app.accepted_order().await;
    let cancelled = app
        .action(&id, "cancel", json!({"reason": "customer asked"}))
        .await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.body["status"], "CANCELLED");
    assert_eq!(
        cancelled.body["compensations_owed"],
        json!(["VOID_PAYMENT", "RELEASE_INVENTORY"])
    );
    assert_eq!(
        cancelled.body["pending_actions"],
        json!(["VOID_PAYMENT", "RELEASE_INVENTORY"])
    );

    let voided = app
        .action(&id, "payment-voided", json!({"payment_id": "pay-1"}))
        .await;
    assert_eq!(
        voided.body["compensations_owed"],
        json!(["RELEASE_INVENTORY"])
    );
    let released = app
        .action(
            &id,
            "inventory-released",
            json!({"reservation_id": "res-1"}),
        )
        .await;
    assert_eq!(released.status, 200);
    assert_eq!(released.body["compensations_owed"], json!([]));
    assert_eq!(released.body["pending_actions"], json!([]));
}

#[tokio::test]
async fn a_payment_reported_after_cancellation_is_recorded_and_owes_a_void() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    app.action(&id, "cancel", json!({"reason": "changed mind"}))
        .await;
    let late = app
        .action(&id, "payment-authorized", payment("pay-late"))
        .await;
    assert_eq!(late.status, 200, "{late:?}");
    assert_eq!(late.body["status"], "CANCELLED");
    assert_eq!(late.body["compensations_owed"], json!(["VOID_PAYMENT"]));
    assert_eq!(late.body["events"], json!(["PaymentAuthorized"]));
}

#[tokio::test]
async fn re_reporting_a_known_fact_is_a_no_op_success() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    let first = app
        .action(&id, "payment-authorized", payment("pay-1"))
        .await;
    let again = app
        .action(&id, "payment-authorized", payment("pay-1"))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["events"], json!([]));
    assert_eq!(again.body["revision"], first.body["revision"]);
    assert_eq!(app.stream(&id).await.len(), 2);
}

#[tokio::test]
async fn the_correlation_id_is_echoed_and_stored_with_a_causation_id() {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.post("/orders")
                .header("X-Correlation-Id", "checkout-77")
                .json(&order_body()),
        )
        .await;
    assert_eq!(reply.header("x-correlation-id"), Some("checkout-77"));
    assert_eq!(reply.body["correlation_id"], "checkout-77");
    let id = reply.body["order_id"].as_str().unwrap();
    let events = app.stream(id).await;
    assert_eq!(
        events[0].metadata.correlation_id.as_deref(),
        Some("checkout-77")
    );
    assert!(events[0].metadata.causation_id.is_some());

    let generated = app.place(order_body()).await;
    let cid = generated.header("x-correlation-id").unwrap();
    assert!(!cid.is_empty());
    assert_eq!(generated.body["correlation_id"], cid);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    test_support::drop_database(&app.database_url).await;
    let ready = Reply::from(
        app.client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.code(), "event_store_unavailable");
}

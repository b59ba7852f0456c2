//! Parked instances, listed and repaired over the API.

use crate::helpers::*;
use serde_json::json;
use uuid::Uuid;

const PARKED: &str =
    "{ projectionStatus { deadLetters parkedOrders parked { id reason deadLetters } } }";
const RETRY: &str = "mutation ($id: ID!) { retryParked(id: $id) { id projections eventsApplied } }";

/// An order whose `PaymentAuthorized` the projector cannot read, projected: it is parked at
/// revision 0, the event dead-lettered.
async fn parked_order(app: &TestApp) -> Uuid {
    let id = app.order("customer-parked", vec![]).await;
    app.append_raw(
        id,
        0,
        "PaymentAuthorized",
        json!({"payment": "p-1", "amount": 2250}),
    )
    .await;
    app.project_all().await;
    id
}

#[tokio::test]
async fn a_parked_order_is_listed_with_why_and_a_retry_after_its_fix_unparks_it() {
    let app = spawn_app().await;
    let id = parked_order(&app).await;

    let status = app.query(PARKED, json!({})).await;
    let projection = &status["data"]["projectionStatus"];
    assert_eq!(projection["parkedOrders"], 1, "{status}");
    assert_eq!(projection["parked"][0]["id"], id.to_string());
    assert_eq!(projection["parked"][0]["deadLetters"], 1);
    assert!(projection["parked"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("PaymentAuthorized"));

    let still = app.query(RETRY, json!({ "id": id })).await;
    assert_eq!(error_code(&still), "STILL_FAILING", "{still}");

    app.database()
        .await
        .execute(
            "update projection_dead_letters set data = $1",
            &[&json!({"payment_id": "p-1", "amount": {"amount_minor": TOTAL, "currency": "EUR"}})],
        )
        .await
        .unwrap();
    let retried = app.query(RETRY, json!({ "id": id })).await;

    assert_eq!(
        retried["data"]["retryParked"],
        json!({"id": id.to_string(), "projections": ["order_status"], "eventsApplied": 1}),
        "{retried}"
    );
    let order = app
        .query(
            "query ($id: ID!) { order(id: $id) { revision paymentId } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(order["data"]["order"]["revision"], 1);
    assert_eq!(order["data"]["order"]["paymentId"], "p-1");
    let status = app.query(PARKED, json!({})).await;
    assert_eq!(status["data"]["projectionStatus"]["parked"], json!([]));
    assert_eq!(status["data"]["projectionStatus"]["deadLetters"], 0);
}

#[tokio::test]
async fn retrying_an_order_that_is_not_parked_says_it_is_not_parked() {
    let app = spawn_app().await;
    let id = app.order("customer-fine", vec![]).await;
    app.project_all().await;

    let body = app.query(RETRY, json!({ "id": id })).await;

    assert_eq!(error_code(&body), "NOT_PARKED", "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains(&id.to_string()));
    assert_eq!(body["data"], serde_json::Value::Null);
}

#[tokio::test]
async fn retrying_something_that_is_not_an_order_id_is_refused_as_bad_input() {
    let app = spawn_app().await;

    let body = app.query(RETRY, json!({ "id": "order-7" })).await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
}

//! An order whose payment was stored by version 1 of `PaymentAuthorized` is decided on as the
//! current version.

use crate::helpers::*;
use serde_json::json;
use test_support::v1_payment;

#[tokio::test]
async fn an_order_paid_by_a_version_1_event_is_accepted_once_its_stock_is_reserved() {
    let app = spawn_app().await;
    let id = v1_payment::order_paid_in_v1(app.store.as_ref())
        .await
        .to_string();

    let reply = app
        .action(
            &id,
            "inventory-reserved",
            json!({"reservation_id": "res-1"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["status"], "ACCEPTED", "{reply:?}");

    let reply = app.action(&id, "start-fulfillment", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["status"], "IN_FULFILLMENT", "{reply:?}");
}

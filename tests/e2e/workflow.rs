use crate::stack::*;
use serde_json::json;

fn status_query(id: &str) -> String {
    format!("{{ order(id: \"{id}\") {{ status pendingActions compensationsOwed compensationsDone revision timeline {{ eventType }} }} }}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_over_rest_is_read_through_graphql_with_its_token_until_delivered() {
    let stack = Stack::start().await;
    let (status, placed) = stack.command("/orders", order_body()).await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["order_id"].as_str().unwrap().to_owned();
    let body = stack.query_fresh(&status_query(&id), &token(&placed)).await;
    assert_eq!(body["data"]["order"]["status"], "PLACED");

    let steps = [
        (
            "payment-authorized",
            json!({"payment_id": "pay-1", "amount_minor": TOTAL, "currency": "EUR"}),
            "PLACED",
        ),
        (
            "inventory-reserved",
            json!({"reservation_id": "res-1"}),
            "ACCEPTED",
        ),
        ("start-fulfillment", json!({}), "IN_FULFILLMENT"),
        (
            "ship",
            json!({"carrier": "UPS", "tracking_number": "1Z999AA10123"}),
            "SHIPPED",
        ),
        ("confirm-delivery", json!({}), "DELIVERED"),
    ];
    for (action, payload, expected) in steps {
        let (status, reply) = stack
            .command(&format!("/orders/{id}/{action}"), payload)
            .await;
        assert_eq!(status, 200, "{action}: {reply}");
        let body = stack.query_fresh(&status_query(&id), &token(&reply)).await;
        assert_eq!(
            body["data"]["order"]["status"], expected,
            "{action}: {body}"
        );
        assert_eq!(body["data"]["order"]["revision"], reply["revision"]);
    }
    let body = stack.query_fresh(&status_query(&id), &token(&placed)).await;
    assert_eq!(
        body["data"]["order"]["timeline"].as_array().unwrap().len(),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_shows_its_compensations_owed_then_done() {
    let stack = Stack::start().await;
    let (_, placed) = stack.command("/orders", order_body()).await;
    let id = placed["order_id"].as_str().unwrap().to_owned();
    stack
        .command(
            &format!("/orders/{id}/payment-authorized"),
            json!({"payment_id": "pay-1", "amount_minor": TOTAL, "currency": "EUR"}),
        )
        .await;
    let (_, cancelled) = stack
        .command(
            &format!("/orders/{id}/cancel"),
            json!({"reason": "customer asked"}),
        )
        .await;
    let body = stack
        .query_fresh(&status_query(&id), &token(&cancelled))
        .await;
    let order = &body["data"]["order"];
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["compensationsOwed"], json!(["VOID_PAYMENT"]));
    assert_eq!(order["pendingActions"], json!(["VOID_PAYMENT"]));

    let (status, voided) = stack
        .command(
            &format!("/orders/{id}/payment-voided"),
            json!({"payment_id": "pay-1"}),
        )
        .await;
    assert_eq!(status, 200);
    let body = stack.query_fresh(&status_query(&id), &token(&voided)).await;
    let order = &body["data"]["order"];
    assert_eq!(order["compensationsOwed"], json!([]));
    assert_eq!(order["compensationsDone"], json!(["VOID_PAYMENT"]));
}

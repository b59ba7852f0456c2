//! The returns workflow across the real processes: an order taken to delivery over REST, its
//! return requested, approved, inspected with one line refused and refunded, all read back
//! through GraphQL with each command's consistency token (no sleeps).

use crate::stack::*;
use serde_json::{json, Value};

const RETURN_QUERY: &str = "status pendingActions compensationsOwed refundDueMinor refundAcceptedMinor refundedMinor currency rmaNumber revision lines { sku quantity acceptedQuantity refusedQuantity } timeline { eventType }";

fn return_query(id: &str) -> String {
    format!("{{ return(orderId: \"{id}\") {{ {RETURN_QUERY} }} order(id: \"{id}\") {{ status return {{ status }} }} }}")
}

/// Two lines: 2 x SKU-1 at 1500 and 1 x SKU-2 at 800.
fn two_line_order() -> Value {
    let mut body = order_body();
    body["lines"] = json!([
        {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1500},
        {"sku": "SKU-2", "quantity": 1, "unit_price_minor": 800}
    ]);
    body
}

/// Places the order and takes it to delivery over the order routes; returns its id.
async fn delivered_order(stack: &Stack) -> String {
    let (status, placed) = stack.command("/orders", two_line_order()).await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["order_id"].as_str().unwrap().to_owned();
    for (action, payload) in [
        (
            "payment-authorized",
            json!({"payment_id": "pay-1", "amount_minor": 3800, "currency": "EUR"}),
        ),
        ("inventory-reserved", json!({"reservation_id": "res-1"})),
        ("start-fulfillment", json!({})),
        (
            "ship",
            json!({"carrier": "UPS", "tracking_number": "1Z999AA10123"}),
        ),
        ("confirm-delivery", json!({})),
    ] {
        let (status, reply) = stack
            .command(&format!("/orders/{id}/{action}"), payload)
            .await;
        assert_eq!(status, 200, "{action}: {reply}");
    }
    id
}

async fn request_return(stack: &Stack, id: &str) -> Value {
    let (status, requested) = stack
        .command(
            "/returns",
            json!({
                "order_id": id,
                "lines": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}],
                "reason": "wrong size"
            }),
        )
        .await;
    assert_eq!(status, 201, "{requested}");
    assert_eq!(requested["status"], "REQUESTED");
    requested
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_order_is_returned_inspected_and_refunded_and_graphql_shows_each_step() {
    let stack = Stack::start().await;
    let id = delivered_order(&stack).await;
    let requested = request_return(&stack, &id).await;
    let body = stack
        .query_fresh(&return_query(&id), &token(&requested))
        .await;
    let r = &body["data"]["return"];
    assert_eq!(r["status"], "REQUESTED", "{body}");
    assert_eq!(r["refundDueMinor"], 3800, "the order's prices: {body}");
    assert_eq!(r["pendingActions"], json!(["DECIDE_RETURN"]));
    assert_eq!(body["data"]["order"]["status"], "DELIVERED");
    assert_eq!(body["data"]["order"]["return"]["status"], "REQUESTED");

    let steps = [
        ("approve", json!({"rma_number": "RMA-77"}), "APPROVED"),
        (
            "items-received",
            json!({"lines": [
                {"sku": "SKU-1", "outcome": "ACCEPTED"},
                {"sku": "SKU-2", "outcome": "REFUSED"}
            ]}),
            "RECEIVED",
        ),
        (
            "refund-issued",
            json!({"refund_id": "ref-1", "amount_minor": 3000, "currency": "EUR"}),
            "REFUNDED",
        ),
    ];
    let mut last = Value::Null;
    for (action, payload, expected) in steps {
        let (status, reply) = stack
            .command(&format!("/returns/{id}/{action}"), payload)
            .await;
        assert_eq!(status, 200, "{action}: {reply}");
        assert_eq!(reply["status"], expected, "{action}: {reply}");
        let body = stack.query_fresh(&return_query(&id), &token(&reply)).await;
        assert_eq!(body["data"]["return"]["status"], expected, "{body}");
        assert_eq!(body["data"]["return"]["revision"], reply["revision"]);
        last = body;
    }
    let r = &last["data"]["return"];
    assert_eq!(r["rmaNumber"], "RMA-77");
    assert_eq!(r["refundAcceptedMinor"], 3000, "only the accepted line");
    assert_eq!(r["refundedMinor"], 3000);
    assert_eq!(r["pendingActions"], json!([]));
    assert_eq!(
        r["lines"],
        json!([
            {"sku": "SKU-1", "quantity": 2, "acceptedQuantity": 2, "refusedQuantity": 0},
            {"sku": "SKU-2", "quantity": 1, "acceptedQuantity": 0, "refusedQuantity": 1}
        ]),
        "{last}"
    );
    let timeline: Vec<&str> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        timeline,
        [
            "ReturnRequested",
            "ReturnApproved",
            "ReturnItemsReceived",
            "RefundIssued"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_return_whose_items_arrive_late_owes_shipping_them_back() {
    let stack = Stack::start().await;
    let id = delivered_order(&stack).await;
    request_return(&stack, &id).await;
    let (status, cancelled) = stack
        .command(
            &format!("/returns/{id}/cancel"),
            json!({"reason": "customer kept the items"}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let (status, late) = stack
        .command(
            &format!("/returns/{id}/items-received"),
            json!({"lines": [
                {"sku": "SKU-1", "outcome": "ACCEPTED"},
                {"sku": "SKU-2", "outcome": "ACCEPTED"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "a late fact is recorded: {late}");
    let body = stack.query_fresh(&return_query(&id), &token(&late)).await;
    let r = &body["data"]["return"];
    assert_eq!(r["status"], "CANCELLED", "{body}");
    assert_eq!(r["compensationsOwed"], json!(["SHIP_ITEMS_BACK"]), "{body}");
    assert_eq!(r["pendingActions"], json!(["SHIP_ITEMS_BACK"]), "{body}");
    assert_eq!(r["refundedMinor"], 0);

    let (status, back) = stack
        .command(
            &format!("/returns/{id}/items-shipped-back"),
            json!({"carrier": "DHL", "tracking_number": "JD0146000062"}),
        )
        .await;
    assert_eq!(status, 200, "{back}");
    let body = stack.query_fresh(&return_query(&id), &token(&back)).await;
    assert_eq!(
        body["data"]["return"]["compensationsOwed"],
        json!([]),
        "{body}"
    );
    assert_eq!(
        body["data"]["return"]["pendingActions"],
        json!([]),
        "{body}"
    );
}

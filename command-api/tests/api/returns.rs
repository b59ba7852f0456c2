//! The returns workflow through REST: a delivered order (made through the order routes) is
//! returned through `/returns`, with the order's facts read when the request is handled.

use crate::helpers::*;
use chrono::{Duration, Utc};
use event_store::{read_whole_stream, ExpectedRevision, Metadata, NewEvent, RecordedEvent};
use serde_json::{json, Value};
use uuid::Uuid;

impl TestApp {
    /// Takes a standard order (2 x SKU-1 at 1999, 1 x SKU-2 at 500, EUR) through to delivery
    /// with the order routes and returns its id.
    async fn delivered_order(&self) -> String {
        let id = self.accepted_order().await;
        self.fulfilled(&id).await;
        id
    }

    async fn fulfilled(&self, id: &str) {
        for (action, body) in [
            ("start-fulfillment", json!({})),
            (
                "ship",
                json!({"carrier": "DHL", "tracking_number": "JD0146000062"}),
            ),
            ("confirm-delivery", json!({})),
        ] {
            let reply = self.action(id, action, body).await;
            assert_eq!(reply.status, 200, "{action}: {reply:?}");
        }
    }

    async fn request_return(&self, body: Value) -> Reply {
        self.command("/returns", body).await
    }

    async fn return_action(&self, id: &str, action: &str, body: Value) -> Reply {
        self.command(&format!("/returns/{id}/{action}"), body).await
    }

    async fn return_stream(&self, id: &str) -> Vec<RecordedEvent> {
        read_whole_stream(self.store.as_ref(), &format!("return-{id}"))
            .await
            .unwrap()
    }
}

/// A return of both lines of the standard order: 2 x 1999 + 1 x 500.
fn return_body(order_id: &str) -> Value {
    json!({
        "order_id": order_id,
        "lines": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}],
        "reason": "does not fit"
    })
}

fn assert_outcome(reply: &Reply, status: &str, pending: Value, events: Value) {
    assert_eq!(reply.body["status"], status, "{reply:?}");
    assert_eq!(reply.body["pending_actions"], pending, "{reply:?}");
    assert_eq!(reply.body["events"], events, "{reply:?}");
}

#[tokio::test]
async fn a_delivered_order_is_returned_inspected_with_one_line_refused_and_refunded_for_the_rest() {
    let app = spawn_app().await;
    let id = app.delivered_order().await;

    let requested = app.request_return(return_body(&id)).await;
    assert_eq!(requested.status, 201, "{requested:?}");
    assert_eq!(
        requested.header("location"),
        Some(format!("/returns/{id}").as_str())
    );
    assert_eq!(requested.body["order_id"], id.as_str());
    assert_eq!(requested.body["revision"], 0);
    assert_eq!(requested.header("etag"), Some("\"0\""));
    assert_outcome(
        &requested,
        "REQUESTED",
        json!(["DECIDE_RETURN"]),
        json!(["ReturnRequested"]),
    );
    let delivered = app.stream(&id).await.pop().unwrap();
    assert_eq!(delivered.event_type, "OrderDelivered");
    let request = &app.return_stream(&id).await[0];
    assert_eq!(request.data["refund_due_minor"], TOTAL);
    assert_eq!(request.data["currency"], "EUR");
    assert_eq!(
        request.data["lines"],
        json!([
            {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999},
            {"sku": "SKU-2", "quantity": 1, "unit_price_minor": 500}
        ]),
        "the unit prices are the order's"
    );
    assert_eq!(
        request.data["delivered_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap(),
        delivered.metadata.occurred_at.unwrap(),
        "delivered when the order's OrderDelivered happened"
    );

    let approved = app
        .return_action(&id, "approve", json!({"rma_number": "RMA-1001"}))
        .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_outcome(
        &approved,
        "APPROVED",
        json!(["RECEIVE_ITEMS"]),
        json!(["ReturnApproved"]),
    );

    let received = app
        .return_action(
            &id,
            "items-received",
            json!({"lines": [
                {"sku": "SKU-1", "outcome": "ACCEPTED"},
                {"sku": "SKU-2", "outcome": "REFUSED"}
            ]}),
        )
        .await;
    assert_eq!(received.status, 200, "{received:?}");
    assert_outcome(
        &received,
        "RECEIVED",
        json!(["ISSUE_REFUND"]),
        json!(["ReturnItemsReceived"]),
    );

    let whole = app
        .return_action(
            &id,
            "refund-issued",
            json!({"refund_id": "rf-1", "amount_minor": TOTAL, "currency": "EUR"}),
        )
        .await;
    assert_eq!(whole.status, 422, "{whole:?}");
    assert_eq!(whole.code(), "refund_amount_mismatch");
    assert!(
        whole.body["detail"].as_str().unwrap().contains("3998"),
        "{whole:?}"
    );

    let refunded = app
        .return_action(
            &id,
            "refund-issued",
            json!({"refund_id": "rf-1", "amount_minor": 3998, "currency": "EUR"}),
        )
        .await;
    assert_eq!(refunded.status, 200, "{refunded:?}");
    assert_outcome(&refunded, "REFUNDED", json!([]), json!(["RefundIssued"]));
    assert_eq!(refunded.body["revision"], 3);
    assert_eq!(
        types(&app.return_stream(&id).await),
        [
            "ReturnRequested",
            "ReturnApproved",
            "ReturnItemsReceived",
            "RefundIssued"
        ]
    );
}

/// Asserts a refused request: its status, code and that its detail says why; nothing written.
async fn assert_refused(
    app: &TestApp,
    order_id: &str,
    body: Value,
    status: u16,
    code: &str,
    why: &str,
) {
    let reply = app.request_return(body).await;
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.code(), code, "{reply:?}");
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains(why), "detail '{detail}' says {why}");
    assert!(app.return_stream(order_id).await.is_empty());
}

#[tokio::test]
async fn a_return_of_an_order_that_is_not_delivered_is_refused_with_409() {
    let app = spawn_app().await;
    let id = app.accepted_order().await;
    assert_refused(
        &app,
        &id,
        return_body(&id),
        409,
        "order_not_delivered",
        "is accepted; a return can only be requested once the order is delivered",
    )
    .await;
}

#[tokio::test]
async fn a_return_of_an_order_that_does_not_exist_is_refused_with_422() {
    let app = spawn_app().await;
    let id = Uuid::new_v4().to_string();
    assert_refused(
        &app,
        &id,
        return_body(&id),
        422,
        "order_not_found",
        "order not found",
    )
    .await;
}

#[tokio::test]
async fn a_return_of_a_sku_that_was_not_ordered_is_refused_with_422() {
    let app = spawn_app().await;
    let id = app.delivered_order().await;
    let body = json!({
        "order_id": id, "lines": [{"sku": "SKU-9", "quantity": 1}], "reason": "wrong item"
    });
    assert_refused(
        &app,
        &id,
        body,
        422,
        "sku_not_ordered",
        "SKU SKU-9 is not on order",
    )
    .await;
}

#[tokio::test]
async fn a_return_of_more_units_than_were_ordered_is_refused_with_422() {
    let app = spawn_app().await;
    let id = app.delivered_order().await;
    let body = json!({
        "order_id": id, "lines": [{"sku": "SKU-1", "quantity": 3}], "reason": "too many"
    });
    assert_refused(
        &app,
        &id,
        body,
        422,
        "quantity_exceeds_ordered",
        "SKU SKU-1 was ordered 2 times; 3 cannot be returned",
    )
    .await;
}

#[tokio::test]
async fn a_return_requested_after_the_window_closed_is_refused_with_409() {
    let app = spawn_app().await;
    // The same order's history, as if it had happened 40 days ago (the window is 30 days).
    let template = app.delivered_order().await;
    let id = Uuid::new_v4().to_string();
    let then = Utc::now() - Duration::days(40);
    let old: Vec<NewEvent> = app
        .stream(&template)
        .await
        .into_iter()
        .map(|e| {
            let mut data = e.data;
            if data.get("order_id").is_some() {
                data["order_id"] = json!(id);
            }
            NewEvent {
                id: Uuid::new_v4(),
                event_type: e.event_type,
                schema_version: e.schema_version,
                data,
                metadata: Metadata {
                    occurred_at: Some(then),
                    ..Metadata::default()
                },
            }
        })
        .collect();
    app.store
        .append(&format!("order-{id}"), ExpectedRevision::NoStream, old)
        .await
        .unwrap();
    let closed_on = (then + Duration::days(30)).date_naive();
    assert_refused(
        &app,
        &id,
        return_body(&id),
        409,
        "return_window_closed",
        &format!("returns close 30 days after delivery, on {closed_on}"),
    )
    .await;
}

#[tokio::test]
async fn a_return_request_with_invalid_fields_lists_every_one() {
    let app = spawn_app().await;
    let reply = app
        .request_return(json!({
            "order_id": "not-a-uuid",
            "lines": [{"sku": "SKU 1", "quantity": 0}, {"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}],
            "reason": " "
        }))
        .await;
    assert_eq!(reply.status, 422, "{reply:?}");
    assert_eq!(reply.code(), "validation_failed");
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "order_id",
            "lines[0].sku",
            "lines[2].sku",
            "lines[0].quantity",
            "reason"
        ]
    );
}

#[tokio::test]
async fn a_second_return_request_for_the_same_order_is_refused_with_409() {
    let app = spawn_app().await;
    let id = app.delivered_order().await;
    assert_eq!(app.request_return(return_body(&id)).await.status, 201);
    let again = app.request_return(return_body(&id)).await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.code(), "return_already_requested");
    assert!(again.body["detail"]
        .as_str()
        .unwrap()
        .contains("an order has one return case"));
    assert_eq!(app.return_stream(&id).await.len(), 1);
}

#[tokio::test]
async fn a_replayed_return_request_answers_the_original_and_writes_nothing() {
    let app = spawn_app().await;
    let id = app.delivered_order().await;
    let first = app.keyed("/returns", "return-1", return_body(&id)).await;
    assert_eq!(first.status, 201, "{first:?}");
    let approve = app
        .keyed(
            &format!("/returns/{id}/approve"),
            "approve-1",
            json!({"rma_number": "RMA-1"}),
        )
        .await;
    assert_eq!(approve.status, 200, "{approve:?}");

    let again = app.keyed("/returns", "return-1", return_body(&id)).await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text, "the original outcome");
    let approve_again = app
        .keyed(
            &format!("/returns/{id}/approve"),
            "approve-1",
            json!({"rma_number": "RMA-1"}),
        )
        .await;
    assert_eq!(approve_again.header("idempotent-replayed"), Some("true"));
    assert_eq!(approve_again.text, approve.text);
    assert_eq!(app.return_stream(&id).await.len(), 2);

    let other = app
        .keyed(
            &format!("/returns/{id}/approve"),
            "approve-1",
            json!({"rma_number": "RMA-2"}),
        )
        .await;
    assert_eq!(other.status, 422);
    assert_eq!(other.code(), "idempotency_key_reused");
}

/// The refusal comes from what was read in the order's stream, not from the return's: it is
/// kept under its key like any other, so a retry after the order was delivered is its replay.
#[tokio::test]
async fn a_keyed_return_refused_because_the_order_was_not_delivered_keeps_its_answer() {
    let app = spawn_app().await;
    let id = app.accepted_order().await;
    let first = app.keyed("/returns", "early", return_body(&id)).await;
    assert_eq!(first.status, 409, "{first:?}");
    assert_eq!(first.code(), "order_not_delivered");

    app.fulfilled(&id).await;
    let again = app.keyed("/returns", "early", return_body(&id)).await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text, "the original answer");
    assert!(app.return_stream(&id).await.is_empty());

    let fresh = app.keyed("/returns", "later", return_body(&id)).await;
    assert_eq!(fresh.status, 201, "a new key decides anew: {fresh:?}");
}

#[tokio::test]
async fn a_return_command_pinned_to_another_revision_is_refused_with_412() {
    let app = spawn_app().await;
    let id = app.delivered_order().await;
    assert_eq!(app.request_return(return_body(&id)).await.status, 201);
    let stale = app
        .send(
            app.post(&format!("/returns/{id}/approve"))
                .header("If-Match", "\"3\"")
                .json(&json!({"rma_number": "RMA-1"})),
        )
        .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    assert_eq!(stale.code(), "precondition_failed");
    assert_eq!(app.return_stream(&id).await.len(), 1);
    let current = app
        .send(
            app.post(&format!("/returns/{id}/approve"))
                .header("If-Match", "\"0\"")
                .json(&json!({"rma_number": "RMA-1"})),
        )
        .await;
    assert_eq!(current.status, 200, "{current:?}");
}

#[tokio::test]
async fn items_that_arrive_after_cancellation_are_owed_back_until_shipped_back() {
    let app = spawn_app().await;
    let id = app.delivered_order().await;
    assert_eq!(app.request_return(return_body(&id)).await.status, 201);
    let cancelled = app
        .return_action(&id, "cancel", json!({"reason": "customer kept them"}))
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_outcome(
        &cancelled,
        "CANCELLED",
        json!([]),
        json!(["ReturnCancelled"]),
    );

    let arrived = app
        .return_action(
            &id,
            "items-received",
            json!({"lines": [
                {"sku": "SKU-1", "outcome": "ACCEPTED"},
                {"sku": "SKU-2", "outcome": "ACCEPTED"}
            ]}),
        )
        .await;
    assert_eq!(arrived.status, 200, "{arrived:?}");
    assert_outcome(
        &arrived,
        "CANCELLED",
        json!(["SHIP_ITEMS_BACK"]),
        json!(["ReturnItemsReceived"]),
    );
    assert_eq!(
        arrived.body["compensations_owed"],
        json!(["SHIP_ITEMS_BACK"])
    );

    let shipped = app
        .return_action(
            &id,
            "items-shipped-back",
            json!({"carrier": "DHL", "tracking_number": "JD0146000099"}),
        )
        .await;
    assert_eq!(shipped.status, 200, "{shipped:?}");
    assert_outcome(
        &shipped,
        "CANCELLED",
        json!([]),
        json!(["ReturnItemsShippedBack"]),
    );
    assert_eq!(shipped.body["compensations_owed"], json!([]));
}

#[tokio::test]
async fn an_action_on_an_order_without_a_return_is_refused_with_404() {
    let app = spawn_app().await;
    let id = app.delivered_order().await;
    let reply = app
        .return_action(&id, "approve", json!({"rma_number": "RMA-1"}))
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.code(), "return_not_found");
    assert_eq!(reply.body["title"], "Return not found");
}

/// The server refused the body's shape, as opposed to answering about the return.
fn refused_shape(reply: &Reply) -> bool {
    reply.status == 400 || (reply.status == 422 && reply.code() == "validation_failed")
}

#[tokio::test]
async fn a_return_body_is_accepted_exactly_when_the_openapi_document_calls_it_valid() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = Uuid::new_v4().to_string();
    let rma = |s: String| json!({"rma_number": s});
    let refund = |id: String, amount: i64| json!({"refund_id": id, "amount_minor": amount, "currency": "EUR"});
    let inspected = |lines: Value| json!({ "lines": lines });
    let cases = [
        ("/returns", return_body(&order)),
        (
            "/returns",
            json!({"order_id": order, "lines": [], "reason": "r"}),
        ),
        (
            "/returns",
            json!({"order_id": order, "lines": [{"sku": "A", "quantity": 2.0}], "reason": "r"}),
        ),
        (
            "/returns",
            json!({"order_id": order, "lines": [{"sku": "A", "quantity": 0}], "reason": "r"}),
        ),
        (
            "/returns",
            json!({"order_id": order, "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 1}], "reason": "r"}),
        ),
        ("/returns/{order_id}/approve", rma("RM".into())),
        ("/returns/{order_id}/approve", rma("RMA".into())),
        ("/returns/{order_id}/approve", rma(" RMA-1 ".into())),
        ("/returns/{order_id}/approve", rma("R".repeat(32))),
        ("/returns/{order_id}/approve", rma("R".repeat(33))),
        ("/returns/{order_id}/approve", rma("RMA 1".into())),
        ("/returns/{order_id}/reject", json!({"reason": ""})),
        (
            "/returns/{order_id}/reject",
            json!({"reason": "no receipt"}),
        ),
        (
            "/returns/{order_id}/items-received",
            inspected(json!([{"sku": "A", "outcome": "ACCEPTED"}])),
        ),
        (
            "/returns/{order_id}/items-received",
            inspected(json!([{"sku": "A", "outcome": "LOST"}])),
        ),
        ("/returns/{order_id}/items-received", inspected(json!([]))),
        (
            "/returns/{order_id}/refund-issued",
            refund("rf-1".into(), 0),
        ),
        (
            "/returns/{order_id}/refund-issued",
            refund("rf-1".into(), -1),
        ),
        (
            "/returns/{order_id}/refund-issued",
            refund("x".repeat(128), 1),
        ),
        (
            "/returns/{order_id}/refund-issued",
            refund("x".repeat(129), 1),
        ),
        (
            "/returns/{order_id}/cancel",
            json!({"reason": "changed my mind"}),
        ),
        (
            "/returns/{order_id}/items-shipped-back",
            json!({"carrier": "DHL", "tracking_number": "abc"}),
        ),
        (
            "/returns/{order_id}/items-shipped-back",
            json!({"carrier": "DHL", "tracking_number": "abcd"}),
        ),
        ("/returns/{order_id}/escalate", json!({"reason": "\u{1}"})),
    ];
    for (path, body) in cases {
        let schema =
            &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{path} has a documented body");
        let mut root = schema.clone();
        root["components"] = doc["components"].clone();
        let documented = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap()
            .is_valid(&body);
        let reply = app
            .command(&path.replace("{order_id}", &order), body.clone())
            .await;
        assert_eq!(
            documented,
            !refused_shape(&reply),
            "the document calls {path} {body} {}, the server answered {reply:?}",
            if documented { "valid" } else { "invalid" }
        );
    }
}

#[tokio::test]
async fn every_operation_of_both_workflows_has_its_own_operation_id() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut seen = std::collections::HashMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let id = item["post"]["operationId"].as_str().unwrap().to_owned();
        if let Some(other) = seen.insert(id.clone(), path.clone()) {
            panic!("{path} and {other} share the operationId {id}");
        }
    }
    assert!(seen.values().any(|p| p == "/returns/{order_id}/cancel"));
    assert!(seen.values().any(|p| p == "/orders/{order_id}/cancel"));
}

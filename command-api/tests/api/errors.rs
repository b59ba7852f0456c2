use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.post("/orders")
                .header("content-type", "application/json")
                .body("{\"customer_id\": "),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.code(), "malformed_json");
}

#[tokio::test]
async fn unknown_fields_and_wrong_types_are_400_naming_the_field() {
    let app = spawn_app().await;
    let mut body = order_body();
    body["discount"] = json!(10);
    let reply = app.place(body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.code(), "invalid_body");
    assert!(
        reply.body["detail"].as_str().unwrap().contains("discount"),
        "{reply:?}"
    );

    let mut body = order_body();
    body["lines"][0]["quantity"] = json!("two");
    let reply = app.place(body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.code(), "invalid_body");

    let reply = app.place(json!([1, 2])).await;
    assert_eq!(reply.code(), "invalid_body");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.post("/orders")
                .header("content-type", "text/plain")
                .body("hello"),
        )
        .await;
    assert_eq!(reply.status, 415);
    assert_eq!(reply.code(), "unsupported_media_type");
}

#[tokio::test]
async fn a_body_above_the_limit_is_413() {
    let app = spawn_app().await;
    let mut body = order_body();
    body["customer_id"] = json!("x".repeat(70 * 1024));
    let reply = app.place(body).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.code(), "payload_too_large");
}

#[tokio::test]
async fn invalid_fields_are_422_with_a_message_per_field() {
    let app = spawn_app().await;
    let body = json!({
        "customer_id": "",
        "currency": "XYZ",
        "lines": [
            {"sku": "A B", "quantity": 0, "unit_price_minor": -5},
            {"sku": "OK-1", "quantity": 1, "unit_price_minor": 1}
        ],
        "shipping_address": {"name": "A", "line1": "B", "city": "C", "postal_code": "D", "country": "germany"}
    });
    let reply = app.place(body).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.code(), "validation_failed");
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for expected in [
        "customer_id",
        "currency",
        "lines[0].sku",
        "lines[0].quantity",
        "lines[0].unit_price_minor",
        "shipping_address.country",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing from {fields:?}"
        );
    }
    assert!(reply.body["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn a_payment_of_the_wrong_amount_is_422() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    let reply = app
        .action(
            &id,
            "payment-authorized",
            json!({"payment_id": "p", "amount_minor": 1, "currency": "EUR"}),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.code(), "amount_mismatch");
}

#[tokio::test]
async fn an_unknown_order_is_404() {
    let app = spawn_app().await;
    let reply = app
        .action(
            "7f0e3c1e-5d7a-4c39-9a8e-4a0f3d9b1c2d",
            "cancel",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.code(), "order_not_found");
    let reply = app
        .action("not-a-uuid", "cancel", json!({"reason": "x"}))
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.code(), "not_found");
    let reply = app.send(app.post("/nowhere")).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn an_illegal_transition_is_409_with_the_domains_message() {
    let app = spawn_app().await;
    let id = app.accepted_order().await;
    app.action(&id, "start-fulfillment", json!({})).await;
    app.action(
        &id,
        "ship",
        json!({"carrier": "UPS", "tracking_number": "1Z999AA1"}),
    )
    .await;
    let reply = app
        .action(&id, "cancel", json!({"reason": "too late"}))
        .await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.code(), "cannot_cancel");
    assert_eq!(
        reply.body["detail"],
        "order is shipped; it can no longer be cancelled"
    );
}

#[tokio::test]
async fn placing_an_existing_order_id_is_409() {
    let app = spawn_app().await;
    let mut body = order_body();
    body["order_id"] = json!("0b6f1c9e-2d43-4a1e-8f55-8d2b8e3c7a10");
    assert_eq!(app.place(body.clone()).await.status, 201);
    body["customer_id"] = json!("someone-else");
    let reply = app.place(body).await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.code(), "order_already_placed");
}

#[tokio::test]
async fn if_match_with_a_stale_revision_is_412_and_writes_nothing() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    app.action(&id, "payment-authorized", payment("pay-1"))
        .await;
    let reply = app
        .send(
            app.post(&format!("/orders/{id}/inventory-reserved"))
                .header("If-Match", "\"0\"")
                .json(&json!({"reservation_id": "r"})),
        )
        .await;
    assert_eq!(reply.status, 412);
    assert_eq!(reply.code(), "precondition_failed");
    assert_eq!(app.stream(&id).await.len(), 2);

    let ok = app
        .send(
            app.post(&format!("/orders/{id}/inventory-reserved"))
                .header("If-Match", "\"1\"")
                .json(&json!({"reservation_id": "r"})),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["status"], "ACCEPTED");

    let bad = app
        .send(
            app.post(&format!("/orders/{id}/cancel"))
                .header("If-Match", "yesterday")
                .json(&json!({"reason": "x"})),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.code(), "invalid_header");
}

#[tokio::test]
async fn a_wrong_method_is_405() {
    let app = spawn_app().await;
    let reply = Reply::from(
        app.client
            .get(format!("{}/orders", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.code(), "method_not_allowed");
}

#[tokio::test]
async fn an_unreachable_event_store_is_503_with_retry_after() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    test_support::drop_database(&app.database_url).await;
    let reply = app.action(&id, "cancel", json!({"reason": "x"})).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.code(), "event_store_unavailable");
    assert_eq!(reply.header("retry-after"), Some("5"));
}

#[tokio::test]
async fn an_order_whose_stream_holds_an_undecodable_event_is_refused_with_order_history_unreadable()
{
    let app = spawn_app().await;
    let id = app.placed_order().await;
    app.store
        .append(
            &format!("order-{id}"),
            event_store::ExpectedRevision::Exact(0),
            vec![event_store::NewEvent {
                id: uuid::Uuid::new_v4(),
                event_type: "PaymentAuthorized".into(),
                schema_version: 1,
                data: json!({"written_by": "another tool"}),
                metadata: event_store::Metadata::default(),
            }],
        )
        .await
        .unwrap();

    let reply = app
        .action(&id, "inventory-reserved", json!({"reservation_id": "r1"}))
        .await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert_eq!(reply.code(), "order_history_unreadable");
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("contact an operator"), "{detail}");
    assert!(detail.contains(&id), "{detail}");
    assert!(detail.contains("revision 1"), "{detail}");
    assert_eq!(
        types(&app.stream(&id).await),
        ["OrderPlaced", "PaymentAuthorized"],
        "nothing was appended"
    );
}

/// JSON Schema (and so the OpenAPI document) calls `2.0` an integer.
#[tokio::test]
async fn whole_numbers_written_with_a_decimal_point_are_accepted() {
    let app = spawn_app().await;
    let mut body = order_body();
    body["lines"][0]["quantity"] = json!(2.0);
    body["lines"][0]["unit_price_minor"] = json!(1999.0);
    let placed = app.place(body).await;
    assert_eq!(placed.status, 201, "{placed:?}");
    let id = placed.body["order_id"].as_str().unwrap();
    let paid = app
        .action(
            id,
            "payment-authorized",
            json!({"payment_id": "p", "amount_minor": 4498.0, "currency": "EUR"}),
        )
        .await;
    assert_eq!(paid.status, 200, "{paid:?}");

    let mut body = order_body();
    body["lines"][0]["quantity"] = json!(2.5);
    let reply = app.place(body).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.code(), "invalid_body");
    assert!(
        reply.body["detail"].as_str().unwrap().contains("2.5"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_compressed_body_is_415_naming_its_encoding_and_identity_is_accepted() {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.post("/orders")
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(vec![0x1f, 0x8b, 0x08, 0x00]),
        )
        .await;
    assert_eq!(reply.status, 415);
    assert_eq!(reply.code(), "unsupported_media_type");
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("gzip"), "{detail}");
    assert_eq!(app.store.head_position().await.unwrap(), None);

    let reply = app
        .send(
            app.post("/orders")
                .header("content-encoding", "identity")
                .json(&order_body()),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

#[tokio::test]
async fn a_body_that_never_arrives_in_full_is_408_once_its_time_is_up_and_nothing_is_written() {
    let app = spawn_app().await;
    let answer = test_support::slow_client::answer_to_unfinished_body(
        app.address.trim_start_matches("http://"),
        "/orders",
        "{\"customer_id\"",
        service_kit::http_body::BODY_TIMEOUT,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert_eq!(app.store.head_position().await.unwrap(), None);
}

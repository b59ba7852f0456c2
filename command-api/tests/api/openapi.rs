use crate::helpers::*;
use serde_json::{json, Value};
use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi.json")
}

/// Set `UPDATE_SCHEMAS=1` to rewrite the committed document after an intended change.
#[tokio::test]
async fn the_served_openapi_document_matches_the_committed_one() {
    let app = spawn_app().await;
    let served = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/orders/{order_id}/ship"]["post"].is_object());
    if std::env::var("UPDATE_SCHEMAS").is_ok() {
        std::fs::write(committed_path(), &served).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path())
        .expect("schemas/openapi.json is missing: run the tests with UPDATE_SCHEMAS=1");
    assert_eq!(
        served, committed,
        "the OpenAPI document drifted: run with UPDATE_SCHEMAS=1 and commit"
    );
}

async fn served_document(app: &TestApp) -> Value {
    app.client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A validator for a schema of the document (which may refer to its components).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap()
}

fn body_schema(doc: &Value, path: &str) -> Value {
    doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"].clone()
}

fn header_schema(doc: &Value, path: &str, name: &str) -> Value {
    doc["paths"][path]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{path} documents no {name}"))["schema"]
        .clone()
}

/// The server refused the request's shape (as opposed to answering about the order).
fn refused_shape(reply: &Reply) -> bool {
    matches!(reply.status, 400 | 422)
}

/// `body` with the value at `pointer` set (an object's member is added if missing).
fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match body.pointer_mut(parent).unwrap() {
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        object => object[key] = value,
    }
    body
}

fn lines(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"sku": format!("SKU-{i}"), "quantity": 1, "unit_price_minor": 1}))
            .collect(),
    )
}

#[tokio::test]
async fn an_order_is_accepted_exactly_when_the_openapi_document_calls_it_valid() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let schema = validator(&doc, &body_schema(&doc, "/orders"));
    let max_price = domain::Money::MAX_UNIT_MINOR;
    let mut cases = vec![
        with(order_body(), "/order_id", json!("not-a-uuid")),
        with(order_body(), "/lines", json!([])),
        with(order_body(), "/lines", lines(domain::order::MAX_LINES)),
        with(order_body(), "/lines", lines(domain::order::MAX_LINES + 1)),
        with(order_body(), "/currency", json!("eur")),
        with(order_body(), "/currency", json!("USD")),
        with(order_body(), "/currency", json!("XXX")),
        with(order_body(), "/shipping_address/country", json!("de")),
        with(order_body(), "/shipping_address/country", json!("DEU")),
        with(order_body(), "/shipping_address/country", json!("DE\n")),
        with(order_body(), "/shipping_address/line2", json!(null)),
        with(order_body(), "/shipping_address/line2", json!("")),
        with(order_body(), "/shipping_address/line2", json!("Apt 2")),
    ];
    for (field, values) in [
        ("/lines/0/quantity", [0, 1, 1000, 1001]),
        (
            "/lines/0/unit_price_minor",
            [-1, 0, max_price, max_price + 1],
        ),
    ] {
        cases.extend(values.map(|v| with(order_body(), field, json!(v))));
    }
    let text = [
        "",
        " ",
        "\t",
        "x",
        "  padded  ",
        "in\tside",
        "in\u{85}side",
        "\u{85}edge\u{85}",
        "\u{a0}edge\u{3000}",
        "\u{feff}",
        "a\u{0}b",
        "a\u{7f}b",
    ];
    for field in [
        "/customer_id",
        "/shipping_address/name",
        "/shipping_address/line1",
        "/shipping_address/city",
        "/shipping_address/postal_code",
    ] {
        cases.extend(text.map(|v| with(order_body(), field, json!(v))));
    }
    let max = domain::CustomerId::MAX_CHARS;
    cases.extend(
        [
            "x".repeat(max),
            "x".repeat(max + 1),
            format!(" {} ", "é".repeat(max)),
        ]
        .map(|v| with(order_body(), "/customer_id", json!(v))),
    );
    let max = domain::AddressLine::MAX_CHARS;
    cases.extend(
        ["x".repeat(max), "x".repeat(max + 1)]
            .map(|v| with(order_body(), "/shipping_address/city", json!(v))),
    );
    let max = domain::Sku::MAX_LEN;
    cases.extend(
        [
            "A B".to_owned(),
            "x".repeat(max),
            "x".repeat(max + 1),
            " SKU-9 ".to_owned(),
            "é".to_owned(),
        ]
        .map(|v| with(order_body(), "/lines/0/sku", json!(v))),
    );

    for body in cases {
        let documented = schema.is_valid(&body);
        let reply = app.place(body.clone()).await;
        assert_eq!(
            documented,
            !refused_shape(&reply),
            "the document calls {body} {}, the server answered {reply:?}",
            if documented { "valid" } else { "invalid" }
        );
    }
}

#[tokio::test]
async fn a_command_body_is_accepted_exactly_when_the_openapi_document_calls_it_valid() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let order = "7f0e3c1e-5d7a-4c39-9a8e-4a0f3d9b1c2d";
    let reason_max = domain::Reason::MAX_CHARS;
    let id_max = domain::ReservationId::MAX_CHARS;
    let cases = [
        ("ship", json!({"carrier": "DHL", "tracking_number": "abc"})),
        ("ship", json!({"carrier": "DHL", "tracking_number": "abcd"})),
        (
            "ship",
            json!({"carrier": "DHL", "tracking_number": " ab-cd "}),
        ),
        (
            "ship",
            json!({"carrier": "DHL", "tracking_number": "x".repeat(domain::TrackingNumber::MAX_LEN)}),
        ),
        (
            "ship",
            json!({"carrier": "DHL", "tracking_number": "x".repeat(domain::TrackingNumber::MAX_LEN + 1)}),
        ),
        ("ship", json!({"carrier": "", "tracking_number": "abcd"})),
        (
            "ship",
            json!({"carrier": "x".repeat(domain::Carrier::MAX_CHARS + 1), "tracking_number": "abcd"}),
        ),
        ("cancel", json!({"reason": ""})),
        ("cancel", json!({"reason": "x".repeat(reason_max)})),
        ("cancel", json!({"reason": "x".repeat(reason_max + 1)})),
        ("escalate", json!({"reason": "\u{1}"})),
        (
            "payment-declined",
            json!({"payment_id": " ", "reason": "no"}),
        ),
        ("payment-voided", json!({"payment_id": "p-1"})),
        (
            "payment-authorized",
            json!({"payment_id": "p", "amount_minor": -1, "currency": "EUR"}),
        ),
        (
            "payment-authorized",
            json!({"payment_id": "p", "amount_minor": 0, "currency": "eur"}),
        ),
        (
            "inventory-reserved",
            json!({"reservation_id": "x".repeat(id_max)}),
        ),
        (
            "inventory-released",
            json!({"reservation_id": "x".repeat(id_max + 1)}),
        ),
        (
            "inventory-shortage",
            json!({"reservation_id": "", "reason": "none left"}),
        ),
    ];
    for (action, body) in cases {
        let path = format!("/orders/{{order_id}}/{action}");
        let documented = validator(&doc, &body_schema(&doc, &path)).is_valid(&body);
        let reply = app.action(order, action, body.clone()).await;
        assert_eq!(
            documented,
            !refused_shape(&reply),
            "the document calls {action} {body} {}, the server answered {reply:?}",
            if documented { "valid" } else { "invalid" }
        );
    }
}

#[tokio::test]
async fn a_header_is_accepted_exactly_when_the_openapi_document_calls_it_valid() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let path = "/orders/{order_id}/cancel";
    let order = "7f0e3c1e-5d7a-4c39-9a8e-4a0f3d9b1c2d";
    let token_max = command_api::http::TOKEN_MAX_LEN;
    let tokens = [
        String::new(),
        "k".repeat(token_max),
        "k".repeat(token_max + 1),
        "with inner space".to_owned(),
    ];
    let mut cases: Vec<(&str, String)> = Vec::new();
    for name in ["Idempotency-Key", "X-Correlation-Id"] {
        cases.extend(tokens.iter().map(|t| (name, t.clone())));
    }
    cases.extend(
        [
            "\"3\"",
            "W/\"3\"",
            "3",
            "*",
            "yesterday",
            "\"3",
            "+3",
            "\"9999999999999999999\"",
            "\"18446744073709551616\"",
        ]
        .map(|v| ("If-Match", v.to_owned())),
    );
    for (name, value) in cases {
        let documented = validator(&doc, &header_schema(&doc, path, name)).is_valid(&json!(value));
        let reply = app
            .send(
                app.post(&format!("/orders/{order}/cancel"))
                    .header(name, value.as_str())
                    .json(&json!({"reason": "x"})),
            )
            .await;
        assert_eq!(
            documented,
            !refused_shape(&reply),
            "the document calls {name}: '{value}' {}, the server answered {reply:?}",
            if documented { "valid" } else { "invalid" }
        );
    }
}

#[test]
fn the_documented_text_rule_agrees_with_the_parser_for_every_character() {
    let doc = command_api::openapi::document();
    let schema = &doc["components"]["schemas"]["PlaceOrderRequest"]["properties"]["customer_id"];
    let schema = validator(&doc, schema);
    let chars = (0..=0x3100u32)
        .chain([0xfeff, 0xfffd, 0x1_0000, 0x10_ffff])
        .filter_map(char::from_u32);
    for c in chars {
        for raw in [format!("a{c}b"), format!("{c}ab"), c.to_string()] {
            assert_eq!(
                schema.is_valid(&json!(raw)),
                domain::CustomerId::parse(&raw).is_ok(),
                "U+{:04X} in {raw:?}",
                c as u32
            );
        }
    }
}

#[tokio::test]
async fn a_body_may_be_left_out_exactly_where_the_openapi_document_says() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let order = "7f0e3c1e-5d7a-4c39-9a8e-4a0f3d9b1c2d";
    for (path, item) in doc["paths"].as_object().unwrap() {
        let required = item["post"]["requestBody"]["required"] == true;
        let reply = app.send(app.post(&path.replace("{order_id}", order))).await;
        assert_eq!(
            required,
            refused_shape(&reply),
            "the document says the body of {path} is {}required, the server answered {reply:?}",
            if required { "" } else { "not " }
        );
    }
}

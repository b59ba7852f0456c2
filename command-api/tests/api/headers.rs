use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

const UNKNOWN_ORDER: &str = "7f0e3c1e-5d7a-4c39-9a8e-4a0f3d9b1c2d";

/// One request of each kind the server refuses before (or instead of) running a command.
fn refused_requests(app: &TestApp) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    let mut too_large = order_body();
    too_large["customer_id"] = json!("x".repeat(70 * 1024));
    vec![
        ("no such route", app.post("/nowhere")),
        (
            "no such order",
            app.post(&format!("/orders/{UNKNOWN_ORDER}/cancel"))
                .json(&json!({"reason": "x"})),
        ),
        (
            "wrong method",
            app.client.get(format!("{}/orders", app.address)),
        ),
        ("body too large", app.post("/orders").json(&too_large)),
        (
            "not JSON",
            app.post("/orders")
                .header("content-type", "text/plain")
                .body("hello"),
        ),
        (
            "malformed JSON",
            app.post("/orders")
                .header("content-type", "application/json")
                .body("{\"customer_id\": "),
        ),
        (
            "invalid fields",
            app.post("/orders").json(&json!({
                "customer_id": "", "currency": "EUR", "lines": [],
                "shipping_address": {"name": "", "line1": "", "city": "", "postal_code": "", "country": "DE"}
            })),
        ),
    ]
}

#[tokio::test]
async fn every_refused_request_echoes_the_callers_correlation_id() {
    let app = spawn_app().await;
    for (what, request) in refused_requests(&app) {
        let reply = app
            .send(request.header("X-Correlation-Id", "trace-4711"))
            .await;
        assert!(reply.status >= 400, "{what}: {reply:?}");
        assert_eq!(
            reply.header("x-correlation-id"),
            Some("trace-4711"),
            "{what}: {reply:?}"
        );
    }
}

#[tokio::test]
async fn every_refused_request_without_a_correlation_id_gets_a_generated_one() {
    let app = spawn_app().await;
    for (what, request) in refused_requests(&app) {
        let reply = app.send(request).await;
        assert!(reply.status >= 400, "{what}: {reply:?}");
        let id = reply.header("x-correlation-id").unwrap_or_default();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{what}: no generated correlation id in {reply:?}"
        );
    }
}

#[tokio::test]
async fn an_invalid_correlation_id_is_refused_and_a_generated_one_echoed() {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.post("/orders")
                .header("X-Correlation-Id", "x".repeat(256))
                .json(&order_body()),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.code(), "invalid_header");
    let id = reply.header("x-correlation-id").unwrap_or_default();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{reply:?}");
}

#[tokio::test]
async fn an_accepted_command_echoes_the_correlation_id_it_stored() {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.post("/orders")
                .header("X-Correlation-Id", "trace-4711")
                .json(&order_body()),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.header("x-correlation-id"), Some("trace-4711"));
    let id = reply.body["order_id"].as_str().unwrap();
    let stored = app.stream(id).await;
    assert_eq!(
        stored[0].metadata.correlation_id.as_deref(),
        Some("trace-4711")
    );

    let generated = app.place(order_body()).await;
    let header = generated.header("x-correlation-id").unwrap_or_default();
    assert_eq!(generated.body["correlation_id"], header, "{generated:?}");
}

#[tokio::test]
async fn every_405_names_the_allowed_methods_in_a_problem() {
    let app = spawn_app().await;
    let cases = [
        (Method::GET, "/orders".to_owned(), "POST"),
        (Method::PUT, "/orders".to_owned(), "POST"),
        (
            Method::DELETE,
            format!("/orders/{UNKNOWN_ORDER}/ship"),
            "POST",
        ),
        (
            Method::GET,
            format!("/orders/{UNKNOWN_ORDER}/cancel"),
            "POST",
        ),
        (Method::POST, "/healthz".to_owned(), "GET, HEAD"),
        (Method::POST, "/readyz".to_owned(), "GET, HEAD"),
        (Method::DELETE, "/openapi.json".to_owned(), "GET, HEAD"),
    ];
    for (method, path, allowed) in cases {
        let reply = app
            .send(
                app.client
                    .request(method.clone(), format!("{}{path}", app.address)),
            )
            .await;
        assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
        assert_eq!(
            reply.header("allow"),
            Some(allowed),
            "{method} {path}: {reply:?}"
        );
        assert_eq!(reply.code(), "method_not_allowed", "{method} {path}");
    }
}

#[tokio::test]
async fn a_get_route_answers_head_with_the_status_and_length_a_get_has() {
    let app = spawn_app().await;
    for path in ["/healthz", "/openapi.json"] {
        let url = format!("{}{path}", app.address);
        let get = app.send(app.client.get(&url)).await;
        let head = app.send(app.client.head(&url)).await;
        assert_eq!(head.status, 200, "{path}: {head:?}");
        let length = get.text.len().to_string();
        assert_eq!(
            head.header("content-length"),
            Some(length.as_str()),
            "{path}"
        );
    }
}

//! Commands sent from a browser page of another origin (the operations console).

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::RequestBuilder {
    app.client
        .request(Method::OPTIONS, format!("{}{path}", app.address))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
}

#[tokio::test]
async fn a_preflight_from_the_allowed_origin_may_post_with_a_bearer_token_and_json() {
    let app = spawn_app().await;
    let id = app.placed_order().await;

    let reply = app
        .send(preflight(
            &app,
            &format!("/orders/{id}/escalate"),
            CONSOLE_ORIGIN,
        ))
        .await;

    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(CONSOLE_ORIGIN)
    );
    assert_eq!(reply.header("access-control-allow-methods"), Some("POST"));
    let headers = reply
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    assert!(headers.contains("content-type"), "{headers}");
}

#[tokio::test]
async fn a_command_from_the_allowed_origin_is_readable_by_its_page() {
    let app = spawn_app().await;
    let id = app.placed_order().await;

    let reply = app
        .send(
            app.post(&format!("/orders/{id}/escalate"))
                .header("Origin", CONSOLE_ORIGIN)
                .json(&json!({"reason": "stuck at the payment provider"})),
        )
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(CONSOLE_ORIGIN)
    );
    assert!(reply
        .header("access-control-expose-headers")
        .is_some_and(|h| h.contains("X-Correlation-Id")));
}

#[tokio::test]
async fn a_page_of_another_origin_gets_no_allowance() {
    let app = spawn_app().await;
    let id = app.placed_order().await;

    let pre = app
        .send(preflight(
            &app,
            &format!("/orders/{id}/escalate"),
            "http://evil.test",
        ))
        .await;
    let command = app
        .send(
            app.post(&format!("/orders/{id}/escalate"))
                .header("Origin", "http://evil.test")
                .json(&json!({"reason": "x"})),
        )
        .await;

    assert_eq!(pre.status, 405, "{pre:?}");
    assert_eq!(pre.header("access-control-allow-origin"), None);
    assert_eq!(command.header("access-control-allow-origin"), None);
}

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn a_page_larger_than_the_cap_is_refused_with_a_code() {
    let app = spawn_app().await;
    let body = app
        .query("{ orders(first: 500) { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "PAGE_SIZE_TOO_LARGE");
    let body = app
        .query("{ orders(first: 0) { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_query_too_deep_or_too_complex_is_refused_with_a_code() {
    let app = spawn_with(Options {
        max_depth: 3,
        max_complexity: 200,
        ..Options::default()
    })
    .await;
    let deep = app
        .query(
            "{ orders(first: 1) { edges { node { timeline { summary } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&deep), "QUERY_TOO_DEEP", "{deep}");
    let app = spawn_with(Options {
        max_complexity: 200,
        ..Options::default()
    })
    .await;
    let complex = app
        .query(
            "{ orders(first: 100) { edges { node { id timeline { summary } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&complex), "QUERY_TOO_COMPLEX", "{complex}");
}

#[tokio::test]
async fn malformed_queries_and_bodies_get_codes() {
    let app = spawn_app().await;
    let body = app.query("{ orders { nope } }", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED");
    let body = app.query("{ orders(", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED");

    let huge =
        json!({"query": format!("{{ statusCounts {{ orders }} }} # {}", "x".repeat(70 * 1024))});
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "PAYLOAD_TOO_LARGE");

    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

#[tokio::test]
async fn graphiql_and_health_are_served() {
    let app = spawn_app().await;
    let page = app
        .client
        .get(format!("{}/graphql", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("graphiql"));
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

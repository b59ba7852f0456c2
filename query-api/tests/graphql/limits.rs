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
    let message = deep["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("more than the limit of 3"), "{message}");
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
    let message = complex["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("more than the limit of 200"), "{message}");
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
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("limit of 65536 bytes"), "{message}");

    for empty in [json!({}), json!({"query": "  "})] {
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&empty)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{empty}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "BAD_REQUEST");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("has no query"), "{message}");
    }

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

#[tokio::test]
async fn a_negative_first_is_refused_as_bad_input_and_the_server_keeps_answering() {
    let app = spawn_app().await;
    for query in [
        "{ orders(first: -1) { edges { cursor } } }",
        "{ orders(first: -2147483648) { edges { node { id timeline { summary } } } } }",
        "{ stalledOrders(first: -1) { id } }",
    ] {
        let (status, body) = app.query_with(query, json!({}), None).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{query}: {body}");
    }
    let (status, _) = app
        .query_with("{ statusCounts { orders } }", json!({}), None)
        .await;
    assert_eq!(status, 200);
}

/// Each query costs far more than the limit; with wrapping arithmetic the negative `first`
/// would cancel exactly what its siblings cost.
#[tokio::test]
async fn a_negative_first_does_not_cancel_the_cost_of_its_siblings() {
    let app = spawn_with(Options {
        max_complexity: 500,
        ..Options::default()
    })
    .await;
    // 13 per order: edges, node, id, and the timeline at 10 per entry field.
    let expensive = "edges { node { id timeline { summary } } }";
    for query in [
        format!("{{ a: orders(first: -100) {{ {expensive} }} b: orders(first: 100) {{ {expensive} }} }}"),
        format!(
            "{{ a: orders(first: -2147483648) {{ {expensive} }}
                b: orders(first: 2147483647) {{ {expensive} }}
                c: orders(first: 30) {{ {expensive} }} }}"
        ),
    ] {
        let (status, body) = app.query_with(&query, json!({}), None).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{query}: {body}");
        assert!(body["data"].is_null(), "nothing ran: {body}");
    }
}

#[tokio::test]
async fn queries_over_the_rate_limit_get_429_rate_limited_with_retry_after_until_the_wait_is_over()
{
    // One query every four seconds, two at once: the third of three quick queries finds the
    // bucket empty, however slowly the first two were answered.
    let app = spawn_with(Options {
        rate_limit: Some(service_kit::rate_limit::RateLimit {
            per_second: 0.25,
            burst: 2,
        }),
        ..Options::default()
    })
    .await;
    let query = "{ statusCounts { status orders } }";
    for _ in 0..2 {
        let (status, body) = app.query_with(query, json!({}), None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
    }

    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&wait), "Retry-After: {wait}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    assert!(body["data"].is_null());
    // Another spelling of the path reaches the same route: it is counted all the same.
    let encoded = app
        .client
        .post(format!("{}/%67raphql", app.address))
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.status().as_u16(), 429);

    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let (status, body) = app.query_with(query, json!({}), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn a_body_that_never_arrives_in_full_is_408_once_its_time_is_up() {
    let app = spawn_app().await;
    let answer = test_support::slow_client::answer_to_unfinished_body(
        app.address.trim_start_matches("http://"),
        "/graphql",
        "{\"query\": \"{ statusCounts",
        service_kit::http_body::BODY_TIMEOUT,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"REQUEST_TIMEOUT\""), "{answer}");
    assert!(answer.contains("within 10 s"), "{answer}");
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_is_405_naming_the_allowed_ones_and_head_is_served_as_get() {
    let app = spawn_app().await;
    for (method, path, allowed) in [
        (reqwest::Method::PUT, "/graphql", "GET, HEAD, POST"),
        (reqwest::Method::DELETE, "/graphql", "GET, HEAD, POST"),
        (reqwest::Method::POST, "/healthz", "GET, HEAD"),
        (reqwest::Method::POST, "/schema.graphql", "GET, HEAD"),
        (reqwest::Method::POST, "/console", "GET, HEAD"),
        (reqwest::Method::PUT, "/console/config.json", "GET, HEAD"),
        (reqwest::Method::DELETE, "/console/console.js", "GET, HEAD"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allowed, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED", "{method} {path}");
    }
    for path in [
        "/healthz",
        "/schema.graphql",
        "/console",
        "/console/console.css",
    ] {
        let url = format!("{}{path}", app.address);
        let get = app.client.get(&url).send().await.unwrap();
        let length = get.bytes().await.unwrap().len().to_string();
        let head = app.client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200, "{path}");
        assert_eq!(head.headers()["content-length"], length.as_str(), "{path}");
    }
    let unknown = app
        .client
        .put(format!("{}/nowhere", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn top_level_fields_come_back_in_the_order_the_query_asks_for_them() {
    let app = spawn_app().await;
    let query = "{ z: relayStatus { name } statusCounts { orders } y: projectionStatus { name } \
                 x: relayStatus { name } }";
    // They are resolved concurrently: ask several times. (The text is read as it came:
    // `serde_json::Value` would sort the keys.)
    for _ in 0..10 {
        let text = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at = |key: &str| text.find(&format!("\"{key}\":")).expect(key);
        let order = [at("z"), at("statusCounts"), at("y"), at("x")];
        assert!(order.is_sorted(), "{text}");
    }
}

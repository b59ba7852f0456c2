use crate::helpers::*;
use serde_json::json;

const Q: &str = "query($id: ID!) { order(id: $id) { status revision } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_a_fresh_token_waits_for_the_projection_and_sees_the_write() {
    let app = spawn_app().await;
    let live = app.projector.clone();
    let projector = tokio::spawn(async move { live.run(std::future::pending()).await });
    let id = app.order("c", vec![]).await;
    let token = app.command(id, authorize()).await;
    let token2 = app.command(id, reserve()).await;
    assert!(token2 > token);
    let (status, body) = app
        .query_with(Q, json!({"id": id}), Some(&token2.to_string()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["order"]["status"], "ACCEPTED", "{body}");
    assert_eq!(body["extensions"]["consistency"]["reached"], true);
    assert_eq!(body["extensions"]["consistency"]["stale"], false);
    projector.abort();
}

#[tokio::test]
async fn an_unreachable_token_answers_after_the_timeout_marked_stale() {
    let app = spawn_with(Options {
        read_your_writes_timeout: std::time::Duration::from_millis(400),
        ..Options::default()
    })
    .await;
    let id = app.order("c", vec![]).await;
    app.project_all().await;
    let started = std::time::Instant::now();
    let (status, body) = app
        .query_with(Q, json!({"id": id}), Some("999999999999-1"))
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "waited the bound"
    );
    assert_eq!(body["data"]["order"]["status"], "PLACED", "still answers");
    assert_eq!(body["extensions"]["consistency"]["stale"], true);
}

#[tokio::test]
async fn a_malformed_token_is_a_clear_error() {
    let app = spawn_app().await;
    let (status, body) = app
        .query_with("{ statusCounts { orders } }", json!({}), Some("yesterday"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INVALID_CONSISTENCY_TOKEN");
}

//! Per-caller rate limits on commands: over the limit, `429 rate_limited` with `Retry-After`,
//! and nothing reaches the store.

use crate::helpers::*;
use service_kit::rate_limit::RateLimit;

/// How many events order `id` has.
async fn events(app: &TestApp, id: &str) -> usize {
    match event_store::read_whole_stream(app.store.as_ref(), &format!("order-{id}")).await {
        Ok(events) => events.len(),
        Err(event_store::StoreError::StreamNotFound(_)) => 0,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_429_with_retry_after_and_writes_nothing_until_the_wait_is_over(
) {
    // One request every four seconds, two at once: the third of three quick requests finds
    // the bucket empty, however slowly the first two were served.
    let limit = RateLimit {
        per_second: 0.25,
        burst: 2,
    };
    let app = spawn_app_limited(|store| store, Some(limit)).await;
    for _ in 0..2 {
        assert_eq!(app.place(order_body()).await.status, 201);
    }

    let id = uuid::Uuid::new_v4().to_string();
    let mut body = order_body();
    body["order_id"] = id.clone().into();
    let refused = app
        .send(
            app.post("/orders")
                .header("X-Correlation-Id", "corr-limited")
                .json(&body),
        )
        .await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.code(), "rate_limited");
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=4).contains(&wait),
        "the bucket holds a request again within four seconds, not {wait}"
    );
    assert_eq!(refused.header("x-correlation-id"), Some("corr-limited"));
    assert_eq!(
        events(&app, &id).await,
        0,
        "the refused command wrote nothing"
    );
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health checks are not limited");

    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    assert_eq!(app.place(body).await.status, 201);
    assert_eq!(events(&app, &id).await, 1);
}

//! An API stopped by Ctrl-C (SIGINT) or SIGTERM answers the requests it has in flight, then
//! exits cleanly.

use crate::stack::{free_port, get_text, spawn, wait_healthy, without_authentication, Stack};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Waits until the service at `base` serves a request besides the scrape asking.
async fn in_flight(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = get_text(http, &format!("{base}/metrics")).await;
        let serving = page
            .lines()
            .find_map(|line| line.strip_prefix("milestone_http_requests_in_flight "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if serving >= 2.0 {
            return;
        }
        assert!(Instant::now() < deadline, "the read never reached {base}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_api_stopped_by_ctrl_c_or_sigterm_answers_the_request_in_flight_then_exits() {
    let stack = Stack::start().await;
    for signal in ["INT", "TERM"] {
        let port = free_port();
        let mut query_api = spawn(
            "query-api",
            &[],
            &[
                ("MILESTONE_EVENT_STORE_URL", stack.url.clone()),
                ("MILESTONE_READ_MODEL_URL", stack.url.clone()),
                ("MILESTONE_DB_POOL_SIZE", "2".to_owned()),
                ("MILESTONE_HTTP_WORKERS", "1".to_owned()),
                without_authentication(),
                ("MILESTONE_QUERY_API_ADDR", format!("127.0.0.1:{port}")),
                ("MILESTONE_READ_YOUR_WRITES_TIMEOUT_MS", "4000".to_owned()),
            ],
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&stack.http, &base).await;
        // A read waiting for a write no projection has reached: in flight until its wait ends.
        let read = tokio::spawn(
            stack
                .http
                .post(format!("{base}/graphql"))
                .header("X-Consistency-Token", "999999999-0")
                .json(&json!({ "query": "{ orders(first: 1) { edges { node { id } } } }" }))
                .send(),
        );
        in_flight(&stack.http, &base).await;
        query_api.signal(signal);
        let response = read
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("SIG{signal}: the request in flight was dropped: {e}"));
        assert_eq!(response.status(), 200, "SIG{signal}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["extensions"]["consistency"]["reached"], false,
            "SIG{signal}: {body}"
        );
        let exit = query_api
            .exit_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("SIG{signal}: the query API is still running"));
        assert!(exit.success(), "SIG{signal}: {exit}");
    }
}

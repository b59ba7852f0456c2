//! Command -> visible in GraphQL, under load: each of `BENCH_CONNECTIONS` (default 16) clients
//! places an order over REST, then asks the query API for it with the command's consistency
//! token, in a closed loop for `BENCH_SECONDS` (default 5). The figure is the time from sending
//! the command to holding a GraphQL answer that shows the order; beside it, in the same run,
//! the command's own round trip, so that the difference is what projecting and reading cost.
//!
//! `cargo bench -p query-api --bench visibility` (needs PostgreSQL;
//! `MILESTONE_TEST_DATABASE_URL` names the server). The command API, the projector (its live
//! loop) and the query API run in this process, with the load generator, on the same two cores
//! as PostgreSQL.

use event_store::StoreOptions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// POSTs `body` as JSON with one extra header and returns the JSON answer.
async fn post(
    http: &reqwest::Client,
    url: &str,
    (name, value): (&str, &str),
    body: &serde_json::Value,
) -> serde_json::Value {
    let response = http.post(url).header(name, value).json(body).send().await;
    response.unwrap().json().await.unwrap()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let connections: usize = test_support::bench_env("BENCH_CONNECTIONS", 16);
    // Each service's pool; more clients than connections queue for them, as in production.
    let pool_size = connections.min(16);
    let url = test_support::fresh_database().await;

    let store = event_store::connect(&url, &StoreOptions { pool_size })
        .await
        .unwrap();
    let command_api = command_api::startup::Application::with_store(
        command_api::config::Config {
            pool_size,
            ..command_api::config::Config::local(&url)
        },
        store,
    )
    .unwrap();
    let orders_endpoint = format!("http://127.0.0.1:{}/orders", command_api.port());
    tokio::spawn(command_api.run_until_stopped());

    let projector = projector::Projector::connect(projector::Config::local(&url))
        .await
        .unwrap();
    tokio::spawn(async move { projector.run(std::future::pending()).await });

    let mut config = query_api::config::Config::local(&url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.pool_size = pool_size;
    let query_api = query_api::startup::Application::build(config).unwrap();
    let graphql_endpoint = format!("http://127.0.0.1:{}/graphql", query_api.port());
    tokio::spawn(query_api.run_until_stopped());

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2 * connections)
        .build()
        .unwrap();
    let payload = serde_json::json!({
        "customer_id": "customer-1", "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    });
    let command_legs = Arc::new(Mutex::new(Vec::new()));
    let stale = Arc::new(AtomicU64::new(0));
    let (legs, stale_count) = (command_legs.clone(), stale.clone());
    let (rate, p50, p99) = test_support::closed_loop(connections, move |_| {
        let (http, body) = (http.clone(), payload.clone());
        let (orders, graphql) = (orders_endpoint.clone(), graphql_endpoint.clone());
        let (legs, stale) = (legs.clone(), stale_count.clone());
        async move {
            let sent = Instant::now();
            let key = Uuid::new_v4().to_string();
            let placed = post(&http, &orders, ("Idempotency-Key", &key), &body).await;
            legs.lock().unwrap().push(sent.elapsed());
            let query = serde_json::json!({
                "query": "query($id: ID!) { order(id: $id) { id status } }",
                "variables": {"id": placed["order_id"]}
            });
            let token = placed["consistency_token"].as_str().unwrap();
            let answer = post(&http, &graphql, ("X-Consistency-Token", token), &query).await;
            assert!(answer.get("errors").is_none(), "{answer}");
            if answer["data"]["order"]["status"] != "PLACED" {
                stale.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    let mut legs = command_legs.lock().unwrap().clone();
    legs.sort_unstable();
    println!(
        "{connections} clients, each: POST /orders, then order(id) with its consistency token"
    );
    println!(
        "POST /orders alone:          p50 {:?}  p99 {:?}",
        percentile(&legs, 0.5),
        percentile(&legs, 0.99)
    );
    println!("command -> visible (GraphQL): p50 {p50:?}  p99 {p99:?}  ({rate:.0} orders/s)");
    println!(
        "answers without the order (token wait timed out): {} of {}",
        stale.load(Ordering::Relaxed),
        legs.len()
    );
    test_support::drop_database(&url).await;
}

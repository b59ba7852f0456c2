//! Place-order commands/s through the REST API at 16 connections, beside a raw single-row
//! INSERT baseline (unique (stream, revision) key) at 16 writers on the same database in the
//! same run.
//!
//! `cargo bench -p command-api --bench place_order` (needs PostgreSQL;
//! `MILESTONE_TEST_DATABASE_URL` names the server). `BENCH_SECONDS` (default 5),
//! `BENCH_CONNECTIONS` (default 16). The load generator runs in the same process and shares the
//! two cores with the server and PostgreSQL.

use command_api::config::Config;
use command_api::startup::Application;
use event_store::StoreOptions;
use uuid::Uuid;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let connections: usize = test_support::bench_env("BENCH_CONNECTIONS", 16);
    let url = test_support::fresh_database().await;

    let store = event_store::connect(
        &url,
        &StoreOptions {
            pool_size: connections,
        },
    )
    .await
    .unwrap();
    let (pool, _) = service_kit::postgres::build_pool(&url, connections).unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute("create table raw_append (stream_id text not null, revision bigint not null, data jsonb not null, primary key (stream_id, revision))")
        .await
        .unwrap();
    let payload = serde_json::json!({
        "customer_id": "customer-1", "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    });

    let raw_payload = payload.clone();
    let (raw, raw_p50, raw_p99) = test_support::closed_loop(connections, move |n| {
        let (pool, data) = (pool.clone(), raw_payload.clone());
        async move {
            let c = pool.get().await.unwrap();
            let stmt = c
                .prepare_cached(
                    "insert into raw_append (stream_id, revision, data) values ($1, 0, $2)",
                )
                .await
                .unwrap();
            c.execute(&stmt, &[&format!("order-{n}-{}", Uuid::new_v4()), &data])
                .await
                .unwrap();
        }
    })
    .await;

    let config = Config {
        pool_size: connections,
        ..Config::local(&url)
    };
    let app = Application::with_store(config, store).unwrap();
    let endpoint = format!("http://127.0.0.1:{}/orders", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let (api, api_p50, api_p99) = test_support::closed_loop(connections, move |_| {
        let (http, endpoint, body) = (http.clone(), endpoint.clone(), payload.clone());
        async move {
            let r = http
                .post(&endpoint)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let _ = r.bytes().await.unwrap();
        }
    })
    .await;
    println!("{connections} connections");
    println!("raw single-row INSERT: {raw:>8.0} /s  p50 {raw_p50:?}  p99 {raw_p99:?}");
    println!(
        "POST /orders:          {api:>8.0} /s  p50 {api_p50:?}  p99 {api_p99:?}  ({:.2}x raw)",
        api / raw
    );
    test_support::drop_database(&url).await;
}

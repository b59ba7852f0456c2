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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `connections` loops of `op` for the configured time; returns (ops/s, p50, p99).
async fn load<F, Fut>(connections: usize, op: F) -> (f64, Duration, Duration)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (op, stop, counter) = (op.clone(), stop.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    op(counter.fetch_add(1, Ordering::Relaxed)).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(env("BENCH_SECONDS", 5.0))).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, pct(0.50), pct(0.99))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let connections: usize = env("BENCH_CONNECTIONS", 16);
    let admin = std::env::var("MILESTONE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
    let (admin_client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must be running");
    tokio::spawn(conn);
    let db = format!("command_bench_{}", Uuid::new_v4().simple());
    admin_client
        .batch_execute(&format!("create database {db}"))
        .await
        .unwrap();
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);

    let store = event_store::connect(
        &url,
        &StoreOptions {
            pool_size: connections,
        },
    )
    .await
    .unwrap();
    let (pool, _) = event_store::postgres::build_pool(&url, connections).unwrap();
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
    let (raw, raw_p50, raw_p99) = load(connections, move |n| {
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
        event_store_url: url.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        pool_size: connections,
        body_limit_bytes: 64 * 1024,
        workers: 2,
    };
    let app = Application::with_store(config, store).unwrap();
    let endpoint = format!("http://127.0.0.1:{}/orders", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let (api, api_p50, api_p99) = load(connections, move |_| {
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
    let _ = admin_client
        .batch_execute(&format!("drop database if exists {db} with (force)"))
        .await;
}

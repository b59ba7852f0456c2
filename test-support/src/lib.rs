//! Helpers shared by the integration tests of every crate: each test gets its own PostgreSQL
//! database with a random name, on the server named by `MILESTONE_TEST_DATABASE_URL` (default
//! the local server `scripts/test.sh` starts). `log` writes known histories into a store the
//! way the command API would; `v1_payment` writes an order paid by an older event version;
//! `auth` issues tokens against a key set of the test's own; `otlp_sink` receives traces.

#![forbid(unsafe_code)]

pub mod auth;
pub mod log;
pub mod otlp_sink;
pub mod slow_client;
pub mod v1_payment;

use uuid::Uuid;

/// The server the tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("MILESTONE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The URL of database `name` on the test server.
pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must be running: start it with `bash scripts/test.sh`");
    tokio::spawn(conn);
    client
}

/// Creates an empty database with a random name and returns its URL.
///
/// # Panics
/// When the test server cannot be reached (a test cannot go on without it).
pub async fn fresh_database() -> String {
    fresh_database_with("").await
}

/// As [`fresh_database`], created with `clauses` (`template template0 locale 'C'`, say).
///
/// # Panics
/// When the test server cannot be reached or refuses the clauses.
pub async fn fresh_database_with(clauses: &str) -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    admin()
        .await
        .batch_execute(&format!("create database {name} {clauses}"))
        .await
        .expect("create a test database");
    database_url(&name)
}

/// Drops a test database, closing its connections: the store behind it becomes unreachable.
///
/// # Panics
/// When the test server cannot be reached.
pub async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    admin()
        .await
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .await
        .expect("drop the test database");
}

/// A setting of a benchmark from the environment, or its default.
pub fn bench_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A closed-loop load: `connections` tasks call `op(n)` (n counts calls across tasks) until
/// `BENCH_SECONDS` (default 5) pass. Returns the calls per second, the median and the 99th
/// percentile latency.
///
/// # Panics
/// When a task panics (a failed request in `op`).
pub async fn closed_loop<F, Fut>(
    connections: usize,
    op: F,
) -> (f64, std::time::Duration, std::time::Duration)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (op, stop, counter) = (op.clone(), stop.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = std::time::Instant::now();
                    op(counter.fetch_add(1, Ordering::Relaxed)).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs_f64(bench_env(
        "BENCH_SECONDS",
        5.0,
    )))
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a load task failed"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))];
    (all.len() as f64 / elapsed, pct(0.50), pct(0.99))
}

/// The median of benchmark figures.
///
/// # Panics
/// When `figures` is empty.
pub fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(|a, b| a.total_cmp(b));
    figures[figures.len() / 2]
}

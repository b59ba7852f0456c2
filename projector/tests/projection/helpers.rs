use chrono::{DateTime, TimeZone, Utc};
use domain::*;
use event_store::{EventStore, StoreOptions};
use projector::{Config, Projector};
use std::sync::Arc;
pub use test_support::log::*;
use uuid::Uuid;

pub struct Env {
    pub url: String,
    pub store: Arc<dyn EventStore>,
    pub projector: Projector,
}

pub fn config(url: &str) -> Config {
    let mut config = Config::local(url);
    config.standby_poll = std::time::Duration::from_millis(100);
    config
}

pub async fn env() -> Env {
    let url = test_support::fresh_database().await;
    env_on(&url, config(&url)).await
}

pub async fn env_on(url: &str, config: Config) -> Env {
    let store = event_store::connect(url, &StoreOptions { pool_size: 4 })
        .await
        .unwrap();
    let projector = Projector::connect(config).await.unwrap();
    Env {
        url: url.to_owned(),
        store,
        projector,
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

/// The known order: lines A (2 x 1000) and B (1 x 250) for `cust-7`.
pub fn order(id: Uuid) -> PlaceOrder {
    new_order(id, "cust-7", &[("A", 2, 1000), ("B", 1, 250)])
}

pub fn place(id: Uuid) -> OrderCommand {
    OrderCommand::PlaceOrder(order(id))
}

pub const TOTAL: i64 = 2250;

pub fn reason(s: &str) -> Reason {
    Reason::parse(s).unwrap()
}

/// Runs the projector until it has applied at least `n` more events (the log's visibility can
/// trail an append by a moment on PostgreSQL).
pub async fn project(projector: &Projector, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut total = 0;
    while total < n && std::time::Instant::now() < deadline {
        total += projector.run_once().await.unwrap();
        if total < n {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    total
}

/// Runs the projector until its checkpoint has counted `total` applied events (or 10 s pass).
pub async fn project_until_applied(projector: &Projector, total: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        projector.run_once().await.unwrap();
        let applied = scalar(
            projector,
            "select coalesce(max(events_applied), 0) from projection_checkpoints",
        )
        .await;
        if applied as usize >= total {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The read models as text, in a stable order: equal dumps mean identical tables.
pub async fn dump(projector: &Projector) -> String {
    let client = projector.pool().get().await.unwrap();
    let mut out = String::new();
    for sql in [
        "select coalesce(string_agg(s::text, E'\\n' order by order_id), '') from order_status s",
        "select coalesce(string_agg(t::text, E'\\n' order by order_id, revision), '') from order_timeline t",
        "select coalesce(string_agg(c::text, E'\\n' order by status), '') from order_status_counts c",
    ] {
        let text: String = client.query_one(sql, &[]).await.unwrap().get(0);
        out.push_str(&text);
        out.push_str("\n--\n");
    }
    out
}

pub async fn row(projector: &Projector, id: Uuid) -> serde_json::Value {
    let client = projector.pool().get().await.unwrap();
    client
        .query_one(
            "select to_jsonb(s) from order_status s where order_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// How many rows `table` holds.
pub async fn rows_in(projector: &Projector, table: &str) -> i64 {
    scalar(projector, &format!("select count(*) from {table}")).await
}

pub async fn scalar(projector: &Projector, sql: &str) -> i64 {
    let client = projector.pool().get().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Counts kept by the projector must equal counting the rows.
pub async fn assert_counts_consistent(projector: &Projector) {
    let kept = scalar(projector, "select count(*) from (select status, orders from order_status_counts except select status, count(*) from order_status group by status) d").await;
    let rows = scalar(projector, "select count(*) from (select status, count(*) from order_status group by status except select status, orders from order_status_counts) d").await;
    assert_eq!(
        (kept, rows),
        (0, 0),
        "order_status_counts disagrees with order_status"
    );
}

/// Waits (at most 15 s) until the projection's checkpoint has counted `n` applied events, as
/// a live projector running elsewhere applies them.
pub async fn wait_for_applied(projector: &Projector, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while (scalar(
        projector,
        "select coalesce(max(events_applied), 0) from projection_checkpoints",
    )
    .await as usize)
        < n
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not all {n} events were applied in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

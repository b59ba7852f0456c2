//! Append throughput of the PostgreSQL backend beside a raw single-row INSERT baseline with a
//! unique (stream, revision) key, on the same database in the same run.
//!
//! `cargo bench -p event-store --bench append` (needs PostgreSQL; `MILESTONE_TEST_DATABASE_URL`
//! names the server, default postgres://postgres:postgres@127.0.0.1:5432/postgres).
//! `BENCH_SECONDS` sets the length of each round (default 3); each figure is the median of 3.

use event_store::{EventStore, ExpectedRevision, Metadata, NewEvent};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const WRITERS: [usize; 3] = [1, 8, 16];
const ROUNDS: usize = 3;

fn round_length() -> Duration {
    Duration::from_secs_f64(test_support::bench_env("BENCH_SECONDS", 3.0))
}

fn payload(n: u64) -> serde_json::Value {
    serde_json::json!({ "order_id": Uuid::new_v4(), "n": n, "note": "benchmark event of typical size" })
}

/// Runs `writers` tasks for one round; each calls `op(writer, i)` in a loop. Returns ops/s.
async fn round<F, Fut>(writers: usize, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Instant::now() + round_length();
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < stop {
                    op(w, n).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let url = test_support::fresh_database().await;

    let store = Arc::new(
        event_store::postgres::PgEventStore::connect(&url, 16)
            .await
            .unwrap(),
    );
    store
        .pool()
        .get()
        .await
        .unwrap()
        .batch_execute(
            "create table raw_append (stream_id text not null, revision bigint not null,
               data jsonb not null, primary key (stream_id, revision))",
        )
        .await
        .unwrap();

    println!(
        "append benchmark: {}s rounds, median of {ROUNDS}",
        round_length().as_secs_f64()
    );
    println!(
        "{:>8} {:>14} {:>14} {:>7}",
        "writers", "raw INSERT/s", "append/s", "ratio"
    );
    for writers in WRITERS {
        let mut raw = Vec::new();
        let mut ours = Vec::new();
        for _ in 0..ROUNDS {
            let pool = store.pool().clone();
            let run = Uuid::new_v4().simple().to_string();
            raw.push(
                round(writers, move |w, n| {
                    let pool = pool.clone();
                    let stream = format!("order-{run}-{w}");
                    async move {
                        let c = pool.get().await.unwrap();
                        let stmt = c
                            .prepare_cached("insert into raw_append (stream_id, revision, data) values ($1, $2, $3)")
                            .await
                            .unwrap();
                        c.execute(&stmt, &[&stream, &(n as i64), &payload(n)]).await.unwrap();
                    }
                })
                .await,
            );
            let s = store.clone();
            let run = Uuid::new_v4().simple().to_string();
            ours.push(
                round(writers, move |w, n| {
                    let s = s.clone();
                    let stream = format!("order-{run}-{w}");
                    async move {
                        let expected = if n == 0 {
                            ExpectedRevision::NoStream
                        } else {
                            ExpectedRevision::Exact(n - 1)
                        };
                        let event = NewEvent {
                            id: Uuid::new_v4(),
                            event_type: "OrderPlaced".into(),
                            schema_version: 1,
                            data: payload(n),
                            metadata: Metadata {
                                correlation_id: Some(Uuid::new_v4().to_string()),
                                causation_id: Some(Uuid::new_v4().to_string()),
                                ..Metadata::default()
                            },
                        };
                        s.append(&stream, expected, vec![event]).await.unwrap();
                    }
                })
                .await,
            );
        }
        let (raw, ours) = (test_support::median(raw), test_support::median(ours));
        println!("{writers:>8} {raw:>14.0} {ours:>14.0} {:>7.2}", ours / raw);
    }
    drop(store);
    test_support::drop_database(&url).await;
}

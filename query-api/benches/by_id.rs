//! `order(id)` requests/s at 32 connections against a read model of 100k orders, beside a raw
//! SQL by-id baseline (the same pool size, the same process) in the same run.
//!
//! `cargo bench -p query-api --bench by_id` (needs PostgreSQL; `MILESTONE_TEST_DATABASE_URL`
//! names the server). `BENCH_ORDERS` (default 100000), `BENCH_SECONDS` (default 5),
//! `BENCH_CONNECTIONS` (default 32), `BENCH_TELEMETRY=1` (then the GraphQL phase runs untraced
//! and traced in alternation for `BENCH_ROUNDS` rounds, default 3, which goes first swapping
//! each round; traced spans are sent by the services' OTLP exporter to a trace receiver in this
//! process, `test_support::otlp_sink`; the logs at `RUST_LOG`, `info` by default, in both;
//! prints each round's ratio and their median). The load generator runs in the same process and
//! shares the two cores with the server and PostgreSQL.

use event_store::{Metadata, StoreOptions};
use query_api::config::Config;
use query_api::startup::Application;
use std::sync::Arc;
use uuid::Uuid;

fn placed(id: Uuid, i: usize) -> serde_json::Value {
    serde_json::json!({
        "order_id": id, "customer_id": format!("customer-{}", i % 5000), "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999}],
        "total_minor": 3998,
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // BENCH_TELEMETRY=1: the GraphQL phase with tracing on and off, in the same process, the
    // spans sent over OTLP to a receiver that counts them.
    let sink = (test_support::bench_env("BENCH_TELEMETRY", 0) == 1).then(|| {
        test_support::otlp_sink::start("127.0.0.1:0".parse().unwrap(), std::future::pending())
            .expect("the trace receiver listens")
    });
    let tracing = sink
        .as_ref()
        .map(|sink| service_kit::telemetry::init_switchable_tracing(Some(&sink.endpoint())));
    let orders: usize = test_support::bench_env("BENCH_ORDERS", 100_000);
    let connections: usize = test_support::bench_env("BENCH_CONNECTIONS", 32);
    let url = test_support::fresh_database().await;

    // The read model, filled the real way: OrderPlaced events projected by the projector.
    event_store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    let projector = projector::Projector::connect(projector::Config::local(&url))
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ids: Vec<Uuid> = (0..orders).map(|_| Uuid::new_v4()).collect();
    let meta = serde_json::to_value(Metadata {
        correlation_id: Some("bench".into()),
        ..Metadata::default()
    })
    .unwrap();
    for chunk in ids.chunks(5000) {
        let streams: Vec<String> = chunk.iter().map(|id| format!("order-{id}")).collect();
        let data: Vec<serde_json::Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| placed(*id, i))
            .collect();
        let event_ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::new_v4()).collect();
        let metas = vec![meta.clone(); chunk.len()];
        client
            .execute(
                "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
                 select s, 0, i, 'OrderPlaced', 1, d, m from unnest($1::text[], $2::uuid[], $3::jsonb[], $4::jsonb[]) as u(s, i, d, m)",
                &[&streams, &event_ids, &data, &metas],
            )
            .await
            .unwrap();
    }
    let projected = projector.run_once().await.unwrap();
    client
        .batch_execute("vacuum analyze order_status")
        .await
        .unwrap();
    println!("read model: {projected} orders projected");

    let mut config = Config::local(&url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.pool_size = connections;
    let app = Application::build(config).unwrap();
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let ids = Arc::new(ids);

    // Baseline: the same by-id read as raw SQL through a pool of the same size.
    let (pool, _) = service_kit::postgres::build_pool(&url, connections).unwrap();
    let baseline_ids = ids.clone();
    let (raw, raw_p50, raw_p99) = test_support::closed_loop(connections, move |n| {
        let (pool, ids) = (pool.clone(), baseline_ids.clone());
        async move {
            let c = pool.get().await.unwrap();
            let stmt = c
                .prepare_cached("select order_id, status, customer_id, total_minor, pending_actions, last_milestone_at from order_status where order_id = $1")
                .await
                .unwrap();
            c.query_one(&stmt, &[&ids[n as usize % ids.len()]]).await.unwrap();
        }
    })
    .await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}/graphql");
    let by_id = move || {
        let (http, endpoint, ids) = (http.clone(), endpoint.clone(), ids.clone());
        test_support::closed_loop(connections, move |n| {
            let (http, endpoint, ids) = (http.clone(), endpoint.clone(), ids.clone());
            async move {
                let body = serde_json::json!({
                    "query": "query($id: ID!) { order(id: $id) { id status customerId totalMinor pendingActions lastMilestoneAt } }",
                    "variables": {"id": ids[n as usize % ids.len()]}
                });
                let response = http.post(&endpoint).json(&body).send().await.unwrap();
                assert!(response.status().is_success());
                let _ = response.bytes().await.unwrap();
            }
        })
    };
    let (gql, gql_p50, gql_p99) = by_id().await;
    println!("{connections} connections, {orders} orders");
    println!("raw SQL by id:     {raw:>8.0} req/s  p50 {raw_p50:?}  p99 {raw_p99:?}");
    println!(
        "GraphQL order(id): {gql:>8.0} req/s  p50 {gql_p50:?}  p99 {gql_p99:?}  ({:.2}x raw SQL)",
        gql / raw
    );
    if let (Some(switch), Some(sink)) = (tracing, sink) {
        let rounds: usize = test_support::bench_env("BENCH_ROUNDS", 3);
        let mut ratios = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            // Which goes first swaps every round, so that warming up favours neither.
            let mut rates = [0.0; 2];
            for traced in [round % 2 == 0, round % 2 == 1] {
                switch.set(traced);
                let (rate, p50, p99) = by_id().await;
                switch.set(false);
                rates[usize::from(traced)] = rate;
                let label = if traced { "traced" } else { "untraced" };
                println!("round {round} {label:<9} {rate:>8.0} req/s  p50 {p50:?}  p99 {p99:?}");
            }
            let ratio = rates[1] / rates[0];
            println!("round {round}: traced {ratio:.3}x untraced");
            ratios.push(ratio);
        }
        ratios.sort_by(f64::total_cmp);
        // The last spans sent (a blocking flush, off the runtime that serves the receiver).
        tokio::task::spawn_blocking(service_kit::telemetry::shutdown_tracing)
            .await
            .unwrap();
        println!(
            "traced against untraced, median of {rounds} rounds: {:.3}x ({} spans in {} exports received over OTLP)",
            ratios[rounds / 2],
            sink.received.spans(),
            sink.received.exports()
        );
    }
    drop(client);
    test_support::drop_database(&url).await;
}

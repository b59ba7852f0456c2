//! Export throughput to Parquet and JSON Lines for a log of >= 1M events, beside `COPY ... TO`
//! of the same rows (the physical limit) on the same database in the same run.
//!
//! `cargo bench -p cli --bench export` (needs PostgreSQL; `MILESTONE_TEST_DATABASE_URL` names
//! the server). `BENCH_EVENTS` (default 1000000), `BENCH_ROUNDS` (default 3, median reported).

use cli::args::{ExportArgs, Format};
use futures::StreamExt;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events: i64 = test_support::bench_env("BENCH_EVENTS", 1_000_000);
    let rounds: usize = test_support::bench_env("BENCH_ROUNDS", 3);
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &event_store::StoreOptions { pool_size: 4 })
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);

    let started = Instant::now();
    let orders = events / 5;
    client
        .execute(
            "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
             select 'order-' || md5(o::text)::uuid, r, gen_random_uuid(),
                    (array['OrderPlaced','PaymentAuthorized','InventoryReserved','OrderAccepted','FulfillmentStarted'])[r + 1], 1,
                    jsonb_build_object('order_id', md5(o::text)::uuid, 'customer_id', 'customer-' || (o % 5000),
                                       'currency', 'EUR', 'total_minor', 4498, 'note', 'typical payload of an order event'),
                    jsonb_build_object('$correlationId', md5(o::text), '$causationId', md5((o * 7 + r)::text),
                                       'occurredAt', to_char(timestamptz '2026-01-01' + (o || ' seconds')::interval, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))
             from generate_series(1, $1::bigint) o, generate_series(0, 4) r",
            &[&orders],
        )
        .await
        .unwrap();
    client
        .batch_execute("vacuum analyze es_events")
        .await
        .unwrap();
    let events = orders * 5;
    println!(
        "generated {events} events in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let (mut copy, mut jsonl, mut parquet) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let t = Instant::now();
        let stream = client
            .copy_out(
                "copy (select tx_id, seq, stream_id, revision, event_id, event_type, schema_version, recorded_at, metadata, data
                       from es_events order by tx_id, seq) to stdout",
            )
            .await
            .unwrap();
        let mut bytes = 0usize;
        futures::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            bytes += chunk.unwrap().len();
        }
        copy.push(events as f64 / t.elapsed().as_secs_f64());
        for (format, into, name) in [
            (Format::Jsonl, &mut jsonl, "events.jsonl"),
            (Format::Parquet, &mut parquet, "events.parquet"),
        ] {
            let args = ExportArgs {
                format,
                out: Some(dir.path().join(name)),
                after: None,
                until_position: None,
                since: None,
                until: None,
                types: Vec::new(),
                workflow: None,
                stream_prefix: Some("order-".into()),
                quiet: true,
            };
            let t = Instant::now();
            let summary = cli::export::run(store.as_ref(), &args, std::future::pending())
                .await
                .unwrap();
            assert_eq!(summary.exported as i64, events);
            into.push(events as f64 / t.elapsed().as_secs_f64());
        }
        println!(
            "round {round}: COPY {:.0} rows/s ({} MB), JSON Lines {:.0} events/s, Parquet {:.0} events/s",
            copy[round - 1],
            bytes / 1_000_000,
            jsonl[round - 1],
            parquet[round - 1]
        );
    }
    let (copy, jsonl, parquet) = (
        test_support::median(copy),
        test_support::median(jsonl),
        test_support::median(parquet),
    );
    println!("median: COPY TO {copy:.0} rows/s; JSON Lines {jsonl:.0} events/s ({:.2}x); Parquet {parquet:.0} events/s ({:.2}x)", jsonl / copy, parquet / copy);
    drop(client);
    drop(store);
    test_support::drop_database(&url).await;
}

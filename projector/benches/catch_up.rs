//! Projector catch-up: events/s for projecting a generated log from scratch (a rebuild), beside
//! a set-based SQL baseline that writes the same row volume (one status row per order, one
//! timeline row per event) straight from `es_events` in the same database, in the same run.
//!
//! `cargo bench -p projector --bench catch_up` (needs PostgreSQL; `MILESTONE_TEST_DATABASE_URL`
//! names the server). `BENCH_ORDERS` sets the number of orders (default 40000, 5 events each
//! on average: about 200k events), `BENCH_BATCH` the catch-up batch size (default: the
//! projector's, 16000).
//! `BENCH_INTERLEAVE` picks one log (by default both are measured, one after the other, each in
//! a database of its own): `0` the contiguous one, each order's events written together; `1`
//! the interleaved one (every order's first event, then every second, ... in groups of 2000
//! orders), so that batches update rows written by earlier ones. Each figure is the median of 3
//! rounds.

use chrono::{Duration, TimeZone, Utc};
use domain::*;
use event_store::{Metadata, StoreOptions};
use projector::{Config, Projector};
use std::time::Instant;
use uuid::Uuid;

fn order_commands(i: usize, id: Uuid) -> Vec<OrderCommand> {
    let eur = Currency::parse("EUR").unwrap();
    let place = OrderCommand::PlaceOrder(PlaceOrder {
        order_id: OrderId::new(id),
        customer_id: CustomerId::parse(&format!("customer-{}", i % 5000)).unwrap(),
        currency: eur,
        lines: vec![
            OrderLine {
                sku: Sku::parse("SKU-1").unwrap(),
                quantity: Quantity::parse(2).unwrap(),
                unit_price_minor: 1999,
            },
            OrderLine {
                sku: Sku::parse("SKU-2").unwrap(),
                quantity: Quantity::parse(1).unwrap(),
                unit_price_minor: 500,
            },
        ],
        shipping_address: ShippingAddress {
            name: AddressLine::parse("Ada Lovelace").unwrap(),
            line1: AddressLine::parse("1 Main St").unwrap(),
            line2: None,
            city: AddressLine::parse("Berlin").unwrap(),
            postal_code: AddressLine::parse("10115").unwrap(),
            country: CountryCode::parse("DE").unwrap(),
        },
    });
    let pay = OrderCommand::RecordPaymentAuthorized {
        payment_id: PaymentId::parse(&format!("pay-{i}")).unwrap(),
        amount: Money::parse(4498, eur).unwrap(),
    };
    let reserve = OrderCommand::RecordInventoryReserved {
        reservation_id: ReservationId::parse(&format!("res-{i}")).unwrap(),
    };
    let mut commands = vec![place, pay, reserve];
    if !i.is_multiple_of(3) {
        commands.push(OrderCommand::StartFulfillment);
    }
    if i % 3 == 1 {
        commands.push(OrderCommand::ShipOrder {
            carrier: Carrier::parse("DHL").unwrap(),
            tracking_number: TrackingNumber::parse(&format!("TRK-{i}")).unwrap(),
        });
    }
    commands
}

/// Writes the log with multi-row inserts (much faster than appending one command at a time).
async fn generate(client: &tokio_postgres::Client, orders: usize, interleave: bool) -> usize {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut total = 0;
    let chunk = 2000;
    for first in (0..orders).step_by(chunk) {
        // Each order's events, as (stream, revision, type, data, metadata).
        let mut histories = Vec::new();
        for i in first..(first + chunk).min(orders) {
            let id = Uuid::new_v4();
            let mut state = OrderState::NotPlaced;
            let mut history = Vec::new();
            for (step, command) in order_commands(i, id).into_iter().enumerate() {
                for event in decide(&state, command).unwrap() {
                    let metadata = serde_json::to_value(Metadata {
                        correlation_id: Some(format!("corr-{i}")),
                        causation_id: Some(Uuid::new_v4().to_string()),
                        occurred_at: Some(start + Duration::minutes((i + step * 7) as i64)),
                        ..Metadata::default()
                    })
                    .unwrap();
                    let row = (
                        format!("order-{id}"),
                        history.len() as i64,
                        event.event_type().to_owned(),
                        i32::try_from(event.schema_version()).unwrap(),
                        event.data(),
                        metadata,
                    );
                    history.push(row);
                    state = evolve(state, &event);
                }
            }
            histories.push(history);
        }
        // Contiguous: one order's events after another. Interleaved: every order's first event,
        // then every order's second, and so on, as when workflows progress side by side.
        let ordered: Vec<_> = if interleave {
            let longest = histories.iter().map(Vec::len).max().unwrap_or(0);
            let mut iters: Vec<_> = histories.into_iter().map(Vec::into_iter).collect();
            (0..longest)
                .flat_map(|_| {
                    iters
                        .iter_mut()
                        .filter_map(Iterator::next)
                        .collect::<Vec<_>>()
                })
                .collect()
        } else {
            histories.into_iter().flatten().collect()
        };
        let (mut streams, mut revisions, mut ids, mut types, mut versions, mut data, mut metadata) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for (stream, revision, event_type, version, event_data, event_metadata) in ordered {
            streams.push(stream);
            revisions.push(revision);
            ids.push(Uuid::new_v4());
            types.push(event_type);
            versions.push(version);
            data.push(event_data);
            metadata.push(event_metadata);
        }
        total += streams.len();
        client
            .execute(
                "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
                 select s, r, i, t, v, d, m from unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[]) as u(s, r, i, t, v, d, m)",
                &[&streams, &revisions, &ids, &types, &versions, &data, &metadata],
            )
            .await
            .unwrap();
    }
    total
}

const BASELINE: &str = "
    truncate baseline_status, baseline_timeline;
    insert into baseline_timeline (order_id, revision, event_type, occurred_at, position, summary)
      select substr(stream_id, 7)::uuid, revision, event_type, (metadata->>'occurredAt')::timestamptz,
             tx_id || '-' || seq, event_type
      from es_events;
    insert into baseline_status (order_id, status, revision, last_event, updated_at, customer_id, total_minor)
      select substr(stream_id, 7)::uuid, max(event_type), max(revision),
             (array_agg(event_type order by revision desc))[1], max((metadata->>'occurredAt')::timestamptz),
             min(data->>'customer_id'), max((data->>'total_minor')::bigint)
      from es_events group by stream_id;";

/// One log's figures: the medians of 3 rounds, the projector's and the baseline's.
struct Figures {
    projector: f64,
    baseline: f64,
}

/// Generates a log of `orders` orders in a database of its own and measures 3 rebuilds of it,
/// each beside the baseline.
async fn measure(orders: usize, interleave: bool) -> Figures {
    let url = test_support::fresh_database().await;
    event_store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    let mut config = Config::local(&url);
    config.catch_up_batch_size = test_support::bench_env("BENCH_BATCH", config.catch_up_batch_size);
    let projector = Projector::connect(config).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let events = generate(&client, orders, interleave).await;
    client
        .batch_execute("vacuum analyze es_events")
        .await
        .unwrap();
    let log = if interleave {
        "interleaved"
    } else {
        "contiguous"
    };
    println!(
        "{log}: generated {events} events for {orders} orders in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    client
        .batch_execute(
            "create table baseline_timeline (order_id uuid, revision bigint, event_type text, occurred_at timestamptz,
                 position text, summary text, primary key (order_id, revision));
             create table baseline_status (order_id uuid primary key, status text, revision bigint, last_event text,
                 updated_at timestamptz, customer_id text, total_minor bigint);",
        )
        .await
        .unwrap();

    {
        let store = projector.store().clone();
        let t = Instant::now();
        let mut after = None;
        let mut n = 0;
        loop {
            let page = store.read_all(after, "order-", 1000).await.unwrap();
            if page.is_empty() {
                break;
            }
            n += page.len();
            after = page.last().map(|e| e.position);
        }
        println!(
            "{log}: read_all alone: {:.0} events/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    let (mut ours, mut baseline) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        // Each measurement starts from a fresh checkpoint, so that one round's WAL does not
        // land as checkpoint work in the next (superuser; skipped when not allowed).
        let _ = client.batch_execute("checkpoint").await;
        let t = Instant::now();
        client.batch_execute(BASELINE).await.unwrap();
        baseline.push(events as f64 / t.elapsed().as_secs_f64());
        let _ = client.batch_execute("checkpoint").await;
        let t = Instant::now();
        let n = projector.rebuild(|_| {}).await.unwrap();
        ours.push(events as f64 / t.elapsed().as_secs_f64());
        assert_eq!(n as usize, events);
        // A figure counts only if every event was applied, none dead-lettered.
        let dead: i64 = client
            .query_one("select count(*) from projection_dead_letters", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            dead, 0,
            "the generated log holds events the projection cannot apply"
        );
        println!(
            "{log} round {round}: projector {:.0} events/s, set-based SQL {:.0} events/s",
            ours[round - 1],
            baseline[round - 1]
        );
    }
    drop(projector);
    drop(client);
    test_support::drop_database(&url).await;
    Figures {
        projector: test_support::median(ours),
        baseline: test_support::median(baseline),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let orders: usize = test_support::bench_env("BENCH_ORDERS", 40_000);
    // Both logs unless `BENCH_INTERLEAVE` picks one (0: contiguous, 1: interleaved).
    let logs: &[bool] = match test_support::bench_env("BENCH_INTERLEAVE", 2) {
        0 => &[false],
        1 => &[true],
        _ => &[false, true],
    };
    let mut lines = Vec::new();
    for &interleave in logs {
        let f = measure(orders, interleave).await;
        let log = if interleave {
            "interleaved"
        } else {
            "contiguous"
        };
        lines.push(format!(
            "median, {log}: projector {:.0} events/s, set-based SQL baseline {:.0} events/s, ratio {:.2}",
            f.projector,
            f.baseline,
            f.projector / f.baseline
        ));
    }
    for line in lines {
        println!("{line}");
    }
}

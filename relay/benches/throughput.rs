//! Relay throughput and latency, each beside a baseline of raw JetStream publishes from the same
//! process in the same run, against a real PostgreSQL store and a `nats-server -js` started here
//! (loopback, free port, temporary store, killed at the end).
//!
//! `cargo bench -p relay --bench throughput` (needs PostgreSQL and `nats-server`).
//!
//! - Throughput: a log of `BENCH_ORDERS` orders (default 15000; placed, paid, reserved,
//!   accepted: 4 events and 7 messages each) relayed from scratch by the running relay until its
//!   checkpoint reaches the head (log -> JetStream ack, the checkpoint moved per batch of up to
//!   `BENCH_BATCH` events, default 1000); the baseline publishes as many messages of the same
//!   size from the same process and waits for their acks; with nats-server 2.14+, also as many
//!   in raw fast-ingest batches (the relay's way of publishing).
//! - Latency: orders placed at `BENCH_RATE` events/s (default 1000) for `BENCH_SECONDS`
//!   (default 5) while the relay follows the log live; from the append's commit to the
//!   message's delivery by the broker to a subscriber. The baseline: raw publish -> ack at the
//!   same rate.

use async_nats::jetstream;
use domain::*;
use event_store::{EventStore, ExpectedRevision, Metadata, NewEvent};
use futures::StreamExt;
use relay::nats_server::NatsServer;
use relay::publisher::{batch_reply, OP_APPEND, OP_COMMIT_END, OP_START};
use relay::{Config, Relay};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn place(id: Uuid, i: usize) -> OrderCommand {
    test_support::log::place(
        id,
        &format!("customer-{}", i % 5000),
        &[("SKU-1", 2, 1999), ("SKU-2", 1, 500)],
    )
}

fn history(id: Uuid, i: usize) -> Vec<OrderEvent> {
    let commands = vec![
        place(id, i),
        test_support::log::authorize(&format!("pay-{i}"), 4498),
        test_support::log::reserve(&format!("res-{i}")),
    ];
    let mut state = OrderState::default();
    let mut events = Vec::new();
    for c in commands {
        for e in decide(&state, c).unwrap() {
            state = evolve(state, &e);
            events.push(e);
        }
    }
    events
}

fn new_event(e: &OrderEvent, i: usize) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: e.event_type().to_owned(),
        schema_version: e.schema_version(),
        data: e.data(),
        metadata: Metadata {
            correlation_id: Some(format!("corr-{i}")),
            ..Metadata::default()
        },
    }
}

/// Writes the log: each order's events in one append, 16 appends at a time.
async fn generate(store: &Arc<dyn EventStore>, orders: usize) -> usize {
    let mut total = 0;
    let mut pending = futures::stream::iter((0..orders).map(|i| {
        let store = store.clone();
        async move {
            let id = Uuid::new_v4();
            let events: Vec<NewEvent> = history(id, i).iter().map(|e| new_event(e, i)).collect();
            let n = events.len();
            store
                .append(&Orders::stream_name(id), ExpectedRevision::NoStream, events)
                .await
                .unwrap();
            n
        }
    }))
    .buffer_unordered(16);
    while let Some(n) = pending.next().await {
        total += n;
    }
    total
}

/// Raw JetStream publishes of `count` messages of `size` bytes with message ids, in flight
/// together like the relay's waves; messages/s.
async fn raw_publishes(js: &jetstream::Context, count: usize, size: usize) -> f64 {
    let body = bytes::Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for _ in chunk {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
            acks.push(
                js.publish_with_headers("milestone.bench.raw", h, body.clone())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Raw fast-ingest batches (nats-server 2.14+, the stream's `allow_batched`): `count` messages
/// of `size` bytes with message ids, in batches of 1,750 (a relay batch's worth), each ended by
/// an unstored message and waited for, with the broker's flow acknowledgements every 500;
/// messages/s.
async fn raw_batches(js: &jetstream::Context, count: usize, size: usize) -> f64 {
    let client = js.client();
    let body = bytes::Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let n = 1750.min(count - sent) as u64;
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(format!("{inbox}.>")).await.unwrap();
        let mut acknowledged = 0;
        let mut answer = async |acknowledged: &mut u64| {
            let reply = replies.next().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
            match v.get("type").and_then(|t| t.as_str()) {
                Some("ack") => *acknowledged = v["seq"].as_u64().unwrap(),
                Some(other) => panic!("{other}: {v}"),
                None => assert_eq!(v["count"].as_u64(), Some(n), "{v}"),
            }
            v.get("type").is_none()
        };
        for seq in 1..=n {
            while seq > 1 && acknowledged + 1000 <= seq {
                answer(&mut acknowledged).await;
            }
            let op = if seq == 1 { OP_START } else { OP_APPEND };
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
            let reply = batch_reply(&inbox, seq, op);
            client
                .publish_with_reply_and_headers("milestone.bench.raw", reply, h, body.clone())
                .await
                .unwrap();
        }
        let end = batch_reply(&inbox, n + 1, OP_COMMIT_END);
        client
            .publish_with_reply("milestone.bench.raw", end, bytes::Bytes::new())
            .await
            .unwrap();
        while !answer(&mut acknowledged).await {}
        sent += n as usize;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let orders: usize = test_support::bench_env("BENCH_ORDERS", 15_000);
    let rate: u64 = test_support::bench_env("BENCH_RATE", 1000);
    let seconds: u64 = test_support::bench_env("BENCH_SECONDS", 5);
    let url = test_support::fresh_database().await;
    let nats = NatsServer::start();
    let mut config = Config::local(&url, &nats.url());
    config.batch_size = test_support::bench_env("BENCH_BATCH", 1000);
    config.lease_ttl = Duration::from_secs(5);
    let store = event_store::connect(&url, &Default::default())
        .await
        .unwrap();
    let js = relay::publisher::connect_configured(&config).await.unwrap();

    println!("generating {orders} orders...");
    let events = generate(&store, orders).await;
    let relay = Arc::new(
        Relay::<Orders>::start(config.clone(), store.clone(), js.clone())
            .await
            .unwrap(),
    );

    // Throughput: the relay as it runs (holding its lease, following the log) from scratch
    // until its checkpoint reaches the head; then the raw baseline of as many messages.
    let head = store.head_position().await.unwrap();
    let started = Instant::now();
    let following = relay.clone();
    tokio::spawn(async move { following.run("bench", std::future::pending()).await });
    while relay.checkpoint().await.unwrap() < head {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut stream = js.get_stream(&config.stream.name).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let (messages, bytes) = (state.messages as usize, state.bytes);
    let size = (bytes as usize / messages.max(1)).max(1);
    let raw = raw_publishes(&js, messages, size).await;
    let batched = relay::publisher::batched(&js, &config.stream.name).await;
    let raw_batched = if batched {
        Some(raw_batches(&js, messages, size).await)
    } else {
        None
    };
    println!("\nthroughput (log -> JetStream ack), {events} events, {messages} messages of ~{size} bytes:");
    println!("  raw JetStream publish   {raw:>10.0} messages/s");
    if let Some(raw_batched) = raw_batched {
        println!("  raw fast-ingest batches {raw_batched:>10.0} messages/s");
    }
    println!(
        "  relay                   {:>10.0} messages/s   {:>10.0} events/s   ({:.2}x raw{})",
        messages as f64 / elapsed,
        events as f64 / elapsed,
        messages as f64 / elapsed / raw,
        raw_batched.map_or(String::new(), |b| format!(
            ", {:.2}x raw batches",
            messages as f64 / elapsed / b
        ))
    );

    // Latency: the relay follows the log live; orders placed at `rate` per second.
    let received: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client.subscribe("milestone.order.placed").await.unwrap();
    let seen = received.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let at = Instant::now();
            if let Some(id) = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
                seen.lock().unwrap().insert(id.as_str().to_owned(), at);
            }
        }
    });
    let committed: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut writers = Vec::new();
    for i in 0..(rate * seconds) as usize {
        tick.tick().await;
        let (store, committed) = (store.clone(), committed.clone());
        writers.push(tokio::spawn(async move {
            let id = Uuid::new_v4();
            let event = decide(&OrderState::default(), place(id, i))
                .unwrap()
                .remove(0);
            let new = new_event(&event, i);
            let event_id = new.id.to_string();
            store
                .append(
                    &Orders::stream_name(id),
                    ExpectedRevision::NoStream,
                    vec![new],
                )
                .await
                .unwrap();
            committed.lock().unwrap().push((event_id, Instant::now()));
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies: Vec<Duration> = {
        let received = received.lock().unwrap();
        committed
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(id, at)| received.get(id).map(|r| r.saturating_duration_since(*at)))
            .collect()
    };
    latencies.sort();
    let sent = (rate * seconds) as usize;

    // Baseline: raw publish -> ack at the same rate.
    let mut raw_latencies = Vec::with_capacity(sent);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut acks = Vec::new();
    for _ in 0..sent {
        tick.tick().await;
        let js = js.clone();
        let body = bytes::Bytes::from(vec![b'x'; size]);
        acks.push(tokio::spawn(async move {
            let at = Instant::now();
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
            js.publish_with_headers("milestone.bench.raw", h, body)
                .await
                .unwrap()
                .await
                .unwrap();
            at.elapsed()
        }));
    }
    for a in acks {
        raw_latencies.push(a.await.unwrap());
    }
    raw_latencies.sort();
    println!(
        "\nlatency at {rate} events/s for {seconds} s ({} of {sent} delivered):",
        latencies.len()
    );
    println!(
        "  raw JetStream publish -> ack     p50 {:>9}   p99 {:>9}",
        ms(percentile(&raw_latencies, 0.5)),
        ms(percentile(&raw_latencies, 0.99))
    );
    println!(
        "  relay: commit -> broker delivery p50 {:>9}   p99 {:>9}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    drop(nats);
    test_support::drop_database(&url).await;
}

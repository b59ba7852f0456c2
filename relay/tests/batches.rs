//! Messages go to JetStream in fast-ingest batches: in the log's order, a message the broker
//! refuses ends the batch before it, and a stream that stops taking batches gets its messages
//! one by one. (Relaying a log again adds nothing: `contract.rs`.)

use async_nats::jetstream;
use domain::Orders;
use relay::nats_server::NatsServer;
use relay::{Config, Relay};
use std::sync::Arc;
use test_support::log::*;
use uuid::Uuid;

/// The subjects of the stream's messages in the order it holds them.
async fn subjects(js: &jetstream::Context, config: &Config) -> Vec<String> {
    let mut stream = js.get_stream(&config.stream.name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut subjects = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        subjects.push(m.subject.to_string());
    }
    subjects
}

/// Three orders placed one after the other; the second with ten lines.
async fn three_orders(store: &Arc<dyn event_store::EventStore>) {
    let lines: Vec<(String, u32, i64)> = (0..10).map(|i| (format!("SKU-{i}"), 1, 100)).collect();
    let many: Vec<(&str, u32, i64)> = lines.iter().map(|(s, q, p)| (s.as_str(), *q, *p)).collect();
    let mut last = None;
    for lines in [&[("SKU-1", 1, 100)][..], &many, &[("SKU-2", 1, 100)]] {
        let id = Uuid::new_v4();
        let recorded = Log::new(&**store)
            .order(id, vec![place(id, "customer-1", lines)])
            .await;
        last = recorded.position();
    }
    // Visible once every older transaction on the shared server has ended.
    while store.head_position().await.unwrap() < last {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A relay of orders over three placed orders (see [`three_orders`]), with its own broker.
struct Setup {
    config: Config,
    js: jetstream::Context,
    relay: Relay<Orders>,
    /// Killed when dropped.
    _nats: NatsServer,
}

async fn setup(max_message_bytes: i32) -> Setup {
    let url = test_support::fresh_database().await;
    let nats = NatsServer::start();
    let mut config = Config::local(&url, &nats.url());
    config.stream.max_message_bytes = max_message_bytes;
    let store = event_store::connect(&url, &Default::default())
        .await
        .unwrap();
    three_orders(&store).await;
    let js = relay::publisher::connect_configured(&config).await.unwrap();
    let relay = Relay::<Orders>::start(config.clone(), store, js.clone())
        .await
        .unwrap();
    Setup {
        config,
        js,
        relay,
        _nats: nats,
    }
}

const PLACED: [&str; 3] = [
    "milestone.order.placed",
    "milestone.order.work.authorize-payment",
    "milestone.order.work.reserve-inventory",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_inside_a_batch_is_dead_lettered_and_the_others_keep_the_logs_order() {
    // The second order's `placed` message is larger than this; every other message is smaller.
    let s = setup(1000).await;
    let outcomes = s.relay.run_once().await.unwrap();
    let letters: Vec<_> = outcomes
        .iter()
        .flat_map(|o| o.dead_letters.clone())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].subject, PLACED[0]);
    assert_eq!(outcomes.iter().map(|o| o.published).sum::<usize>(), 8);
    // The log's order across instances too: each order's messages before the next order's.
    let mut expected: Vec<String> = PLACED.iter().map(|s| s.to_string()).collect();
    expected.push("milestone.relay.dead-letter.relay-order".into());
    expected.extend(PLACED[1..].iter().map(|s| s.to_string()));
    expected.extend(PLACED.iter().map(|s| s.to_string()));
    assert_eq!(subjects(&s.js, &s.config).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_stream_stops_taking_batches_the_relay_publishes_message_by_message() {
    let s = setup(-1).await;
    let mut settings =
        s.js.get_stream(&s.config.stream.name)
            .await
            .unwrap()
            .cached_info()
            .config
            .clone();
    assert!(settings.allow_batch_publish, "a broker older than 2.14?");
    settings.allow_batch_publish = false;
    s.js.update_stream(settings).await.unwrap();

    let outcomes = s.relay.run_once().await.unwrap();
    assert_eq!(outcomes.iter().map(|o| o.published).sum::<usize>(), 9);
    // Message by message, in rounds of one message per instance.
    let rounds: Vec<String> = PLACED
        .iter()
        .flat_map(|s| std::iter::repeat_n(s.to_string(), 3))
        .collect();
    assert_eq!(subjects(&s.js, &s.config).await, rounds);
}

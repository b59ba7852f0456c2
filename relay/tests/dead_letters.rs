//! A message JetStream refuses for good goes to the dead-letter subject with its reason, is
//! recorded, and does not hold back the messages after it.

use domain::Orders;
use relay::nats_server::NatsServer;
use relay::{Config, Relay};
use serde_json::Value;
use test_support::log::*;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_the_stream_is_dead_lettered_with_its_reason_and_the_rest_flows_on()
{
    let url = test_support::fresh_database().await;
    let nats = NatsServer::start();
    let mut config = Config::local(&url, &nats.url());
    config.stream.max_message_bytes = 1000;
    let store = event_store::connect(&url, &Default::default())
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let lines: Vec<(String, u32, i64)> = (0..10).map(|i| (format!("SKU-{i}"), 1, 100)).collect();
    let lines: Vec<(&str, u32, i64)> = lines.iter().map(|(s, q, p)| (s.as_str(), *q, *p)).collect();
    let recorded = Log::new(&*store)
        .order(id, vec![place(id, "customer-1", &lines)])
        .await;
    // Visible once every older transaction on the shared server has ended.
    while store.head_position().await.unwrap() < recorded.position() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let jetstream = relay::publisher::connect_configured(&config).await.unwrap();
    let relay = Relay::<Orders>::start(config.clone(), store.clone(), jetstream.clone())
        .await
        .unwrap();
    let outcomes = relay.run_once().await.unwrap();
    let letters: Vec<_> = outcomes
        .iter()
        .flat_map(|o| o.dead_letters.clone())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].subject, "milestone.order.placed");
    assert!(
        letters[0].reason.contains("maximum"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        relay.checkpoint().await.unwrap(),
        store.head_position().await.unwrap()
    );

    let mut stream = jetstream.get_stream(&config.stream.name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut subjects = Vec::new();
    let mut dead = None;
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        if m.subject.starts_with("milestone.relay.dead-letter") {
            dead = Some(serde_json::from_slice::<Value>(&m.payload).unwrap());
        }
        subjects.push(m.subject.to_string());
    }
    assert_eq!(
        subjects,
        [
            "milestone.relay.dead-letter.relay-order",
            "milestone.order.work.authorize-payment",
            "milestone.order.work.reserve-inventory",
        ]
    );
    let dead = dead.unwrap();
    assert_eq!(dead["subject"], "milestone.order.placed");
    assert_eq!(dead["stream_id"], format!("order-{id}"));
    assert!(dead["reason"].as_str().unwrap().contains("maximum"));

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "select c.dead_letters, c.messages_published, d.subject from relay_checkpoints c
             join relay_dead_letters d using (relay)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, i64>(1), 2);
    assert_eq!(row.get::<_, String>(2), "milestone.order.placed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_does_not_decode_publishes_nothing_counts_as_a_dead_letter_and_the_log_flows_on(
) {
    let url = test_support::fresh_database().await;
    let nats = NatsServer::start();
    let config = Config::local(&url, &nats.url());
    let store = event_store::connect(&url, &Default::default())
        .await
        .unwrap();
    let log = Log::new(&*store);
    let broken = Uuid::new_v4();
    log.append_raw(
        &format!("order-{broken}"),
        event_store::ExpectedRevision::NoStream,
        "OrderPlaced",
        1,
        serde_json::json!({"not": "an order"}),
    )
    .await;
    let id = Uuid::new_v4();
    let recorded = log
        .order(id, vec![place(id, "customer-1", &[("SKU-1", 1, 100)])])
        .await;
    while store.head_position().await.unwrap() < recorded.position() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let jetstream = relay::publisher::connect_configured(&config).await.unwrap();
    let relay = Relay::<Orders>::start(config.clone(), store.clone(), jetstream.clone())
        .await
        .unwrap();
    let outcomes = relay.run_once().await.unwrap();
    let letters: Vec<_> = outcomes
        .iter()
        .flat_map(|o| o.dead_letters.clone())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].stream_id, format!("order-{broken}"));
    let published: usize = outcomes.iter().map(|o| o.published).sum();
    assert_eq!(
        published, 3,
        "the next order's placed event and its two work requests"
    );
    assert_eq!(
        relay.checkpoint().await.unwrap(),
        store.head_position().await.unwrap()
    );
}

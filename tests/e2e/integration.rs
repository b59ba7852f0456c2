//! The relay across real processes and a real `nats-server`: downstream services that only
//! consume work requests from JetStream and answer over REST drive orders forward; the relay
//! survives `kill -9` and a broker restart without losing, duplicating or reordering messages.

use crate::stack::*;
use async_nats::jetstream;
use futures::StreamExt;
use relay::nats_server::NatsServer;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

pub(crate) async fn jetstream(url: &str) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap();
    jetstream::new(client)
}

/// The relay creates the stream at start-up.
pub(crate) async fn stream(js: &jetstream::Context) -> jetstream::stream::Stream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = js.get_stream("MILESTONE").await {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not create the stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A downstream service: consumes the work requests for `action` from a durable consumer and
/// answers each with `answer` (a REST path under the order and a body); aborted when dropped.
struct Downstream(tokio::task::JoinHandle<()>);

impl Drop for Downstream {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn downstream(
    stack: &Stack,
    stream: &jetstream::stream::Stream,
    action: &'static str,
    answer: fn(&Value) -> (&'static str, Value),
) -> Downstream {
    let (stream, http, commands) = (stream.clone(), stack.http.clone(), stack.commands.clone());
    Downstream(tokio::spawn(async move {
        let consumer = stream
            .get_or_create_consumer(
                action,
                jetstream::consumer::pull::Config {
                    durable_name: Some(action.to_owned()),
                    filter_subject: format!("milestone.order.work.{action}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        while let Some(Ok(message)) = messages.next().await {
            let body: Value = serde_json::from_slice(&message.payload).unwrap();
            let data = &body["data"];
            let (path, reply) = answer(data);
            let id = data["order_id"].as_str().unwrap();
            let r = http
                .post(format!("{commands}/orders/{id}/{path}"))
                .json(&reply)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            message.ack().await.unwrap();
        }
    }))
}

/// The payment and inventory services, for authorizations, reservations and their undoing.
fn services(stack: &Stack, stream: &jetstream::stream::Stream) -> Vec<Downstream> {
    vec![
        downstream(stack, stream, "authorize-payment", |d| {
            (
                "payment-authorized",
                json!({"payment_id": format!("pay-{}", d["order_id"].as_str().unwrap()),
                       "amount_minor": d["amount_minor"], "currency": d["currency"]}),
            )
        }),
        downstream(stack, stream, "reserve-inventory", |d| {
            (
                "inventory-reserved",
                json!({"reservation_id": format!("res-{}", d["order_id"].as_str().unwrap())}),
            )
        }),
        downstream(stack, stream, "void-payment", |d| {
            ("payment-voided", json!({"payment_id": d["payment_id"]}))
        }),
        downstream(stack, stream, "release-inventory", |d| {
            (
                "inventory-released",
                json!({"reservation_id": d["reservation_id"]}),
            )
        }),
    ]
}

/// Polls the order until `done` holds for it.
async fn wait_for_order(stack: &Stack, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let body: Value = stack
            .http
            .post(format!("{}/graphql", stack.queries))
            .json(&json!({"query": format!("{{ order(id: \"{id}\") {{ status pendingActions compensationsOwed compensationsDone }} }}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let order = body["data"]["order"].clone();
        if done(&order) {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "the order did not get there: {order}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_and_inventory_services_fed_by_work_requests_bring_an_order_to_accepted_and_undo_it_when_cancelled(
) {
    let stack = Stack::start().await;
    let nats = NatsServer::start();
    let _relay = stack.relay(&nats.url(), &[]);
    let js = jetstream(&nats.url()).await;
    let stream = stream(&js).await;
    let _services = services(&stack, &stream);

    // The customer places the order; nobody else calls REST by hand.
    let (status, placed) = stack.command("/orders", order_body()).await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["order_id"].as_str().unwrap().to_owned();
    let order = wait_for_order(&stack, &id, |o| o["status"] == "ACCEPTED").await;
    assert_eq!(order["pendingActions"], json!(["START_FULFILLMENT"]));

    // The customer cancels: the void and release work requests are completed by the services.
    let (status, cancelled) = stack
        .command(
            &format!("/orders/{id}/cancel"),
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let order = wait_for_order(&stack, &id, |o| {
        o["status"] == "CANCELLED" && o["compensationsOwed"] == json!([])
    })
    .await;
    assert_eq!(
        order["compensationsDone"],
        json!(["VOID_PAYMENT", "RELEASE_INVENTORY"])
    );
}

/// Every message in the stream: (subject, message id, body).
pub(crate) async fn stored_messages(js: &jetstream::Context) -> Vec<(String, String, Value)> {
    let mut stream = stream(js).await;
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned();
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        out.push((m.subject.to_string(), id, body));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_relay_every_few_seconds_and_restarting_the_broker_loses_duplicates_and_reorders_nothing(
) {
    let stack = Stack::start().await;
    let mut nats = NatsServer::start();
    let mut relays = vec![stack.relay(&nats.url(), &[]), stack.relay(&nats.url(), &[])];
    let js = jetstream(&nats.url()).await;
    stream(&js).await;

    // Orders flow for a bounded time from three writers: each placed, then paid.
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let (http, commands) = (stack.http.clone(), stack.commands.clone());
            tokio::spawn(async move {
                let mut orders = 0usize;
                let until = Instant::now() + Duration::from_secs(20);
                while Instant::now() < until {
                    let r: Value = http
                        .post(format!("{commands}/orders"))
                        .json(&order_body())
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let id = r["order_id"].as_str().unwrap().to_owned();
                    let paid = http
                        .post(format!("{commands}/orders/{id}/payment-authorized"))
                        .json(&json!({"payment_id": "p", "amount_minor": TOTAL, "currency": "EUR"}))
                        .send()
                        .await
                        .unwrap();
                    let status = paid.status();
                    assert!(
                        status.is_success(),
                        "payment of {id}: {status} {}",
                        paid.text().await.unwrap_or_default()
                    );
                    orders += 1;
                }
                orders
            })
        })
        .collect();
    // kill -9 the active relay every few seconds (the standby takes over, a new standby is
    // started), and restart the broker once in the middle.
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(3000)).await;
        relays.remove(0).kill();
        relays.push(stack.relay(&nats.url(), &[]));
        if round == 2 {
            nats.restart();
        }
    }
    let mut orders = 0;
    for writer in writers {
        orders += writer.await.unwrap();
    }
    assert!(orders > 20, "too few orders: {orders}");

    // Four messages per order: placed, two work requests, payment authorized.
    let expected = orders * 4;
    let deadline = Instant::now() + Duration::from_secs(40);
    let messages = loop {
        let messages = stored_messages(&js).await;
        if messages.len() >= expected || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ids: HashSet<&str> = messages.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), messages.len(), "a message id twice");
    assert_eq!(messages.len(), expected, "every expected message, once");
    let mut per_order: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (subject, _, body) in &messages {
        let instance = body["subject"].as_str().unwrap_or_default();
        per_order.entry(instance).or_default().push(subject);
    }
    assert_eq!(per_order.len(), orders);
    for (order, subjects) in per_order {
        assert_eq!(
            subjects,
            [
                "milestone.order.placed",
                "milestone.order.work.authorize-payment",
                "milestone.order.work.reserve-inventory",
                "milestone.order.payment-authorized",
            ],
            "order {order}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_shows_each_relays_checkpoint_lag_and_dead_letters() {
    let stack = Stack::start().await;
    let nats = NatsServer::start();
    // A stream that refuses large messages: the placed event of a ten-line order is one.
    let _relay = stack.relay(
        &nats.url(),
        &[("MILESTONE_RELAY_MAX_MESSAGE_BYTES", "1000")],
    );
    let mut body = order_body();
    body["lines"] = (0..10)
        .map(|i| json!({"sku": format!("SKU-{i}"), "quantity": 1, "unit_price_minor": 100}))
        .collect();
    let (status, placed) = stack.command("/orders", body).await;
    assert_eq!(status, 201, "{placed}");
    let checkpoint = token(&placed);
    let query =
        "{ relayStatus { name checkpoint messagesPublished deadLetters lagEvents lagSeconds } }";
    let deadline = Instant::now() + Duration::from_secs(30);
    let relays = loop {
        let body: Value = stack
            .http
            .post(format!("{}/graphql", stack.queries))
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let relays = body["data"]["relayStatus"].clone();
        if relays[0]["checkpoint"] == checkpoint.as_str() {
            break relays;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not catch up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(relays[0]["name"], "relay-order");
    assert_eq!(relays[0]["lagEvents"], 0);
    assert_eq!(relays[0]["lagSeconds"], 0.0);
    assert_eq!(relays[0]["deadLetters"], 1);
    // The two work requests went through.
    assert_eq!(relays[0]["messagesPublished"], 2);
    assert_eq!(relays[1]["name"], "relay-return");
    assert_eq!(relays[1]["checkpoint"], Value::Null);
    assert_eq!(relays[1]["deadLetters"], 0);
}

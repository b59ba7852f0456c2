//! The integration contract against a real PostgreSQL store and a real `nats-server`: every
//! message the relay publishes validates against its JSON Schema, every schema is used, and
//! the headers carry the deduplication id, correlation, causation and trace context.

use chrono::{Duration, Utc};
use domain::{InspectionOutcome, OrderCommand, Orders, Reason, ReturnCommand, Returns};
use event_store::EventStore;
use relay::nats_server::NatsServer;
use relay::{Config, Relay};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use test_support::log::*;
use uuid::Uuid;

fn schemas() -> HashMap<String, Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/integration");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|f| {
            let path = f.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let schema = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (name, schema)
        })
        .collect()
}

/// Waits until readers of the log see everything up to `position` (an append becomes visible
/// once every transaction older than it has ended, on a server other tests share).
async fn wait_until_visible(store: &dyn EventStore, position: Option<event_store::Position>) {
    while store.head_position().await.unwrap() < position {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn every_kind_of_history(store: &dyn EventStore) {
    let log = Log::new(store);
    let lines = [("SKU-1", 2, 1500)];
    let (delivered, declined, short, cancelled, escalated) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let order = new_order(delivered, "customer-1", &lines);
    log.delivered_order(order.clone()).await;
    log.order(
        declined,
        vec![
            place(declined, "customer-2", &lines),
            OrderCommand::RecordPaymentDeclined {
                payment_id: domain::PaymentId::parse("pay-2").unwrap(),
                reason: Reason::parse("card expired").unwrap(),
            },
        ],
    )
    .await;
    log.order(
        short,
        vec![
            place(short, "customer-3", &lines),
            OrderCommand::RecordInventoryShortage {
                reservation_id: domain::ReservationId::parse("res-3").unwrap(),
                reason: Reason::parse("out of stock").unwrap(),
            },
        ],
    )
    .await;
    log.order(
        cancelled,
        vec![
            place(cancelled, "customer-4", &lines),
            authorize("pay-4", 3000),
            reserve("res-4"),
            cancel_order("changed my mind"),
            OrderCommand::RecordPaymentVoided {
                payment_id: domain::PaymentId::parse("pay-4").unwrap(),
            },
            OrderCommand::RecordInventoryReleased {
                reservation_id: domain::ReservationId::parse("res-4").unwrap(),
            },
        ],
    )
    .await;
    log.order(
        escalated,
        vec![
            place(escalated, "customer-5", &lines),
            OrderCommand::RecordReminder {
                action: domain::PendingAction::AuthorizePayment,
                attempt: 2,
            },
            OrderCommand::EscalateOrder {
                reason: Reason::parse("payment never answered").unwrap(),
            },
        ],
    )
    .await;
    let delivered_at = Utc::now() - Duration::days(2);
    let requested_at = Utc::now() - Duration::days(1);
    // One return case per order: each history below is a return of its own delivered order.
    let mut returns = Vec::new();
    for _ in 0..4 {
        let id = Uuid::new_v4();
        log.delivered_order(new_order(id, "customer-6", &lines))
            .await;
        returns.push(id);
    }
    let for_order = |id: Uuid| {
        let mut o = order.clone();
        o.order_id = domain::OrderId::new(id);
        request_return(&o, delivered_at, requested_at, &[("SKU-1", 1)], "too big")
    };
    log.record::<Returns>(
        returns[0],
        vec![
            for_order(returns[0]),
            approve("RMA-1"),
            receive(&[("SKU-1", InspectionOutcome::Accepted)]),
            refund("rf-1", 1500),
        ],
    )
    .await;
    log.record::<Returns>(
        returns[1],
        vec![
            for_order(returns[1]),
            ReturnCommand::RejectReturn {
                reason: Reason::parse("worn").unwrap(),
            },
        ],
    )
    .await;
    log.record::<Returns>(
        returns[2],
        vec![
            for_order(returns[2]),
            approve("RMA-3"),
            cancel_return("customer kept it"),
            receive(&[("SKU-1", InspectionOutcome::Accepted)]),
            ReturnCommand::RecordItemsShippedBack {
                carrier: domain::Carrier::parse("UPS").unwrap(),
                tracking_number: domain::TrackingNumber::parse("1Z999AA10123").unwrap(),
            },
        ],
    )
    .await;
    let last = log
        .record::<Returns>(
            returns[3],
            vec![
                for_order(returns[3]),
                ReturnCommand::EscalateReturn {
                    reason: Reason::parse("nobody decided").unwrap(),
                },
            ],
        )
        .await;
    wait_until_visible(store, last.position()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_message_validates_against_its_schema_and_every_schema_is_used() {
    let url = test_support::fresh_database().await;
    let nats = NatsServer::start();
    let config = Config::local(&url, &nats.url());
    let store = event_store::connect(&url, &Default::default())
        .await
        .unwrap();
    every_kind_of_history(&*store).await;
    let jetstream = relay::publisher::connect_configured(&config).await.unwrap();
    let orders = Relay::<Orders>::start(config.clone(), store.clone(), jetstream.clone())
        .await
        .unwrap();
    let returns = Relay::<Returns>::start(config.clone(), store.clone(), jetstream.clone())
        .await
        .unwrap();
    orders.run_once().await.unwrap();
    returns.run_once().await.unwrap();
    assert_eq!(
        orders.checkpoint().await.unwrap(),
        store
            .read_all(None, "order-", 10_000)
            .await
            .unwrap()
            .last()
            .map(|e| e.position)
    );

    let messages = read_all(&jetstream, &config.stream.name).await;
    let schemas = schemas();
    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (subject, headers, body) in &messages {
        let name = subject.strip_prefix("milestone.").unwrap();
        let schema = schemas
            .get(name)
            .unwrap_or_else(|| panic!("no schema for {subject}"));
        let validator = jsonschema::validator_for(schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{subject}: {errors:?}\n{body}");
        used.insert(name.to_owned());
        let id = headers.get("Nats-Msg-Id").unwrap().as_str().to_owned();
        assert_eq!(body["id"], id.as_str());
        assert!(ids.insert(id), "a message id twice");
        let correlation = headers.get("Milestone-Correlation-Id").unwrap().as_str();
        assert!(correlation.starts_with("corr-"), "{correlation}");
        assert!(headers.get("Milestone-Causation-Id").is_some());
        assert!(headers
            .get("traceparent")
            .unwrap()
            .as_str()
            .starts_with("00-"));
    }
    let all: BTreeSet<String> = schemas.keys().cloned().collect();
    assert_eq!(
        used,
        all,
        "schemas never used: {:?}",
        all.difference(&used).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_gets_exactly_one_work_request_per_action_it_comes_to_wait_for() {
    let url = test_support::fresh_database().await;
    let nats = NatsServer::start();
    let config = Config::local(&url, &nats.url());
    let store = event_store::connect(&url, &Default::default())
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let recorded = Log::new(&*store)
        .order(
            id,
            vec![
                place(id, "customer-1", &[("SKU-1", 2, 1500), ("SKU-2", 1, 700)]),
                authorize("pay-1", 3700),
                cancel_order("changed my mind"),
            ],
        )
        .await;
    wait_until_visible(&*store, recorded.position()).await;
    let jetstream = relay::publisher::connect_configured(&config).await.unwrap();
    let relay = Relay::<Orders>::start(config.clone(), store, jetstream.clone())
        .await
        .unwrap();
    relay.run_once().await.unwrap();
    // Published again from the start: JetStream drops the duplicates by message id.
    let first: Vec<(String, Value)> = read_all(&jetstream, &config.stream.name)
        .await
        .into_iter()
        .map(|(s, _, b)| (s, b))
        .collect();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute("update relay_checkpoints set position = null", &[])
        .await
        .unwrap();
    let again = relay.run_once().await.unwrap();
    let published: usize = again.iter().map(|o| o.published).sum();
    assert_eq!(published, first.len(), "each message acknowledged again");
    let messages = read_all(&jetstream, &config.stream.name).await;
    assert_eq!(messages.len(), first.len(), "a message published twice");
    let stored: Vec<(String, Value)> = messages
        .iter()
        .map(|(s, _, b)| (s.clone(), b.clone()))
        .collect();
    assert_eq!(stored, first, "the stream changed");
    let work: Vec<(&str, &Value)> = messages
        .iter()
        .filter(|(s, _, _)| s.contains(".work."))
        .map(|(s, _, b)| (s.as_str(), &b["data"]))
        .collect();
    let subjects: Vec<&str> = work.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        subjects,
        [
            "milestone.order.work.authorize-payment",
            "milestone.order.work.reserve-inventory",
            "milestone.order.work.void-payment",
        ]
    );
    let (_, pay) = work[0];
    assert_eq!(pay["amount_minor"], 3700);
    assert_eq!(pay["currency"], "EUR");
    assert_eq!(pay["attempt"], 1);
    assert_eq!(pay["order_id"], id.to_string());
    let (_, stock) = work[1];
    assert_eq!(stock["lines"][1]["sku"], "SKU-2");
    let (_, void) = work[2];
    assert_eq!(void["payment_id"], "pay-1");
    assert_eq!(void["amount_minor"], 3700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reminder_in_the_log_goes_out_once_as_its_actions_work_request_with_its_attempt() {
    let url = test_support::fresh_database().await;
    let nats = NatsServer::start();
    let config = Config::local(&url, &nats.url());
    let store = event_store::connect(&url, &Default::default())
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let remind = |attempt| OrderCommand::RecordReminder {
        action: domain::PendingAction::AuthorizePayment,
        attempt,
    };
    let recorded = Log::new(&*store)
        .order(
            id,
            vec![
                place(id, "customer-1", &[("SKU-1", 2, 1500)]),
                reserve("res-1"),
                remind(2),
                remind(3),
            ],
        )
        .await;
    wait_until_visible(&*store, recorded.position()).await;
    let reminders: Vec<Uuid> = store
        .read_all(None, "order-", 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "OrderReminded")
        .map(|e| e.id)
        .collect();
    assert_eq!(reminders.len(), 2);
    let jetstream = relay::publisher::connect_configured(&config).await.unwrap();
    let relay = Relay::<Orders>::start(config.clone(), store, jetstream.clone())
        .await
        .unwrap();
    relay.run_once().await.unwrap();

    let messages = read_all(&jetstream, &config.stream.name).await;
    let payments: Vec<(&async_nats::HeaderMap, &Value)> = messages
        .iter()
        .filter(|(s, _, _)| s == "milestone.order.work.authorize-payment")
        .map(|(_, h, b)| (h, b))
        .collect();
    let attempts: Vec<&Value> = payments
        .iter()
        .map(|(_, b)| &b["data"]["attempt"])
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    for ((headers, body), reminder) in payments[1..].iter().zip(&reminders) {
        let expected = relay::contract::work_message_id(*reminder, "AUTHORIZE_PAYMENT");
        assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), expected);
        assert_eq!(
            headers.get("Milestone-Causation-Id").unwrap().as_str(),
            reminder.to_string()
        );
        assert_eq!(body["data"]["amount_minor"], 3000);
        assert_eq!(body["data"]["order_id"], id.to_string());
    }
    // Reminders stay private: no public event for them, and the stock, which answered, is
    // asked once.
    let subjects: Vec<&str> = messages.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "milestone.order.placed",
            "milestone.order.work.authorize-payment",
            "milestone.order.work.reserve-inventory",
            "milestone.order.inventory-reserved",
            "milestone.order.work.authorize-payment",
            "milestone.order.work.authorize-payment",
        ]
    );
}

async fn read_all(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<(String, async_nats::HeaderMap, Value)> {
    let mut stream = jetstream.get_stream(stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        out.push((
            m.subject.to_string(),
            m.headers,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    out
}

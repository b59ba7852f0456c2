//! Subscriptions over a real websocket against the real server, the read models filled by the
//! projector from commands in the log.

use crate::helpers::*;
use crate::subscriber::{Protocol, Said, Subscriber};
use chrono::Utc;
use domain::OrderCommand;
use projector::returns::ReturnDeadlines;
use projector::{ReturnProjection, Runtime};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

const ORDER_UPDATED: &str = "subscription($id: ID!, $after: String) {
    orderUpdated(id: $id, after: $after) {
        token
        order { status revision lastPosition }
        events { revision eventType position }
    }
}";

/// The commands taking a placed order of [`TOTAL`] to delivered, one at a time.
fn walk_to_delivered() -> Vec<OrderCommand> {
    vec![
        authorize("pay-1", TOTAL),
        reserve("res-1"),
        OrderCommand::StartFulfillment,
        ship("UPS", "1Z999"),
        OrderCommand::ConfirmDelivery,
    ]
}

/// The event types of the walk, from the placing on.
const WALK: [&str; 7] = [
    "OrderPlaced",
    "PaymentAuthorized",
    "InventoryReserved",
    "OrderAccepted",
    "FulfillmentStarted",
    "OrderShipped",
    "OrderDelivered",
];

/// Reads `orderUpdated` messages until one leaves the order at `revision`; returns them.
async fn updates_until(subscriber: &mut Subscriber, revision: i64) -> Vec<Value> {
    let mut updates = Vec::new();
    loop {
        let update = subscriber.data().await["orderUpdated"].clone();
        let at = update["order"]["revision"].as_i64().unwrap();
        updates.push(update);
        if at >= revision {
            return updates;
        }
    }
}

/// Every event of the updates, in the order received: (revision, type).
fn events_of(updates: &[Value]) -> Vec<(i64, String)> {
    updates
        .iter()
        .flat_map(|u| u["events"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["revision"].as_i64().unwrap(),
                e["eventType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn walk_while_subscribed(protocol: Protocol) {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let placed = app.command(id, place(id, "cust-live")).await;
    app.project_to(placed).await;
    // Query, then subscribe from what the query showed.
    let seen = app
        .query(
            "query($id: ID!) { order(id: $id) { status lastPosition } }",
            json!({"id": id}),
        )
        .await;
    let token = seen["data"]["order"]["lastPosition"].as_str().unwrap();
    let mut subscriber = Subscriber::connect(&app.address, protocol).await;
    subscriber
        .subscribe("1", ORDER_UPDATED, json!({"id": id, "after": token}))
        .await;
    // One command per batch, except the last two, which one batch applies together.
    let mut commands = walk_to_delivered();
    let last_two = commands.split_off(3);
    for command in commands {
        let token = app.command(id, command).await;
        app.project_to(token).await;
    }
    let token = app.record(id, last_two).await;
    app.project_to(token).await;

    let updates = updates_until(&mut subscriber, 6).await;
    let events = events_of(&updates);
    let expected: Vec<(i64, String)> = WALK[1..]
        .iter()
        .enumerate()
        .map(|(i, t)| (i as i64 + 1, (*t).to_owned()))
        .collect();
    assert_eq!(events, expected, "every event once, in order: {updates:#?}");
    let last = updates.last().unwrap();
    assert_eq!(last["order"]["status"], "DELIVERED");
    assert_eq!(last["token"], last["order"]["lastPosition"]);
    // The batch of two came as one update: shipped, then delivered.
    assert_eq!(last["events"].as_array().unwrap().len(), 2, "{last}");
    assert!(subscriber.stays_quiet(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn a_subscriber_sees_every_event_of_an_order_walked_to_delivered_in_order_and_once() {
    walk_while_subscribed(Protocol::TransportWs).await;
}

#[tokio::test]
async fn a_legacy_subscriptions_transport_ws_client_sees_the_same_updates() {
    walk_while_subscribed(Protocol::LegacyWs).await;
}

#[tokio::test]
async fn updates_continue_across_a_projector_restart_and_a_reconnect_resumes_from_the_last_token() {
    let mut app = spawn_app().await;
    let id = Uuid::new_v4();
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    // From the start of the log: every event of the order.
    subscriber
        .subscribe("1", ORDER_UPDATED, json!({"id": id, "after": "0-0"}))
        .await;
    let mut commands = walk_to_delivered().into_iter();
    let token = app.command(id, place(id, "cust-restart")).await;
    app.project_to(token).await;
    let token = app.command(id, commands.next().unwrap()).await;
    app.project_to(token).await;
    let mut updates = updates_until(&mut subscriber, 1).await;

    app.restart_projector().await;
    let token = app.command(id, commands.next().unwrap()).await;
    app.project_to(token).await;
    updates.extend(updates_until(&mut subscriber, 3).await);

    // The client goes away; the order moves on without it.
    let last_token = updates.last().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    subscriber.close().await;
    for command in commands {
        let token = app.command(id, command).await;
        app.project_to(token).await;
    }
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe("1", ORDER_UPDATED, json!({"id": id, "after": last_token}))
        .await;
    updates.extend(updates_until(&mut subscriber, 6).await);

    let expected: Vec<(i64, String)> = WALK
        .iter()
        .enumerate()
        .map(|(i, t)| (i as i64, (*t).to_owned()))
        .collect();
    assert_eq!(events_of(&updates), expected, "{updates:#?}");
    assert_eq!(updates.last().unwrap()["order"]["status"], "DELIVERED");
}

const ORDERS_CHANGED: &str = "subscription($after: String, $filter: OrderFilter) {
    ordersChanged(after: $after, filter: $filter) {
        token
        order { id status customerId lines { sku } shippingAddress { name line1 city }
                milestones { placedAt } lastMilestone pendingActions }
    }
}";

#[tokio::test]
async fn a_list_subscriber_gets_each_changed_order_matching_its_filter_in_log_order() {
    let app = spawn_app().await;
    let before = app.order("cust-a", vec![]).await;
    app.project_all().await;
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe(
            "1",
            ORDERS_CHANGED,
            json!({"filter": {"customerId": "cust-b"}}),
        )
        .await;
    let first = app.order("cust-b", vec![]).await;
    app.order("cust-a", vec![]).await;
    let second = app.order("cust-b", vec![authorize("pay-1", TOTAL)]).await;
    app.project_all().await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let change = subscriber.data().await["ordersChanged"].clone();
        seen.push(change["order"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, [first.to_string(), second.to_string()]);
    assert!(subscriber.stays_quiet(Duration::from_millis(300)).await);
    assert_ne!(before, first);
}

#[tokio::test]
async fn counts_per_status_come_first_as_they_are_then_when_they_change() {
    let app = spawn_app().await;
    app.order("cust-c", vec![]).await;
    app.project_all().await;
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe(
            "1",
            "subscription { statusCountsChanged { status orders } }",
            json!({}),
        )
        .await;
    let count = |data: &Value, status: &str| {
        data["statusCountsChanged"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == status)
            .unwrap()["orders"]
            .as_i64()
            .unwrap()
    };
    let now = subscriber.data().await;
    assert_eq!(count(&now, "PLACED"), 1);
    app.order("cust-c", vec![cancel_order("changed my mind")])
        .await;
    app.project_all().await;
    let then = subscriber.data().await;
    assert_eq!((count(&then, "PLACED"), count(&then, "CANCELLED")), (1, 1));
}

#[tokio::test]
async fn a_return_case_is_followed_like_an_order() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let recorded = Log::new(app.store.as_ref())
        .delivered_order(known_order(id, "cust-r"))
        .await;
    app.wrote(recorded.position().unwrap());
    app.project_all().await;
    let returns = Runtime::start(
        projector::Config::local(&app.url),
        ReturnProjection::new(ReturnDeadlines::default()),
    )
    .await
    .unwrap();
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe(
            "1",
            "subscription($id: ID!) { returnUpdated(orderId: $id) {
                token return { status lastPosition } events { eventType } } }",
            json!({"id": id}),
        )
        .await;
    let request = request_return(
        &known_order(id, "cust-r"),
        Utc::now(),
        Utc::now(),
        &[("SKU-1", 2)],
        "too small",
    );
    let token = Log::new(app.store.as_ref())
        .record::<domain::Returns>(id, vec![request])
        .await
        .position()
        .unwrap();
    while returns
        .checkpoint()
        .await
        .unwrap()
        .is_none_or(|c| c < token)
    {
        returns.run_once().await.unwrap();
    }
    let update = subscriber.data().await["returnUpdated"].clone();
    assert_eq!(
        update["events"][0]["eventType"], "ReturnRequested",
        "{update}"
    );
    assert_eq!(update["return"]["status"], "REQUESTED");
    assert_eq!(update["token"], update["return"]["lastPosition"]);
}

#[tokio::test]
async fn a_subscriber_that_falls_too_far_behind_is_closed_with_the_token_to_resume_from() {
    const ORDERS: usize = 80;
    const SUBSCRIPTIONS: usize = 20;
    let app = spawn_with(Options {
        subscription_buffer: 2,
        max_subscriptions_per_connection: SUBSCRIPTIONS,
        ..Options::default()
    })
    .await;
    // A client that reads slowly: a small receive window, and it stops reading.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let stream = socket.connect(address).await.unwrap();
    let mut subscriber = Subscriber::open_on(stream, &app.address, Protocol::TransportWs).await;
    subscriber.init().await;
    for s in 0..SUBSCRIPTIONS {
        subscriber
            .subscribe(&format!("s{s}"), ORDERS_CHANGED, json!({"after": "0-0"}))
            .await;
    }
    // Far more than the connection holds (orders of many lines, whose SKUs every subscription
    // asks for); then more batches than the buffer.
    let skus: Vec<String> = (0..100)
        .map(|i| format!("SKU-OF-A-RATHER-LONG-NAME-{i:04}"))
        .collect();
    let lines: Vec<(&str, u32, i64)> = skus.iter().map(|s| (s.as_str(), 1, 100)).collect();
    let log = Log::new(app.store.as_ref());
    let mut ids = Vec::new();
    for _ in 0..ORDERS {
        let id = Uuid::new_v4();
        let placed = OrderCommand::PlaceOrder(new_order(id, "cust-slow", &lines));
        app.wrote(log.order(id, vec![placed]).await.position().unwrap());
        ids.push(id);
    }
    app.project_all().await;
    for id in ids.iter().take(6) {
        let token = app.command(*id, cancel_order("slow")).await;
        app.project_to(token).await;
    }
    // It reads again: what came before, then the end of a subscription, with where to resume.
    let change = |data: &Value| {
        let change = &data["ordersChanged"];
        let id = change["order"]["id"].as_str().unwrap().to_owned();
        (id, change["token"].as_str().unwrap().to_owned())
    };
    let mut seen: HashMap<String, HashSet<(String, String)>> = HashMap::new();
    let (closed, resume_from) = loop {
        let said = subscriber.next().await;
        let id = subscriber.last_id.clone().unwrap_or_default();
        match said {
            Said::Data(data) => {
                let fresh = seen.entry(id).or_default().insert(change(&data));
                assert!(fresh, "delivered twice: {data}");
            }
            Said::Errors(errors) => {
                assert_eq!(
                    errors[0]["extensions"]["code"], "SUBSCRIBER_TOO_SLOW",
                    "{errors}"
                );
                let token = errors[0]["extensions"]["resumeFrom"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                break (id, token);
            }
            other => panic!("expected data or the end, got {other:?}"),
        }
    };
    let mut seen = seen.remove(&closed).unwrap_or_default();
    assert!(
        seen.len() < ORDERS + 6,
        "it was never behind: {} delivered",
        seen.len()
    );
    subscriber.close().await;
    // Resuming from the token brings every order to its last change, none twice.
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe("1", ORDERS_CHANGED, json!({"after": resume_from}))
        .await;
    while let Some(data) = subscriber.data_within(Duration::from_secs(1)).await {
        assert!(seen.insert(change(&data)), "delivered twice: {data}");
    }
    let rows = app
        .database()
        .await
        .query(
            "select order_id::text, last_position from order_status",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), ORDERS);
    for row in rows {
        let last = (row.get::<_, String>(0), row.get::<_, String>(1));
        assert!(seen.contains(&last), "never delivered: {last:?}");
    }
}

#[tokio::test]
async fn a_subscription_past_the_connections_limit_is_refused_with_a_code_and_the_others_go_on() {
    let app = spawn_with(Options {
        max_subscriptions_per_connection: 1,
        ..Options::default()
    })
    .await;
    let id = Uuid::new_v4();
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe("1", ORDER_UPDATED, json!({"id": id}))
        .await;
    subscriber
        .subscribe("2", ORDER_UPDATED, json!({"id": id}))
        .await;
    match subscriber.next().await {
        Said::Errors(errors) => {
            assert_eq!(
                errors[0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
                "{errors}"
            )
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert!(matches!(subscriber.next().await, Said::Complete));
    let token = app.command(id, place(id, "cust-limit")).await;
    app.project_to(token).await;
    let update = subscriber.data().await;
    assert_eq!(update["orderUpdated"]["order"]["status"], "PLACED");
}

#[tokio::test]
async fn a_subscription_from_a_malformed_token_is_refused_with_a_code() {
    let app = spawn_app().await;
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe(
            "1",
            ORDER_UPDATED,
            json!({"id": Uuid::new_v4(), "after": "yesterday"}),
        )
        .await;
    match subscriber.next().await {
        Said::Errors(errors) => assert_eq!(
            errors[0]["extensions"]["code"], "INVALID_CONSISTENCY_TOKEN",
            "{errors}"
        ),
        other => panic!("expected the refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_websocket_that_never_sends_connection_init_is_closed_after_the_timeout() {
    let app = spawn_with(Options {
        connection_init_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let mut silent = Subscriber::open(&app.address, Protocol::TransportWs).await;
    let started = std::time::Instant::now();
    assert!(matches!(silent.next().await, Said::Closed));
    assert!(started.elapsed() < Duration::from_secs(5));
    // One that does initialise stays open past the timeout.
    let mut prompt = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    prompt
        .subscribe("1", ORDER_UPDATED, json!({"id": "not-an-id"}))
        .await;
    assert!(matches!(prompt.next().await, Said::Errors(_)));
}

#[tokio::test]
async fn websockets_past_the_connection_limit_are_refused_with_503_and_a_code() {
    let app = spawn_with(Options {
        max_connections: 1,
        ..Options::default()
    })
    .await;
    let first = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    let handshake = |client: &reqwest::Client| {
        client
            .get(format!("{}/graphql", app.address))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Protocol", "graphql-transport-ws")
            .send()
    };
    let refused = handshake(&app.client).await.unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(error_code(&body), "TOO_MANY_CONNECTIONS");
    // Its place is given back when it closes.
    first.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let response = handshake(&reqwest::Client::new()).await.unwrap();
        if response.status() == 101 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Walks an order: the first `projected` of its commands (the placing included) are projected
/// before a client subscribes, the rest of the first `known` only after it subscribed from the
/// token of the `known`th; then the rest of the walk. Returns what the client got after that
/// token: every update, and whether it stayed quiet until the walk went on past the token.
async fn subscribe_ahead_of_the_projection(projected: usize, known: usize) -> (bool, Vec<Value>) {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let mut commands = vec![place(id, "cust-ahead")];
    commands.extend(walk_to_delivered());
    let mut commands = commands.into_iter();
    for command in commands.by_ref().take(projected) {
        let token = app.command(id, command).await;
        app.project_to(token).await;
    }
    let mut token = None;
    for command in commands.by_ref().take(known - projected) {
        token = Some(app.command(id, command).await);
    }
    let token = token.unwrap();
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe(
            "1",
            ORDER_UPDATED,
            json!({"id": id, "after": token.to_string()}),
        )
        .await;
    // Its first read finds the order short of the token (or not there yet).
    let mut quiet = subscriber.stays_quiet(Duration::from_millis(300)).await;
    app.project_to(token).await;
    quiet &= subscriber.stays_quiet(Duration::from_millis(500)).await;
    for command in commands {
        let token = app.command(id, command).await;
        app.project_to(token).await;
    }
    (quiet, updates_until(&mut subscriber, 6).await)
}

#[tokio::test]
async fn a_subscriber_from_a_token_the_projection_has_not_reached_gets_no_event_up_to_it_again() {
    // Projected to revision 3 (accepted); the token is revision 5's (shipped).
    let (quiet, updates) = subscribe_ahead_of_the_projection(3, 5).await;
    assert!(quiet, "events up to the token were sent: {updates:#?}");
    let expected = vec![(6, "OrderDelivered".to_owned())];
    assert_eq!(events_of(&updates), expected, "{updates:#?}");
}

#[tokio::test]
async fn a_subscriber_from_a_token_of_an_order_not_yet_projected_gets_only_the_events_after_it() {
    // Nothing projected; the token is revision 1's (payment authorized).
    let (quiet, updates) = subscribe_ahead_of_the_projection(0, 2).await;
    assert!(quiet, "events up to the token were sent: {updates:#?}");
    let expected: Vec<(i64, String)> = WALK[2..]
        .iter()
        .enumerate()
        .map(|(i, t)| (i as i64 + 2, (*t).to_owned()))
        .collect();
    assert_eq!(events_of(&updates), expected, "{updates:#?}");
}

/// The backends of the test's database that wait on a lock: reads held up by `lock`.
async fn backends_waiting_on_a_lock(lock: &tokio_postgres::Client) -> Vec<i32> {
    let rows = lock
        .query(
            "select pid from pg_stat_activity where datname = current_database()
               and wait_event_type = 'Lock' and pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn order_subscriptions_outlive_an_outage_of_the_read_models_and_queries_keep_connections() {
    const ORDERS: usize = 6;
    let app = spawn_app().await;
    // The returns' read models, for a query that does not read the orders.
    let _returns = Runtime::start(
        projector::Config::local(&app.url),
        ReturnProjection::new(ReturnDeadlines::default()),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for _ in 0..ORDERS {
        ids.push(app.order("cust-outage", vec![]).await);
    }
    app.project_all().await;
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    for (n, id) in ids.iter().enumerate() {
        subscriber
            .subscribe(&n.to_string(), ORDER_UPDATED, json!({"id": id}))
            .await;
    }
    assert!(subscriber.stays_quiet(Duration::from_millis(300)).await);

    // The orders cannot be read; more subscribers than the pool has connections read at once
    // (the notification connection is lost: every subscriber reads again).
    let mut lock = app.database().await;
    let outage = lock.transaction().await.unwrap();
    outage
        .batch_execute("lock table order_status in access exclusive mode")
        .await
        .unwrap();
    outage
        .batch_execute(
            "select pg_terminate_backend(pid) from pg_stat_activity
              where datname = current_database() and query ilike 'listen milestone_projection%'",
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while backends_waiting_on_a_lock(outage.client()).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "nobody read again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the pool's wait: a query of the returns still gets a connection, promptly.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let query = app.query_with(
        "query { returns(first: 1) { edges { cursor } } }",
        json!({}),
        None,
    );
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), query)
        .await
        .expect("the query waits for a connection");
    assert_eq!((status, error_code(&body)), (200, "<none>"), "{body}");
    // The connections of the held-up reads are lost too.
    for pid in backends_waiting_on_a_lock(outage.client()).await {
        outage
            .execute("select pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    outage.rollback().await.unwrap();

    // Every subscription goes on: the next change of each order reaches it.
    for id in &ids {
        let token = app.command(*id, cancel_order("after the outage")).await;
        app.project_to(token).await;
    }
    let mut updated = HashSet::new();
    while updated.len() < ORDERS {
        let said = tokio::time::timeout(Duration::from_secs(10), subscriber.next()).await;
        match said.expect("an update is missing") {
            Said::Data(data) => {
                assert_eq!(data["orderUpdated"]["order"]["status"], "CANCELLED");
                updated.insert(subscriber.last_id.clone().unwrap());
            }
            other => panic!("a subscription ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_list_subscriber_gets_an_order_repaired_by_retrying_its_dead_lettered_event() {
    let app = spawn_app().await;
    let id = app.order("cust-repair", vec![]).await;
    let poison = app
        .append_raw(
            id,
            0,
            "PaymentAuthorized",
            json!({"payment": "p-1", "amount": TOTAL}),
        )
        .await;
    // The projection moves on past the parked event.
    app.order("cust-repair", vec![]).await;
    app.project_all().await;
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    subscriber
        .subscribe(
            "1",
            ORDERS_CHANGED,
            json!({"filter": {"customerId": "cust-repair"}}),
        )
        .await;
    assert!(subscriber.stays_quiet(Duration::from_millis(300)).await);

    // The fix: the stored payload is corrected and the event retried.
    app.database()
        .await
        .execute(
            "update projection_dead_letters set data = $1 where revision = 1",
            &[&json!({"payment_id": "p-1", "amount": {"amount_minor": TOTAL, "currency": "EUR"}})],
        )
        .await
        .unwrap();
    assert_eq!(app.projector.retry_parked(id).await.unwrap(), 1);

    let change = subscriber
        .data_within(Duration::from_secs(5))
        .await
        .expect("the repaired order was not delivered")["ordersChanged"]
        .clone();
    assert_eq!(change["order"]["id"], id.to_string(), "{change}");
    assert_eq!(change["token"], poison.to_string(), "{change}");
    assert!(subscriber.stays_quiet(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn a_returns_batch_too_large_to_list_its_cases_does_not_make_order_subscribers_read() {
    // More return cases than one notification can list.
    const RETURNS: usize = 250;
    let app = spawn_app().await;
    let returns = Runtime::start(
        projector::Config::local(&app.url),
        ReturnProjection::new(ReturnDeadlines::default()),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.order("cust-apart", vec![]).await);
    }
    app.project_all().await;
    let mut subscriber = Subscriber::connect(&app.address, Protocol::TransportWs).await;
    for (n, id) in ids.iter().enumerate() {
        subscriber
            .subscribe(&n.to_string(), ORDER_UPDATED, json!({"id": id}))
            .await;
    }
    assert!(subscriber.stays_quiet(Duration::from_millis(300)).await);
    let log = Log::new(app.store.as_ref());
    for _ in 0..RETURNS {
        let order = known_order(Uuid::new_v4(), "cust-apart");
        let request = request_return(&order, Utc::now(), Utc::now(), &[("SKU-1", 1)], "why");
        log.record::<domain::Returns>(order.order_id.as_uuid(), vec![request])
            .await;
    }

    // Order reads would wait: any that starts shows.
    let mut lock = app.database().await;
    let held = lock.transaction().await.unwrap();
    held.batch_execute("lock table order_status in access exclusive mode")
        .await
        .unwrap();
    assert_eq!(returns.run_once().await.unwrap(), RETURNS as u64);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reading = backends_waiting_on_a_lock(held.client()).await;
    held.rollback().await.unwrap();
    assert!(reading.is_empty(), "order subscribers read: {reading:?}");
}

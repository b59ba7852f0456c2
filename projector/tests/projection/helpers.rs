use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::*;
use event_store::{EventStore, ExpectedRevision, Metadata, NewEvent, StoreOptions};
use projector::{Config, Projector};
use std::sync::Arc;
use uuid::Uuid;

pub struct Env {
    pub url: String,
    pub store: Arc<dyn EventStore>,
    pub projector: Projector,
}

pub fn config(url: &str) -> Config {
    let mut config = Config::local(url);
    config.standby_poll = std::time::Duration::from_millis(100);
    config
}

pub async fn env() -> Env {
    let url = test_support::fresh_database().await;
    env_on(&url, config(&url)).await
}

pub async fn env_on(url: &str, config: Config) -> Env {
    let store = event_store::connect(url, &StoreOptions { pool_size: 4 })
        .await
        .unwrap();
    let projector = Projector::connect(config).await.unwrap();
    Env {
        url: url.to_owned(),
        store,
        projector,
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

pub fn place(id: Uuid) -> OrderCommand {
    OrderCommand::PlaceOrder(PlaceOrder {
        order_id: OrderId::new(id),
        customer_id: CustomerId::parse("cust-7").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        lines: vec![
            OrderLine {
                sku: Sku::parse("A").unwrap(),
                quantity: Quantity::parse(2).unwrap(),
                unit_price_minor: 1000,
            },
            OrderLine {
                sku: Sku::parse("B").unwrap(),
                quantity: Quantity::parse(1).unwrap(),
                unit_price_minor: 250,
            },
        ],
        shipping_address: ShippingAddress {
            name: AddressLine::parse("Ada").unwrap(),
            line1: AddressLine::parse("1 Main St").unwrap(),
            line2: None,
            city: AddressLine::parse("Oslo").unwrap(),
            postal_code: AddressLine::parse("0150").unwrap(),
            country: CountryCode::parse("NO").unwrap(),
        },
    })
}

pub const TOTAL: i64 = 2250;

pub fn authorize(payment: &str) -> OrderCommand {
    OrderCommand::RecordPaymentAuthorized {
        payment_id: PaymentId::parse(payment).unwrap(),
        amount: Money::parse(TOTAL, Currency::parse("EUR").unwrap()).unwrap(),
    }
}
pub fn reserve(r: &str) -> OrderCommand {
    OrderCommand::RecordInventoryReserved {
        reservation_id: ReservationId::parse(r).unwrap(),
    }
}
pub fn ship() -> OrderCommand {
    OrderCommand::ShipOrder {
        carrier: Carrier::parse("DHL").unwrap(),
        tracking_number: TrackingNumber::parse("TRK-0001").unwrap(),
    }
}
pub fn reason(s: &str) -> Reason {
    Reason::parse(s).unwrap()
}

/// Decides `commands` against the order's stream and appends the events, one command per
/// append, `step` minutes apart from `start`. Returns the number of events written.
pub async fn record(
    store: &dyn EventStore,
    id: Uuid,
    commands: Vec<OrderCommand>,
    start: DateTime<Utc>,
) -> usize {
    let stream = format!("order-{id}");
    let history = event_store::read_whole_stream(store, &stream)
        .await
        .unwrap();
    let mut state = history
        .iter()
        .map(|e| OrderEvent::decode(&e.event_type, e.schema_version, &e.data).unwrap())
        .fold(OrderState::NotPlaced, |s, e| evolve(s, &e));
    let mut revision = history.last().map(|e| e.revision);
    let mut written = 0;
    for (i, command) in commands.into_iter().enumerate() {
        let events = decide(&state, command).unwrap();
        if events.is_empty() {
            continue;
        }
        let at = start + Duration::minutes(i as i64);
        let new: Vec<NewEvent> = events
            .iter()
            .map(|e| NewEvent {
                id: Uuid::new_v4(),
                event_type: e.event_type().into(),
                schema_version: e.schema_version(),
                data: e.data(),
                metadata: Metadata {
                    correlation_id: Some(format!("corr-{id}")),
                    causation_id: Some(format!("cmd-{i}")),
                    occurred_at: Some(at),
                    ..Metadata::default()
                },
            })
            .collect();
        let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        let result = store.append(&stream, expected, new).await.unwrap();
        revision = Some(result.next_expected_revision);
        written += events.len();
        for e in &events {
            state = evolve(state, e);
        }
    }
    written
}

/// Appends one raw event (for poison tests).
pub async fn append_raw(
    store: &dyn EventStore,
    id: Uuid,
    expected: u64,
    event_type: &str,
    data: serde_json::Value,
) {
    store
        .append(
            &format!("order-{id}"),
            ExpectedRevision::Exact(expected),
            vec![NewEvent {
                id: Uuid::new_v4(),
                event_type: event_type.into(),
                schema_version: 1,
                data,
                metadata: Metadata::default(),
            }],
        )
        .await
        .unwrap();
}

/// Runs the projector until it has applied at least `n` more events (the log's visibility can
/// trail an append by a moment on PostgreSQL).
pub async fn project(projector: &Projector, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut total = 0;
    while total < n && std::time::Instant::now() < deadline {
        total += projector.run_once().await.unwrap();
        if total < n {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    total
}

/// Runs the projector until its checkpoint has counted `total` applied events (or 10 s pass).
pub async fn project_until_applied(projector: &Projector, total: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        projector.run_once().await.unwrap();
        let applied = scalar(
            projector,
            "select coalesce(max(events_applied), 0) from projection_checkpoints",
        )
        .await;
        if applied as usize >= total {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The read models as text, in a stable order: equal dumps mean identical tables.
pub async fn dump(projector: &Projector) -> String {
    let client = projector.pool().get().await.unwrap();
    let mut out = String::new();
    for sql in [
        "select coalesce(string_agg(s::text, E'\\n' order by order_id), '') from order_status s",
        "select coalesce(string_agg(t::text, E'\\n' order by order_id, revision), '') from order_timeline t",
        "select coalesce(string_agg(c::text, E'\\n' order by status), '') from order_status_counts c",
    ] {
        let text: String = client.query_one(sql, &[]).await.unwrap().get(0);
        out.push_str(&text);
        out.push_str("\n--\n");
    }
    out
}

pub async fn row(projector: &Projector, id: Uuid) -> serde_json::Value {
    let client = projector.pool().get().await.unwrap();
    client
        .query_one(
            "select to_jsonb(s) from order_status s where order_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// How many rows `table` holds.
pub async fn rows_in(projector: &Projector, table: &str) -> i64 {
    scalar(projector, &format!("select count(*) from {table}")).await
}

pub async fn scalar(projector: &Projector, sql: &str) -> i64 {
    let client = projector.pool().get().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Counts kept by the projector must equal counting the rows.
pub async fn assert_counts_consistent(projector: &Projector) {
    let kept = scalar(projector, "select count(*) from (select status, orders from order_status_counts except select status, count(*) from order_status group by status) d").await;
    let rows = scalar(projector, "select count(*) from (select status, count(*) from order_status group by status except select status, orders from order_status_counts) d").await;
    assert_eq!(
        (kept, rows),
        (0, 0),
        "order_status_counts disagrees with order_status"
    );
}

/// Waits (at most 15 s) until the projection's checkpoint has counted `n` applied events, as
/// a live projector running elsewhere applies them.
pub async fn wait_for_applied(projector: &Projector, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while (scalar(
        projector,
        "select coalesce(max(events_applied), 0) from projection_checkpoints",
    )
    .await as usize)
        < n
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not all {n} events were applied in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

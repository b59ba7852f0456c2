use crate::helpers::*;
use domain::OrderCommand;
use projector::orders::OrderRow;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn an_order_walked_to_delivery_lands_in_status_and_timeline() {
    let env = env().await;
    let id = Uuid::new_v4();
    let n = Log::new(env.store.as_ref())
        .at(t0())
        .order(id, escalated_to_delivery(id))
        .await
        .events();
    assert_eq!(n, 8);
    assert_eq!(project(&env.projector, 8).await, 8);

    let r = row(&env.projector, id).await;
    assert_eq!(r["status"], "DELIVERED");
    assert_eq!(r["customer_id"], "cust-7");
    assert_eq!(r["total_minor"], TOTAL);
    assert_eq!(r["currency"], "EUR");
    assert_eq!(r["line_count"], 2);
    assert_eq!(r["pending_actions"], json!([]));
    assert_eq!(r["compensations_owed"], json!([]));
    assert_eq!(r["carrier"], "DHL");
    assert_eq!(r["tracking_number"], "TRK-0001");
    assert_eq!(r["payment_id"], "pay-1");
    assert_eq!(r["reservation_id"], "res-1");
    assert_eq!(r["last_milestone"], "OrderDelivered");
    assert_eq!(r["stream_revision"], 7);
    assert_eq!(r["escalation_count"], 1);
    assert_eq!(r["escalation_reason"], "warehouse slow");
    assert_eq!(r["correlation_id"], format!("corr-{id}"));
    assert!(
        r["deadline_at"].is_null(),
        "a delivered order waits for nothing"
    );
    for stamp in [
        "placed_at",
        "payment_authorized_at",
        "inventory_reserved_at",
        "accepted_at",
        "fulfillment_started_at",
        "shipped_at",
        "delivered_at",
        "escalated_at",
    ] {
        assert!(r[stamp].is_string(), "{stamp} missing");
    }
    assert!(r["placed_at"]
        .as_str()
        .unwrap()
        .starts_with("2026-03-01T09:00:00"));

    let client = env.projector.pool().get().await.unwrap();
    let timeline = client
        .query("select event_type, revision, summary, causation_id from order_timeline where order_id = $1 order by revision", &[&id])
        .await
        .unwrap();
    let types: Vec<String> = timeline.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "PaymentAuthorized",
            "InventoryReserved",
            "OrderAccepted",
            "FulfillmentStarted",
            "OrderEscalated",
            "OrderShipped",
            "OrderDelivered"
        ]
    );
    assert_eq!(
        timeline[6].get::<_, String>(2),
        "shipped with DHL, tracking TRK-0001"
    );
    assert_eq!(
        scalar(
            &env.projector,
            "select orders from order_status_counts where status = 'DELIVERED'"
        )
        .await,
        1
    );
    assert_counts_consistent(&env.projector).await;
}

#[tokio::test]
async fn rejections_cancellations_and_compensations_land_with_reasons_and_deadlines() {
    let env = env().await;
    let (declined, cancelled, late) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    Log::new(env.store.as_ref())
        .at(t0())
        .order(
            declined,
            vec![
                place(declined),
                reserve("res-d"),
                OrderCommand::RecordPaymentDeclined {
                    payment_id: domain::PaymentId::parse("pay-d").unwrap(),
                    reason: reason("card expired"),
                },
            ],
        )
        .await;
    Log::new(env.store.as_ref())
        .at(t0())
        .order(
            cancelled,
            vec![
                place(cancelled),
                authorize("pay-c", TOTAL),
                reserve("res-c"),
                OrderCommand::CancelOrder {
                    reason: reason("customer asked"),
                },
                OrderCommand::RecordPaymentVoided {
                    payment_id: domain::PaymentId::parse("pay-c").unwrap(),
                },
            ],
        )
        .await;
    Log::new(env.store.as_ref())
        .at(t0())
        .order(
            late,
            vec![
                place(late),
                OrderCommand::RecordInventoryShortage {
                    reservation_id: domain::ReservationId::parse("res-l").unwrap(),
                    reason: reason("out of B"),
                },
                authorize("pay-late", TOTAL),
            ],
        )
        .await;
    project(&env.projector, 3 + 1 + 6 + 4).await;

    let d = row(&env.projector, declined).await;
    assert_eq!(d["status"], "REJECTED");
    assert_eq!(d["failure_reason"], "card expired");
    assert_eq!(d["compensations_owed"], json!(["RELEASE_INVENTORY"]));
    assert_eq!(d["pending_actions"], json!(["RELEASE_INVENTORY"]));
    assert!(d["rejected_at"].is_string());
    assert!(
        d["deadline_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-01T10:02:00"),
        "compensation due an hour after: {}",
        d["deadline_at"]
    );

    let c = row(&env.projector, cancelled).await;
    assert_eq!(c["status"], "CANCELLED");
    assert_eq!(c["failure_reason"], "cancelled: customer asked");
    assert_eq!(c["compensations_owed"], json!(["RELEASE_INVENTORY"]));
    assert_eq!(c["compensations_done"], json!(["VOID_PAYMENT"]));
    assert!(c["payment_voided_at"].is_string());

    let l = row(&env.projector, late).await;
    assert_eq!(l["status"], "REJECTED");
    assert_eq!(
        l["compensations_owed"],
        json!(["VOID_PAYMENT"]),
        "a late payment owes a void"
    );

    let placed = Uuid::new_v4();
    Log::new(env.store.as_ref())
        .at(t0())
        .order(placed, vec![place(placed)])
        .await;
    project(&env.projector, 1).await;
    let p = row(&env.projector, placed).await;
    assert_eq!(
        p["pending_actions"],
        json!(["AUTHORIZE_PAYMENT", "RESERVE_INVENTORY"])
    );
    assert!(p["deadline_at"]
        .as_str()
        .unwrap()
        .starts_with("2026-03-01T09:30:00"));
    assert_counts_consistent(&env.projector).await;
}

#[tokio::test]
async fn each_commit_notifies_listeners_with_the_checkpoint_and_the_orders() {
    let env = env().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let config: tokio_postgres::Config = env.url.parse().unwrap();
    let _listener =
        service_kit::postgres::listen_on(&config, projector::CHANGES_CHANNEL, move |p| {
            let _ = tx.send(p);
        })
        .await
        .unwrap();
    let id = Uuid::new_v4();
    Log::new(env.store.as_ref())
        .at(t0())
        .order(id, vec![place(id)])
        .await;
    project(&env.projector, 1).await;
    let payload = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(payload["orders"], json!([id]));
    assert_eq!(
        payload["position"].as_str().unwrap(),
        env.projector
            .checkpoint()
            .await
            .unwrap()
            .unwrap()
            .to_string()
    );
}

#[tokio::test]
async fn the_column_list_of_order_status_names_the_table_s_columns_in_order_with_their_types() {
    let env = env().await;
    let client = env.projector.pool().get().await.unwrap();
    let table: Vec<(String, String)> = client
        .query(
            "select attname::text, format_type(atttypid, atttypmod) from pg_attribute
              where attrelid = 'order_status'::regclass and attnum > 0 and not attisdropped
              order by attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let listed: Vec<(String, String)> = projector::ORDER_STATUS_COLUMNS
        .iter()
        .map(|(name, sql)| {
            let sql = sql.replace("timestamptz", "timestamp with time zone");
            ((*name).to_owned(), sql)
        })
        .collect();
    assert_eq!(listed, table);
}

#[tokio::test]
async fn order_rows_read_and_written_back_by_column_name_are_unchanged() {
    let env = env().await;
    let (delivered, cancelled) = (Uuid::new_v4(), Uuid::new_v4());
    let mut n = Log::new(env.store.as_ref())
        .at(t0())
        .order(delivered, escalated_to_delivery(delivered))
        .await
        .events();
    n += Log::new(env.store.as_ref())
        .at(t0())
        .order(
            cancelled,
            vec![
                place(cancelled),
                authorize("pay-2", TOTAL),
                OrderCommand::CancelOrder {
                    reason: reason("changed my mind"),
                },
            ],
        )
        .await
        .events();
    project(&env.projector, n as u64).await;
    let before = dump(&env.projector).await;

    let mut client = env.projector.pool().get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let rows = projector::status_table::db::load_rows::<OrderRow>(&tx, &[delivered, cancelled])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let rows: Vec<&projector::orders::OrderRow> = rows.values().collect();
    projector::status_table::db::write_rows(&tx, &[], &rows)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(dump(&env.projector).await, before);
}

#[tokio::test]
async fn an_order_whose_stored_state_is_in_another_version_of_its_form_is_parked_not_misread() {
    let env = env().await;
    let id = Uuid::new_v4();
    Log::new(env.store.as_ref())
        .at(t0())
        .order(id, vec![place(id)])
        .await;
    project(&env.projector, 1).await;
    assert_eq!(
        row(&env.projector, id).await["state_version"],
        projector::orders::ORDER_STATE_VERSION
    );
    // As a projector whose aggregate had another serde form would have left the row.
    let client = env.projector.pool().get().await.unwrap();
    client
        .execute(
            "update order_status set state_version = state_version + 1 where order_id = $1",
            &[&id],
        )
        .await
        .unwrap();

    Log::new(env.store.as_ref())
        .at(t0())
        .order(id, vec![authorize("pay-1", TOTAL)])
        .await;
    project(&env.projector, 1).await;
    let r = row(&env.projector, id).await;
    assert_eq!(r["stream_revision"], 0, "the event is not applied");
    assert_eq!(r["status"], "PLACED");
    let error: String = client
        .query_one(
            "select error from projection_dead_letters where stream_id = $1",
            &[&format!("order-{id}")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        error.contains("version 2") && error.contains("rebuild"),
        "{error}"
    );

    // A rebuild writes every row in the current form.
    env.projector.rebuild(|_| {}).await.unwrap();
    let r = row(&env.projector, id).await;
    assert_eq!(r["stream_revision"], 1);
    assert_eq!(r["state_version"], projector::orders::ORDER_STATE_VERSION);
}

#[tokio::test]
async fn each_column_of_an_order_row_is_written_to_the_column_of_its_name() {
    use projector::orders::{OrderRow, ORDER_STATUS_COLUMNS};
    let env = env().await;
    let at = |s: i64| t0() + chrono::Duration::seconds(s);
    // Every text column holds its own name: a value bound to another column shows.
    let own = |name: &str| name.to_owned();
    let written = OrderRow {
        order_id: Uuid::new_v4(),
        status: own("status"),
        customer_id: own("customer_id"),
        currency: own("currency"),
        total_minor: 1,
        line_count: 2,
        lines: json!([{ "sku": "lines" }]),
        shipping_address: json!({ "name": "shipping_address" }),
        last_milestone: own("last_milestone"),
        last_milestone_at: at(1),
        pending_actions: vec![own("pending_actions")],
        failure_reason: Some(own("failure_reason")),
        compensations_owed: vec![own("compensations_owed")],
        compensations_done: vec![own("compensations_done")],
        payment_id: Some(own("payment_id")),
        reservation_id: Some(own("reservation_id")),
        carrier: Some(own("carrier")),
        tracking_number: Some(own("tracking_number")),
        placed_at: at(2),
        payment_authorized_at: Some(at(3)),
        inventory_reserved_at: Some(at(4)),
        accepted_at: Some(at(5)),
        rejected_at: Some(at(6)),
        fulfillment_started_at: Some(at(7)),
        shipped_at: Some(at(8)),
        delivered_at: Some(at(9)),
        cancelled_at: Some(at(10)),
        payment_voided_at: Some(at(11)),
        inventory_released_at: Some(at(12)),
        escalated_at: Some(at(13)),
        escalation_count: 3,
        escalation_reason: Some(own("escalation_reason")),
        reminder_attempts: 8,
        last_reminder_at: Some(at(15)),
        next_reminder_at: Some(at(16)),
        correlation_id: Some(own("correlation_id")),
        deadline_at: Some(at(14)),
        stream_revision: 4,
        last_position: own("last_position"),
        last_position_commit: 5,
        last_position_prepare: 6,
        state: own("state"),
        state_version: 7,
        order: None,
    };

    let mut client = env.projector.pool().get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    projector::status_table::db::write_rows(&tx, &[&written], &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let stored = row(&env.projector, written.order_id).await;
    for (column, _) in ORDER_STATUS_COLUMNS.iter().filter(|(_, t)| *t == "text") {
        assert_eq!(stored[column], json!(column), "column `{column}`");
    }
    for (column, _) in ORDER_STATUS_COLUMNS.iter().filter(|(_, t)| *t == "text[]") {
        assert_eq!(stored[column], json!([column]), "column `{column}`");
    }
    let tx = client.transaction().await.unwrap();
    let read = projector::status_table::db::load_rows::<OrderRow>(&tx, &[written.order_id])
        .await
        .unwrap();
    assert_eq!(read.get(&written.order_id), Some(&written));
}

#[tokio::test]
async fn each_field_of_a_timeline_entry_and_a_status_count_is_written_to_the_column_of_its_name() {
    use projector::orders::TimelineRow;
    let env = env().await;
    let own = |name: &str| name.to_owned();
    let entry = TimelineRow {
        order_id: Uuid::new_v4(),
        revision: 3,
        event_type: own("event_type"),
        occurred_at: t0(),
        recorded_at: t0() + chrono::Duration::seconds(1),
        position: own("position"),
        event_id: Uuid::new_v4(),
        correlation_id: Some(own("correlation_id")),
        causation_id: Some(own("causation_id")),
        summary: own("summary"),
        principal: Some(event_store::Principal {
            subject: own("principal_subject"),
            role: own("principal_role"),
            client: Some(own("principal_client")),
        }),
    };

    let mut client = env.projector.pool().get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    projector::status_table::db::insert_timeline::<OrderRow>(&tx, std::slice::from_ref(&entry))
        .await
        .unwrap();
    let deltas = [("pending".to_owned(), 7), ("shipped".to_owned(), 2)].into();
    projector::status_table::db::add_status_counts::<OrderRow>(&tx, &deltas)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let stored: serde_json::Value = client
        .query_one(
            "select to_jsonb(t) from order_timeline t where order_id = $1",
            &[&entry.order_id],
        )
        .await
        .unwrap()
        .get(0);
    for column in [
        "event_type",
        "position",
        "correlation_id",
        "causation_id",
        "summary",
        "principal_subject",
        "principal_role",
        "principal_client",
    ] {
        assert_eq!(stored[column], json!(column), "column `{column}`");
    }
    assert_eq!(stored["revision"], 3);
    assert_eq!(stored["event_id"], json!(entry.event_id));
    assert_eq!(
        stored["recorded_at"]
            .as_str()
            .map(|s| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        Some(entry.recorded_at)
    );
    assert_eq!(
        dump(&env.projector).await.split("\n--\n").nth(2),
        Some("(pending,7)\n(shipped,2)")
    );
}

/// Order `id` placed, paid, reserved, fulfilled after an escalation, shipped and delivered:
/// eight events.
fn escalated_to_delivery(id: Uuid) -> Vec<OrderCommand> {
    vec![
        place(id),
        authorize("pay-1", TOTAL),
        reserve("res-1"),
        OrderCommand::StartFulfillment,
        OrderCommand::EscalateOrder {
            reason: reason("warehouse slow"),
        },
        ship("DHL", "TRK-0001"),
        OrderCommand::ConfirmDelivery,
    ]
}

/// The read-model migrations as the order projection listed them before the runtime applied
/// its own tables itself.
const MIGRATIONS_BEFORE_THE_RUNTIME_HAD_ITS_OWN: &[(&str, &str)] = &[
    (
        "0001_order_read_models",
        include_str!("../../../schemas/read-models/0001_order_read_models.sql"),
    ),
    (
        "0002_projection_corrections",
        include_str!("../../../schemas/read-models/0002_projection_corrections.sql"),
    ),
    (
        "0003_projection_leases",
        include_str!("../../../schemas/read-models/0003_projection_leases.sql"),
    ),
    (
        "0004_checkpoint_event_store",
        include_str!("../../../schemas/read-models/0004_checkpoint_event_store.sql"),
    ),
    (
        "0005_order_state_version",
        include_str!("../../../schemas/read-models/0005_order_state_version.sql"),
    ),
];

#[tokio::test]
async fn a_database_migrated_before_the_runtime_had_its_own_migration_keeps_projecting_orders() {
    let url = test_support::fresh_database().await;
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    service_kit::postgres::apply_migrations(
        &mut client,
        "read_model_migrations",
        MIGRATIONS_BEFORE_THE_RUNTIME_HAD_ITS_OWN,
    )
    .await
    .unwrap();

    let env = env_on(&url, config(&url)).await;
    let id = Uuid::new_v4();
    let n = Log::new(env.store.as_ref())
        .at(t0())
        .order(
            id,
            vec![place(id), authorize("pay-1", TOTAL), reserve("res-1")],
        )
        .await
        .events();
    project_until_applied(&env.projector, n).await;
    assert_eq!(row(&env.projector, id).await["status"], "ACCEPTED");
    assert_eq!(
        scalar(
            &env.projector,
            "select events_applied from projection_checkpoints where projection = 'order_status'"
        )
        .await,
        n as i64
    );
}

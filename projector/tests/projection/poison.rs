use crate::helpers::*;
use domain::{OrderCommand, Orders, Workflow};
use event_store::{EventStore, ExpectedRevision};
use projector::Projector;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn a_poison_event_parks_its_order_while_others_flow_and_a_retry_after_a_fix_completes_it() {
    let env = env().await;
    let (bad, good) = (poisoned_order(env.store.as_ref()).await, Uuid::new_v4());
    Log::new(env.store.as_ref())
        .at(t0())
        .order(
            good,
            vec![place(good), authorize("pay-g", TOTAL), reserve("res-g")],
        )
        .await;
    project(&env.projector, 3 + 4).await;

    let g = row(&env.projector, good).await;
    assert_eq!(g["status"], "ACCEPTED", "other orders keep flowing");
    let b = row(&env.projector, bad).await;
    assert_eq!(
        b["stream_revision"], 0,
        "the poisoned order stops before the bad event"
    );
    assert_eq!(rows_in(&env.projector, "projection_dead_letters").await, 2);
    assert_eq!(
        rows_in(&env.projector, "projection_parked_streams").await,
        1
    );
    let client = env.projector.pool().get().await.unwrap();
    let errors: Vec<String> = client
        .query(
            "select error from projection_dead_letters order by revision",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(errors[0].contains("PaymentAuthorized"), "{errors:?}");
    assert!(errors[1].contains("parked behind"), "{errors:?}");

    // Still broken: the retry says why and changes nothing.
    let err = env.projector.retry_parked(bad).await.unwrap_err();
    assert!(
        matches!(
            err,
            projector::ProjectorError::StillFailing { revision: 1, .. }
        ),
        "{err}"
    );
    assert_eq!(rows_in(&env.projector, "projection_dead_letters").await, 2);

    // The fix: an operator corrects the stored payload.
    client
        .execute(
            "update projection_dead_letters set data = $1 where revision = 1",
            &[&json!({"payment_id": "p-1", "amount": {"amount_minor": TOTAL, "currency": "EUR"}})],
        )
        .await
        .unwrap();
    assert_eq!(env.projector.retry_parked(bad).await.unwrap(), 2);
    let b = row(&env.projector, bad).await;
    assert_eq!(b["stream_revision"], 2);
    assert_eq!(b["payment_id"], "p-1");
    assert_eq!(b["reservation_id"], "r-1");
    assert_eq!(rows_in(&env.projector, "projection_dead_letters").await, 0);
    assert_eq!(
        rows_in(&env.projector, "projection_parked_streams").await,
        0
    );
    assert_counts_consistent(&env.projector).await;

    // Later events of the order flow normally again.
    Log::new(env.store.as_ref())
        .at(t0())
        .order(good, vec![domain::OrderCommand::StartFulfillment])
        .await
        .events();
    project(&env.projector, 1).await;
    assert_eq!(row(&env.projector, good).await["status"], "IN_FULFILLMENT");

    // So do the retried order's: the projector goes on from the row the retry wrote, not from
    // the copy it kept of the row before.
    Log::new(env.store.as_ref())
        .append_raw(
            &Orders::stream_name(bad),
            ExpectedRevision::Exact(2),
            "OrderAccepted",
            1,
            json!({}),
        )
        .await;
    project(&env.projector, 1).await;
    let b = row(&env.projector, bad).await;
    assert_eq!(b["stream_revision"], 3);
    assert_eq!(b["payment_id"], "p-1");
    assert_eq!(rows_in(&env.projector, "projection_dead_letters").await, 0);
}

#[tokio::test]
async fn retrying_an_order_that_is_not_parked_says_so() {
    let env = env().await;
    let err = env
        .projector
        .retry_parked(Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(matches!(err, projector::ProjectorError::NotParked(_)));
}

#[tokio::test]
async fn events_with_metadata_of_other_types_are_dead_lettered_while_other_orders_are_projected() {
    let env = env().await;
    let (odd_time, odd_correlation, good) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    Log::new(env.store.as_ref())
        .at(t0())
        .order(good, vec![place(good)])
        .await;
    // Written straight into the log by another tool, with metadata the store cannot decode.
    let (client, conn) = tokio_postgres::connect(&env.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for (id, metadata) in [
        (odd_time, json!({"occurredAt": 5})),
        (odd_correlation, json!({"$correlationId": 7})),
    ] {
        client
            .execute(
                "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
                 values ($1, 0, gen_random_uuid(), 'OrderPlaced', 1, '{}', $2)",
                &[&format!("order-{id}"), &metadata],
            )
            .await
            .unwrap();
    }
    Log::new(env.store.as_ref())
        .at(t0())
        .order(good, vec![authorize("pay-g", TOTAL), reserve("res-g")])
        .await;
    project(&env.projector, 1 + 2 + 3).await;

    assert_eq!(
        row(&env.projector, good).await["status"],
        "ACCEPTED",
        "the order after the malformed events is projected"
    );
    let errors: Vec<String> = client
        .query(
            "select error from projection_dead_letters order by stream_id = $1",
            &[&format!("order-{odd_correlation}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("malformed") && errors[0].contains("occurredAt"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("malformed") && errors[1].contains("$correlationId"),
        "{errors:?}"
    );
    assert_eq!(
        rows_in(&env.projector, "projection_parked_streams").await,
        2
    );
}

/// A placed order followed by a `PaymentAuthorized` that does not decode and an
/// `InventoryReserved` behind it.
async fn poisoned_order(store: &dyn EventStore) -> Uuid {
    let bad = Uuid::new_v4();
    let log = Log::new(store);
    log.at(t0()).order(bad, vec![place(bad)]).await;
    let stream = Orders::stream_name(bad);
    let raw = [
        (
            "PaymentAuthorized",
            json!({"payment": "p-1", "amount": 2250}),
        ),
        ("InventoryReserved", json!({"reservation_id": "r-1"})),
    ];
    for (after, (event_type, data)) in (0..).zip(raw) {
        log.append_raw(&stream, ExpectedRevision::Exact(after), event_type, 1, data)
            .await;
    }
    bad
}

/// An order whose second event does not decode (a malformed `PaymentAuthorized`) and whose
/// third waits behind it, projected: the order is parked at revision 0.
async fn project_a_poisoned_order(env: &Env) -> Uuid {
    let bad = poisoned_order(env.store.as_ref()).await;
    project(&env.projector, 3).await;
    assert_eq!(row(&env.projector, bad).await["stream_revision"], 0);
    bad
}

/// What an operator does: corrects the stored payload of the dead-lettered event.
async fn correct_the_payment_payload(env: &Env) {
    let client = env.projector.pool().get().await.unwrap();
    client
        .execute(
            "update projection_dead_letters set data = $1 where revision = 1",
            &[&json!({"payment_id": "p-1", "amount": {"amount_minor": TOTAL, "currency": "EUR"}})],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_repaired_event_stays_repaired_after_a_rebuild() {
    let env = env().await;
    let bad = project_a_poisoned_order(&env).await;
    correct_the_payment_payload(&env).await;
    env.projector.retry_parked(bad).await.unwrap();

    env.projector.rebuild(|_| {}).await.unwrap();

    let b = row(&env.projector, bad).await;
    assert_eq!(
        b["stream_revision"], 2,
        "the rebuild applies the repair again"
    );
    assert_eq!(b["payment_id"], "p-1");
    assert_eq!(b["reservation_id"], "r-1");
    assert_eq!(rows_in(&env.projector, "projection_dead_letters").await, 0);
    assert_eq!(
        rows_in(&env.projector, "projection_parked_streams").await,
        0,
        "the repaired order is not parked again"
    );
    assert_eq!(rows_in(&env.projector, "order_timeline").await, 3);
    assert_counts_consistent(&env.projector).await;
}

#[tokio::test]
async fn a_retry_counts_the_events_it_applies_in_the_projection_status() {
    let env = env().await;
    let bad = project_a_poisoned_order(&env).await;
    correct_the_payment_payload(&env).await;
    assert_eq!(env.projector.retry_parked(bad).await.unwrap(), 2);

    let applied = scalar(
        &env.projector,
        "select events_applied from projection_checkpoints",
    )
    .await;
    assert_eq!(applied, 3, "one event by the live run, two by the retry");
    assert_eq!(applied, rows_in(&env.projector, "order_timeline").await);
}

#[tokio::test]
async fn a_malformed_event_retried_as_it_decoded_stays_repaired_after_a_rebuild() {
    let env = env().await;
    let id = Uuid::new_v4();
    // Well-formed data, metadata of another type: written by another tool.
    let placed = domain::decide(&domain::OrderState::NotPlaced, place(id))
        .unwrap()
        .remove(0);
    let (client, conn) = tokio_postgres::connect(&env.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
             values ($1, 0, gen_random_uuid(), 'OrderPlaced', 1, $2, $3)",
            &[
                &format!("order-{id}"),
                &domain::EventContract::data(&placed),
                &json!({"occurredAt": 5, "$correlationId": "c-1"}),
            ],
        )
        .await
        .unwrap();
    project(&env.projector, 1).await;
    assert_eq!(
        rows_in(&env.projector, "projection_parked_streams").await,
        1
    );

    // The operator retries it as it decoded (the fields that could be read).
    env.projector.retry_parked(id).await.unwrap();
    assert_eq!(row(&env.projector, id).await["status"], "PLACED");

    env.projector.rebuild(|_| {}).await.unwrap();
    assert_eq!(
        rows_in(&env.projector, "projection_parked_streams").await,
        0,
        "the rebuild applied the repair instead of parking the order again"
    );
    let after = row(&env.projector, id).await;
    assert_eq!(after["status"], "PLACED");
    assert_eq!(after["correlation_id"], "c-1");
}

#[tokio::test]
async fn with_partitions_a_repaired_event_is_counted_once_and_stays_repaired_after_a_rebuild() {
    let url = test_support::fresh_database().await;
    let mut partitioned = config(&url);
    partitioned.partitions = 4;
    let env = env_on(&url, partitioned).await;
    let bad = poisoned_order(env.store.as_ref()).await;
    let progress =
        "select events_applied from projection_progress where projection = 'order_status'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rows_in(&env.projector, "projection_dead_letters").await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the order was not parked"
        );
        env.projector.run_once().await.unwrap();
    }
    assert_eq!(scalar(&env.projector, progress).await, 1);
    correct_the_payment_payload(&env).await;

    assert_eq!(env.projector.retry_parked(bad).await.unwrap(), 2);
    assert_eq!(
        scalar(&env.projector, progress).await,
        3,
        "one event by the partition's run, two by the retry"
    );
    env.projector.rebuild(|_| {}).await.unwrap();
    let b = row(&env.projector, bad).await;
    assert_eq!(
        b["stream_revision"], 2,
        "the rebuild applies the repair again"
    );
    assert_eq!(b["payment_id"], "p-1");
    assert_eq!(scalar(&env.projector, progress).await, 3);
}

/// The dead letters and parked streams as text, in a stable order.
async fn dead_letters(projector: &Projector) -> String {
    let client = projector.pool().get().await.unwrap();
    let letters: String = client
        .query_one(
            "select coalesce(string_agg(stream_id || ' ' || revision || ' ' || error, E'\\n' order by stream_id, revision), '')
             from projection_dead_letters",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let parked: String = client
        .query_one(
            "select coalesce(string_agg(stream_id, ' ' order by stream_id), '') from projection_parked_streams",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    format!("{letters}\n--\n{parked}")
}

/// Catch-up applies each page while the one before it commits, from the rows that one left:
/// in pages of two events, orders whose events span pages and a poisoned order whose held-back
/// event comes a page after the bad one end exactly as one batch of the whole log leaves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_in_pages_of_two_events_ends_as_one_batch_of_the_whole_log_would() {
    let url = test_support::fresh_database().await;
    let mut paged = config(&url);
    paged.catch_up_batch_size = 2;
    let env = env_on(&url, paged).await;
    let bad = poisoned_order(env.store.as_ref()).await;
    let mut written = 3;
    for i in 0..5 {
        let id = Uuid::new_v4();
        written += Log::new(env.store.as_ref())
            .at(t0())
            .order(
                id,
                vec![
                    place(id),
                    authorize(&format!("pay-{i}"), TOTAL),
                    reserve(&format!("res-{i}")),
                    OrderCommand::StartFulfillment,
                ],
            )
            .await
            .events();
    }
    project(&env.projector, written as u64).await;
    assert_eq!(row(&env.projector, bad).await["stream_revision"], 0);
    assert_eq!(
        rows_in(&env.projector, "order_timeline").await,
        written as i64 - 2
    );
    assert_counts_consistent(&env.projector).await;
    let paged = (
        dump(&env.projector).await,
        dead_letters(&env.projector).await,
    );
    assert!(paged.1.contains("parked behind"), "{}", paged.1);

    let mut whole = config(&url);
    whole.catch_up_batch_size = 10_000;
    let whole = Projector::connect(whole).await.unwrap();
    whole.rebuild(|_| {}).await.unwrap();
    assert_eq!(
        (dump(&whole).await, dead_letters(&whole).await),
        paged,
        "pages of two events and one batch of them all end alike"
    );
}

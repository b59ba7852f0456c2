//! An order whose payment was stored by version 1 of `PaymentAuthorized` projects as the
//! current version, live and through a dead-letter retry.

use crate::helpers::*;
use domain::{Orders, Workflow};
use event_store::ExpectedRevision;
use serde_json::json;
use test_support::v1_payment;
use uuid::Uuid;

#[tokio::test]
async fn an_order_paid_by_a_version_1_event_shows_its_payment_in_order_status() {
    let env = env().await;
    let id = v1_payment::order_paid_in_v1(env.store.as_ref()).await;
    project(&env.projector, 2).await;

    let r = row(&env.projector, id).await;
    assert_eq!(r["stream_revision"], 1, "{r}");
    assert_eq!(r["payment_id"], v1_payment::PAYMENT_ID, "{r}");
    assert!(r["payment_authorized_at"].is_string(), "{r}");
    assert_eq!(r["pending_actions"], json!(["RESERVE_INVENTORY"]), "{r}");
    assert_eq!(rows_in(&env.projector, "projection_dead_letters").await, 0);
}

#[tokio::test]
async fn a_retry_of_a_parked_order_reads_its_version_1_payment() {
    let env = env().await;
    let id = Uuid::new_v4();
    v1_payment::place(env.store.as_ref(), id).await;
    // A poison event parks the order; the v1 payment waits behind it.
    Log::new(env.store.as_ref())
        .append_raw(
            &Orders::stream_name(id),
            ExpectedRevision::Exact(0),
            "InventoryReserved",
            1,
            json!({"reservation": 7}),
        )
        .await;
    v1_payment::append_payment_authorized_v1(env.store.as_ref(), id, 1).await;
    project(&env.projector, 3).await;
    assert_eq!(rows_in(&env.projector, "projection_dead_letters").await, 2);

    let client = env.projector.pool().get().await.unwrap();
    client
        .execute(
            "update projection_dead_letters set data = $1 where revision = 1",
            &[&json!({"reservation_id": "res-1"})],
        )
        .await
        .unwrap();
    assert_eq!(env.projector.retry_parked(id).await.unwrap(), 2);

    let r = row(&env.projector, id).await;
    assert_eq!(r["reservation_id"], "res-1", "{r}");
    assert_eq!(r["payment_id"], v1_payment::PAYMENT_ID, "{r}");
    assert_eq!(r["stream_revision"], 2, "{r}");
    assert_eq!(
        rows_in(&env.projector, "projection_parked_streams").await,
        0
    );
}

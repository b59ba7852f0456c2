//! Who decided: the principal who sent a command is recorded in its events, and owns its
//! idempotency key — through the command service, against the PostgreSQL event store.

use command_api::error::ApiError;
use command_api::service::{execute, instance_id_for, CommandContext, Executed};
use domain::{OrderCommand, OrderId, Orders};
use event_store::{read_whole_stream, EventStore, Principal, StoreOptions};
use std::sync::Arc;
use test_support::log::{authorize, new_order, reserve};
use uuid::Uuid;

async fn store() -> Arc<dyn EventStore> {
    let url = test_support::fresh_database().await;
    event_store::connect(&url, &StoreOptions { pool_size: 4 })
        .await
        .unwrap()
}

fn principal(subject: &str, role: &str) -> Principal {
    Principal {
        subject: subject.to_owned(),
        role: role.to_owned(),
        client: Some("web-shop".to_owned()),
    }
}

fn sent_by(principal: Option<&Principal>, key: &str, hash: &str) -> CommandContext {
    CommandContext {
        idempotency_key: Some(key.to_owned()),
        if_match: None,
        correlation_id: format!("corr-{}", Uuid::new_v4()),
        request_hash: Some(hash.to_owned()),
        causation_id: None,
        principal: principal.cloned(),
    }
}

/// Places an order the way `POST /orders` without an `order_id` does: its id derived from the
/// request's key and principal.
async fn place(store: &dyn EventStore, ctx: &CommandContext) -> Result<Executed, ApiError> {
    let id: OrderId =
        instance_id_for::<Orders>(ctx.idempotency_key.as_deref(), ctx.principal.as_ref());
    let order = new_order(id.as_uuid(), "cust-1", &[("SKU-1", 2, 500)]);
    execute(store, id, OrderCommand::PlaceOrder(order), ctx).await
}

async fn principals(store: &dyn EventStore, order: &str) -> Vec<Option<Principal>> {
    read_whole_stream(store, &format!("order-{order}"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.metadata.principal)
        .collect()
}

#[tokio::test]
async fn every_event_of_a_command_records_the_principal_who_sent_it() {
    let store = store().await;
    let shop = principal("shop-7", "shop");
    let placed = place(store.as_ref(), &sent_by(Some(&shop), "k-1", "h-1"))
        .await
        .unwrap();
    let order = placed.outcome.id.clone();
    let payment = principal("psp-1", "payment");
    let id = OrderId::new(order.parse().unwrap());
    execute(
        store.as_ref(),
        id,
        authorize("pay-1", 1000),
        &sent_by(Some(&payment), "k-2", "h-2"),
    )
    .await
    .unwrap();
    // Without authentication there is no principal, and none is recorded.
    execute(
        store.as_ref(),
        id,
        reserve("res-1"),
        &sent_by(None, "k-3", "h-3"),
    )
    .await
    .unwrap();

    assert_eq!(
        principals(store.as_ref(), &order).await,
        [
            Some(shop),
            Some(payment),
            None, // InventoryReserved
            None, // OrderAccepted, decided with it
        ]
    );
}

#[tokio::test]
async fn the_same_idempotency_key_from_two_principals_places_two_orders_each_replaying_its_own() {
    let store = store().await;
    let (alice, bob) = (principal("alice", "shop"), principal("bob", "shop"));

    let for_alice = place(store.as_ref(), &sent_by(Some(&alice), "checkout-1", "h"))
        .await
        .unwrap();
    let for_bob = place(store.as_ref(), &sent_by(Some(&bob), "checkout-1", "h"))
        .await
        .unwrap();
    assert!(!for_alice.replayed && !for_bob.replayed);
    assert_ne!(for_alice.outcome.id, for_bob.outcome.id);

    for (who, original) in [(&alice, &for_alice), (&bob, &for_bob)] {
        let again = place(store.as_ref(), &sent_by(Some(who), "checkout-1", "h"))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(
            serde_json::to_value(&again.outcome).unwrap(),
            serde_json::to_value(&original.outcome).unwrap()
        );
        assert_eq!(
            principals(store.as_ref(), &original.outcome.id).await,
            [Some(who.clone())]
        );
    }
}

#[tokio::test]
async fn the_same_idempotency_key_from_one_principal_places_one_order() {
    let store = store().await;
    let alice = principal("alice", "shop");
    let first = place(store.as_ref(), &sent_by(Some(&alice), "checkout-1", "h"))
        .await
        .unwrap();
    let second = place(store.as_ref(), &sent_by(Some(&alice), "checkout-1", "h"))
        .await
        .unwrap();
    assert!(second.replayed);
    assert_eq!(first.outcome.id, second.outcome.id);
    assert_eq!(principals(store.as_ref(), &first.outcome.id).await.len(), 1);
}

#[tokio::test]
async fn an_action_keyed_like_another_principals_is_decided_for_its_sender_not_refused_as_a_reuse()
{
    let store = store().await;
    let shop = principal("shop-7", "shop");
    let placed = place(store.as_ref(), &sent_by(Some(&shop), "k-place", "h-place"))
        .await
        .unwrap();
    let id = OrderId::new(placed.outcome.id.parse().unwrap());
    let (payment, warehouse) = (
        principal("psp-1", "payment"),
        principal("wh-1", "inventory"),
    );

    let paid = execute(
        store.as_ref(),
        id,
        authorize("pay-1", 1000),
        &sent_by(Some(&payment), "call-1", "h-pay"),
    )
    .await
    .unwrap();
    // Another principal's request with the same key and another body is its own request.
    let reserved = execute(
        store.as_ref(),
        id,
        reserve("res-1"),
        &sent_by(Some(&warehouse), "call-1", "h-reserve"),
    )
    .await
    .unwrap();
    assert!(!reserved.replayed);
    assert_eq!(
        reserved.outcome.events,
        ["InventoryReserved", "OrderAccepted"]
    );
    assert_eq!(reserved.outcome.status, "ACCEPTED");

    // Each replays its own answer.
    let paid_again = execute(
        store.as_ref(),
        id,
        authorize("pay-1", 1000),
        &sent_by(Some(&payment), "call-1", "h-pay"),
    )
    .await
    .unwrap();
    assert!(paid_again.replayed);
    assert_eq!(paid_again.outcome.events, paid.outcome.events);
    assert_eq!(paid_again.outcome.revision, paid.outcome.revision);
}

//! An order whose payment was stored by version 1 of `PaymentAuthorized` (the amount nested
//! under `amount`), exactly as the store holds it, so every read path can be shown to read it
//! as the current version. Written straight to the store, bypassing the current code.

use crate::log::Log;
use domain::{Orders, Workflow};
use event_store::{EventStore, ExpectedRevision, Position};
use serde_json::{json, Value};
use uuid::Uuid;

/// The order's total, in minor units of [`CURRENCY`]; the v1 payment authorizes exactly it.
pub const TOTAL_MINOR: i64 = 2250;
/// The order's currency.
pub const CURRENCY: &str = "EUR";
/// The payment the v1 event authorizes.
pub const PAYMENT_ID: &str = "pay-v1";

/// `PaymentAuthorized` data in its version 1 layout.
pub fn payment_authorized_v1_data() -> Value {
    json!({
        "payment_id": PAYMENT_ID,
        "amount": {"amount_minor": TOTAL_MINOR, "currency": CURRENCY},
    })
}

/// The order's stream name.
pub fn stream(order_id: Uuid) -> String {
    <Orders as Workflow>::stream_name(order_id)
}

/// Places order `order_id` (revision 0): three SKU-V1 at 7.50 EUR.
///
/// # Panics
/// When the store refuses the append (the stream already exists).
pub async fn place(store: &dyn EventStore, order_id: Uuid) -> Position {
    append(
        store,
        order_id,
        ExpectedRevision::NoStream,
        "OrderPlaced",
        1,
        json!({
            "order_id": order_id.to_string(),
            "customer_id": "customer-v1",
            "currency": CURRENCY,
            "lines": [{"sku": "SKU-V1", "quantity": 3, "unit_price_minor": TOTAL_MINOR / 3}],
            "total_minor": TOTAL_MINOR,
            "shipping_address": {
                "name": "Ada",
                "line1": "1 Main St",
                "city": "Lyon",
                "postal_code": "69001",
                "country": "FR",
            },
        }),
    )
    .await
}

/// Appends `PaymentAuthorized` with `schema_version` 1 and the v1 layout after revision
/// `after`.
///
/// # Panics
/// When the stream's last revision is not `after`.
pub async fn append_payment_authorized_v1(
    store: &dyn EventStore,
    order_id: Uuid,
    after: u64,
) -> Position {
    append(
        store,
        order_id,
        ExpectedRevision::Exact(after),
        "PaymentAuthorized",
        1,
        payment_authorized_v1_data(),
    )
    .await
}

/// A new order, placed and then paid by a version 1 `PaymentAuthorized` (revisions 0 and 1).
/// Returns its id.
pub async fn order_paid_in_v1(store: &dyn EventStore) -> Uuid {
    let order_id = Uuid::new_v4();
    place(store, order_id).await;
    append_payment_authorized_v1(store, order_id, 0).await;
    order_id
}

async fn append(
    store: &dyn EventStore,
    order_id: Uuid,
    expected: ExpectedRevision,
    event_type: &str,
    schema_version: u32,
    data: Value,
) -> Position {
    Log::new(store)
        .append_raw(
            &stream(order_id),
            expected,
            event_type,
            schema_version,
            data,
        )
        .await
}

//! Events: the facts of an order's life, and wire contracts. Each has a stable type name and a
//! schema version, with a JSON Schema under `schemas/events/` (checked by a test).

use super::state::PendingAction;
use crate::kernel::Upcaster;
use crate::values::{
    Carrier, Currency, CustomerId, Money, OrderId, OrderLine, PaymentId, Reason, ReservationId,
    ShippingAddress, TrackingNumber,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an order was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectionCause {
    PaymentDeclined,
    InventoryShortage,
}

crate::event_contract! {
    /// The order's events. Serialised as `{"type": ..., "data": {...}}`; the event store keeps
    /// the type (the variant's name) and the schema version apart from the data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum OrderEvent {
        OrderPlaced(version 1) {
            order_id: OrderId,
            customer_id: CustomerId,
            currency: Currency,
            lines: Vec<OrderLine>,
            total_minor: i64,
            shipping_address: ShippingAddress,
        },
        /// Version 2 stores the amount flat (`amount_minor`, `currency` beside `payment_id`);
        /// version 1 nested it under `amount`.
        PaymentAuthorized(version 2) {
            payment_id: PaymentId,
            #[serde(flatten)]
            amount: Money,
        },
        PaymentDeclined(version 1) {
            payment_id: PaymentId,
            reason: Reason,
        },
        InventoryReserved(version 1) {
            reservation_id: ReservationId,
        },
        InventoryReservationFailed(version 1) {
            reservation_id: ReservationId,
            reason: Reason,
        },
        OrderAccepted(version 1) {},
        OrderRejected(version 1) {
            cause: RejectionCause,
            reason: Reason,
        },
        FulfillmentStarted(version 1) {},
        OrderShipped(version 1) {
            carrier: Carrier,
            tracking_number: TrackingNumber,
        },
        OrderDelivered(version 1) {},
        OrderCancelled(version 1) {
            reason: Reason,
        },
        PaymentVoided(version 1) {
            payment_id: PaymentId,
        },
        InventoryReleased(version 1) {
            reservation_id: ReservationId,
        },
        OrderEscalated(version 1) {
            reason: Reason,
        },
        /// The work request of a pending action was sent again, as `attempt`.
        OrderReminded(version 1) {
            action: PendingAction,
            attempt: u32,
        },
    }
    upcasters = &[Upcaster {
        event_type: "PaymentAuthorized",
        from_version: 1,
        upcast: flatten_payment_amount,
    }];

    fn summary(&self) -> String {
        match self {
            Self::OrderPlaced {
                lines,
                total_minor,
                currency,
                customer_id,
                ..
            } => format!(
                "order placed by {customer_id}: {} line(s), total {total_minor} {currency}",
                lines.len()
            ),
            Self::PaymentAuthorized { payment_id, amount } => {
                format!("payment {payment_id} authorized for {amount}")
            }
            Self::PaymentDeclined { payment_id, reason } => {
                format!("payment {payment_id} declined: {reason}")
            }
            Self::InventoryReserved { reservation_id } => {
                format!("stock reserved ({reservation_id})")
            }
            Self::InventoryReservationFailed {
                reservation_id,
                reason,
            } => format!("stock short ({reservation_id}): {reason}"),
            Self::OrderAccepted {} => "order accepted: paid and stock reserved".to_owned(),
            Self::OrderRejected { reason, .. } => format!("order rejected: {reason}"),
            Self::FulfillmentStarted {} => "fulfilment started".to_owned(),
            Self::OrderShipped {
                carrier,
                tracking_number,
            } => format!(
                "shipped with {carrier}, tracking {}",
                tracking_number.as_str()
            ),
            Self::OrderDelivered {} => "delivered".to_owned(),
            Self::OrderCancelled { reason } => format!("order cancelled: {reason}"),
            Self::PaymentVoided { payment_id } => format!("payment {payment_id} voided"),
            Self::InventoryReleased { reservation_id } => {
                format!("stock released ({reservation_id})")
            }
            Self::OrderEscalated { reason } => format!("escalated: {reason}"),
            Self::OrderReminded { action, attempt } => {
                format!("reminder: {}, attempt {attempt}", action.as_str())
            }
        }
    }
}

/// `PaymentAuthorized` v1 -> v2: `{"payment_id", "amount": {"amount_minor", "currency"}}`
/// becomes `{"payment_id", "amount_minor", "currency"}`; nothing is added or lost.
fn flatten_payment_amount(data: Value) -> Result<Value, String> {
    let Value::Object(mut fields) = data else {
        return Err("the data is not an object".to_owned());
    };
    let amount = match fields.remove("amount") {
        Some(Value::Object(amount)) => amount,
        Some(_) => return Err("'amount' is not an object".to_owned()),
        None => return Err("'amount' is missing".to_owned()),
    };
    for (name, value) in amount {
        if fields.contains_key(&name) {
            return Err(format!("'amount.{name}' would overwrite '{name}'"));
        }
        fields.insert(name, value);
    }
    Ok(Value::Object(fields))
}

//! Events: the facts of an order's life, and wire contracts. Each has a stable type name and a
//! schema version, with a JSON Schema under `schemas/events/` (checked by a test).

use crate::values::{
    Carrier, Currency, CustomerId, Money, OrderId, OrderLine, PaymentId, Reason, ReservationId,
    ShippingAddress, TrackingNumber,
};
use serde::{Deserialize, Serialize};

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
        PaymentAuthorized(version 1) {
            payment_id: PaymentId,
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
    }
    upcasters = &[];

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
        }
    }
}

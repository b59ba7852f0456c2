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

/// The order's events. Serialised as `{"type": ..., "data": {...}}`; the event store keeps the
/// type apart from the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    OrderPlaced {
        order_id: OrderId,
        customer_id: CustomerId,
        currency: Currency,
        lines: Vec<OrderLine>,
        total_minor: i64,
        shipping_address: ShippingAddress,
    },
    PaymentAuthorized {
        payment_id: PaymentId,
        amount: Money,
    },
    PaymentDeclined {
        payment_id: PaymentId,
        reason: Reason,
    },
    InventoryReserved {
        reservation_id: ReservationId,
    },
    InventoryReservationFailed {
        reservation_id: ReservationId,
        reason: Reason,
    },
    OrderAccepted {},
    OrderRejected {
        cause: RejectionCause,
        reason: Reason,
    },
    FulfillmentStarted {},
    OrderShipped {
        carrier: Carrier,
        tracking_number: TrackingNumber,
    },
    OrderDelivered {},
    OrderCancelled {
        reason: Reason,
    },
    PaymentVoided {
        payment_id: PaymentId,
    },
    InventoryReleased {
        reservation_id: ReservationId,
    },
    OrderEscalated {
        reason: Reason,
    },
}

/// Every event type name, in the order of the workflow.
pub const EVENT_TYPES: &[&str] = &[
    "OrderPlaced",
    "PaymentAuthorized",
    "PaymentDeclined",
    "InventoryReserved",
    "InventoryReservationFailed",
    "OrderAccepted",
    "OrderRejected",
    "FulfillmentStarted",
    "OrderShipped",
    "OrderDelivered",
    "OrderCancelled",
    "PaymentVoided",
    "InventoryReleased",
    "OrderEscalated",
];

/// Why stored bytes could not be turned back into an [`OrderEvent`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    #[error("unsupported schema version {version} for {event_type}")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("event {event_type} does not match its schema: {source}")]
    Invalid {
        event_type: String,
        source: serde_json::Error,
    },
}

impl OrderEvent {
    /// The current schema version of every event type. A released version is never edited; a
    /// new one comes with an upcaster in [`OrderEvent::decode`].
    pub const SCHEMA_VERSION: u32 = 1;

    /// The stable type name stored beside the data.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::PaymentAuthorized { .. } => "PaymentAuthorized",
            Self::PaymentDeclined { .. } => "PaymentDeclined",
            Self::InventoryReserved { .. } => "InventoryReserved",
            Self::InventoryReservationFailed { .. } => "InventoryReservationFailed",
            Self::OrderAccepted {} => "OrderAccepted",
            Self::OrderRejected { .. } => "OrderRejected",
            Self::FulfillmentStarted {} => "FulfillmentStarted",
            Self::OrderShipped { .. } => "OrderShipped",
            Self::OrderDelivered {} => "OrderDelivered",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::PaymentVoided { .. } => "PaymentVoided",
            Self::InventoryReleased { .. } => "InventoryReleased",
            Self::OrderEscalated { .. } => "OrderEscalated",
        }
    }

    /// The event's data, without its type name.
    pub fn data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.remove("data").unwrap_or(serde_json::Value::Null)
            }
            // Every variant serialises to an object with "type" and "data".
            _ => serde_json::Value::Null,
        }
    }

    /// Rebuilds an event from its stored type, schema version and data.
    ///
    /// # Errors
    /// Unknown type, unsupported version, or data that does not match the schema.
    pub fn decode(
        event_type: &str,
        version: u32,
        data: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        if !EVENT_TYPES.contains(&event_type) {
            return Err(DecodeError::UnknownType(event_type.to_owned()));
        }
        if version != Self::SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                version,
            });
        }
        let tagged = serde_json::json!({ "type": event_type, "data": data });
        serde_json::from_value(tagged).map_err(|source| DecodeError::Invalid {
            event_type: event_type.to_owned(),
            source,
        })
    }

    /// A one-line human summary, for timelines and history output.
    pub fn summary(&self) -> String {
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

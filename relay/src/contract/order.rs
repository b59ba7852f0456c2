//! The order workflow's public contract: every order event becomes a public event under
//! `milestone.order.<event>`, and every action an order waits for is a work request under
//! `milestone.order.work.<action>` carrying what the payment, inventory, warehouse or carrier
//! service needs.

use super::{Contract, PublicEvent};
use domain::{Inventory, OrderEvent, OrderState, Orders, Payment, PendingAction, Stage};
use serde::Serialize;
use serde_json::{json, Value};

fn value(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Contract for Orders {
    fn public_event(event: &OrderEvent, after: &OrderState) -> Option<PublicEvent> {
        let order_id = value(after.order().map(|o| o.id));
        let (name, data) = match event {
            OrderEvent::OrderPlaced {
                customer_id,
                currency,
                lines,
                total_minor,
                shipping_address,
                ..
            } => (
                "placed",
                json!({"customer_id": customer_id, "currency": currency, "lines": lines,
                       "total_minor": total_minor, "shipping_address": shipping_address}),
            ),
            OrderEvent::PaymentAuthorized { payment_id, amount } => (
                "payment-authorized",
                json!({"payment_id": payment_id, "amount_minor": amount.amount_minor,
                       "currency": amount.currency}),
            ),
            OrderEvent::PaymentDeclined { payment_id, reason } => (
                "payment-declined",
                json!({"payment_id": payment_id, "reason": reason}),
            ),
            OrderEvent::InventoryReserved { reservation_id } => (
                "inventory-reserved",
                json!({"reservation_id": reservation_id}),
            ),
            OrderEvent::InventoryReservationFailed {
                reservation_id,
                reason,
            } => (
                "inventory-reservation-failed",
                json!({"reservation_id": reservation_id, "reason": reason}),
            ),
            OrderEvent::OrderAccepted {} => ("accepted", json!({})),
            OrderEvent::OrderRejected { cause, reason } => {
                ("rejected", json!({"cause": cause, "reason": reason}))
            }
            OrderEvent::FulfillmentStarted {} => ("fulfillment-started", json!({})),
            OrderEvent::OrderShipped {
                carrier,
                tracking_number,
            } => (
                "shipped",
                json!({"carrier": carrier, "tracking_number": tracking_number}),
            ),
            OrderEvent::OrderDelivered {} => ("delivered", json!({})),
            OrderEvent::OrderCancelled { reason } => ("cancelled", json!({"reason": reason})),
            OrderEvent::PaymentVoided { payment_id } => {
                ("payment-voided", json!({"payment_id": payment_id}))
            }
            OrderEvent::InventoryReleased { reservation_id } => (
                "inventory-released",
                json!({"reservation_id": reservation_id}),
            ),
            OrderEvent::OrderEscalated { reason } => ("escalated", json!({"reason": reason})),
            // Private: a reminder goes out as its action's work request again (`Workflow::reminder`).
            OrderEvent::OrderReminded { .. } => return None,
        };
        let mut data = data;
        data["order_id"] = order_id;
        Some(PublicEvent { name, data })
    }

    fn work_request(state: &OrderState, action: PendingAction) -> Value {
        let Some(order) = state.order() else {
            return json!({});
        };
        let lines: Vec<Value> = order
            .lines
            .iter()
            .map(|l| json!({"sku": l.sku, "quantity": l.quantity}))
            .collect();
        let mut data = match action {
            PendingAction::AuthorizePayment => json!({
                "customer_id": order.customer_id,
                "amount_minor": order.total_minor,
                "currency": order.currency,
            }),
            PendingAction::ReserveInventory => json!({"lines": lines}),
            PendingAction::StartFulfillment => json!({
                "lines": lines,
                "shipping_address": order.shipping_address,
            }),
            PendingAction::Ship => json!({
                "lines": lines,
                "shipping_address": order.shipping_address,
            }),
            PendingAction::ConfirmDelivery => match &order.stage {
                Stage::Shipped {
                    carrier,
                    tracking_number,
                } => json!({"carrier": carrier, "tracking_number": tracking_number}),
                _ => json!({}),
            },
            PendingAction::VoidPayment => match &order.payment {
                Payment::Authorized { payment_id, amount } => json!({
                    "payment_id": payment_id,
                    "amount_minor": amount.amount_minor,
                    "currency": amount.currency,
                }),
                _ => json!({}),
            },
            PendingAction::ReleaseInventory => match &order.inventory {
                Inventory::Reserved { reservation_id } => json!({
                    "reservation_id": reservation_id,
                    "lines": lines,
                }),
                _ => json!({}),
            },
        };
        data["order_id"] = value(order.id);
        data
    }
}

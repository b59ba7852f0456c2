//! The order-fulfilment aggregate in decider style: `decide(&state, command)` returns the events
//! a command produces (or a named error), `evolve(state, &event)` applies one.

pub mod command;
pub mod error;
pub mod event;
pub mod state;
mod workflow;

#[cfg(test)]
mod tests;

pub use command::{OrderCommand, PlaceOrder};
pub use error::{DomainError, ErrorKind};
pub use event::{OrderEvent, RejectionCause};
pub use state::{
    evolve, rebuild, Compensation, Inventory, Order, OrderState, Payment, PendingAction, Stage,
    Status,
};
pub use workflow::{Orders, COMPENSATION_STEP};

use std::collections::HashSet;

/// The most lines one order may have.
pub const MAX_LINES: usize = 100;

/// Decides what a command means for the order as it stands. Pure: everything from outside is
/// already in the command. An empty list is a successful no-op (a re-reported fact).
///
/// # Errors
/// A [`DomainError`] naming the rule the command breaks.
pub fn decide(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, DomainError> {
    let (o, command) = match (state, command) {
        (OrderState::NotPlaced, OrderCommand::PlaceOrder(place)) => return place_order(place),
        (OrderState::NotPlaced, _) => return Err(DomainError::OrderNotFound),
        (OrderState::Placed(order), command) => (order.as_ref(), command),
    };
    match (o, command) {
        (_, OrderCommand::PlaceOrder(_)) => Err(DomainError::OrderAlreadyPlaced),
        (o, OrderCommand::RecordPaymentAuthorized { payment_id, amount }) => {
            payment_authorized(o, payment_id, amount)
        }
        (o, OrderCommand::RecordPaymentDeclined { payment_id, reason }) => {
            payment_declined(o, payment_id, reason)
        }
        (o, OrderCommand::RecordInventoryReserved { reservation_id }) => {
            inventory_reserved(o, reservation_id)
        }
        (
            o,
            OrderCommand::RecordInventoryShortage {
                reservation_id,
                reason,
            },
        ) => inventory_short(o, reservation_id, reason),
        (o, OrderCommand::StartFulfillment) => match o.stage {
            Stage::Accepted => Ok(vec![OrderEvent::FulfillmentStarted {}]),
            _ => Err(illegal(
                o,
                "starting fulfilment",
                "only an accepted order can start fulfilment",
            )),
        },
        (
            o,
            OrderCommand::ShipOrder {
                carrier,
                tracking_number,
            },
        ) => match o.stage {
            Stage::InFulfillment => Ok(vec![OrderEvent::OrderShipped {
                carrier,
                tracking_number,
            }]),
            _ => Err(illegal(
                o,
                "shipping",
                "only an order in fulfilment can be shipped",
            )),
        },
        (o, OrderCommand::ConfirmDelivery) => match o.stage {
            Stage::Shipped { .. } => Ok(vec![OrderEvent::OrderDelivered {}]),
            _ => Err(illegal(
                o,
                "confirming delivery",
                "only a shipped order can be delivered",
            )),
        },
        (o, OrderCommand::CancelOrder { reason }) => match o.stage {
            Stage::Placed | Stage::Accepted => Ok(vec![OrderEvent::OrderCancelled { reason }]),
            _ => Err(DomainError::CannotCancel { status: o.status() }),
        },
        (o, OrderCommand::RecordPaymentVoided { payment_id }) => match &o.payment {
            Payment::Voided { payment_id: voided } if *voided == payment_id => Ok(vec![]),
            Payment::Authorized {
                payment_id: authorized,
                ..
            } if *authorized == payment_id && o.is_abandoned() => {
                Ok(vec![OrderEvent::PaymentVoided { payment_id }])
            }
            _ => Err(DomainError::NoPaymentVoidOwed(payment_id.to_string())),
        },
        (o, OrderCommand::RecordInventoryReleased { reservation_id }) => match &o.inventory {
            Inventory::Released {
                reservation_id: released,
            } if *released == reservation_id => Ok(vec![]),
            Inventory::Reserved {
                reservation_id: reserved,
            } if *reserved == reservation_id && o.is_abandoned() => {
                Ok(vec![OrderEvent::InventoryReleased { reservation_id }])
            }
            _ => Err(DomainError::NoInventoryReleaseOwed(
                reservation_id.to_string(),
            )),
        },
        (o, OrderCommand::EscalateOrder { reason }) => {
            if o.is_settled() {
                Err(DomainError::NothingToEscalate { status: o.status() })
            } else if o.follow_up.escalated_in(o.deadline_step()) {
                Ok(vec![])
            } else {
                Ok(vec![OrderEvent::OrderEscalated { reason }])
            }
        }
        (o, OrderCommand::RecordReminder { action, attempt }) => {
            if o.follow_up
                .check_reminder(&o.pending_actions(), action, attempt)?
            {
                Ok(vec![OrderEvent::OrderReminded { action, attempt }])
            } else {
                Ok(vec![])
            }
        }
    }
}

fn illegal(order: &Order, action: &'static str, hint: &'static str) -> DomainError {
    DomainError::IllegalTransition {
        status: order.status(),
        action,
        hint,
    }
}

fn place_order(place: PlaceOrder) -> Result<Vec<OrderEvent>, DomainError> {
    if place.lines.is_empty() || place.lines.len() > MAX_LINES {
        return Err(DomainError::InvalidLineCount(place.lines.len()));
    }
    let mut seen = HashSet::new();
    for line in &place.lines {
        if !seen.insert(line.sku.as_str()) {
            return Err(DomainError::DuplicateSku(line.sku.as_str().to_owned()));
        }
    }
    let total_minor = place.lines.iter().map(|l| l.total_minor()).sum();
    Ok(vec![OrderEvent::OrderPlaced {
        order_id: place.order_id,
        customer_id: place.customer_id,
        currency: place.currency,
        lines: place.lines,
        total_minor,
        shipping_address: place.shipping_address,
    }])
}

fn payment_authorized(
    o: &Order,
    payment_id: crate::PaymentId,
    amount: crate::Money,
) -> Result<Vec<OrderEvent>, DomainError> {
    match &o.payment {
        Payment::Authorized { payment_id: p, .. } | Payment::Voided { payment_id: p }
            if *p == payment_id =>
        {
            return Ok(vec![]);
        }
        Payment::Authorized { payment_id: p, .. } | Payment::Voided { payment_id: p } => {
            return Err(DomainError::PaymentAlreadyAuthorized {
                existing: p.to_string(),
                reported: payment_id.to_string(),
            })
        }
        Payment::Declined { payment_id: p } => {
            return Err(DomainError::PaymentAlreadyDeclined {
                existing: p.to_string(),
            })
        }
        Payment::Pending => {}
    }
    if amount.amount_minor != o.total_minor || amount.currency != o.currency {
        return Err(DomainError::AmountMismatch {
            expected: o.total_minor,
            expected_currency: o.currency.code().to_owned(),
            actual: amount.amount_minor,
            actual_currency: amount.currency.code().to_owned(),
        });
    }
    let mut events = vec![OrderEvent::PaymentAuthorized { payment_id, amount }];
    // A late authorization after rejection or cancellation is still a fact: it is recorded and
    // creates a void obligation (see `Order::compensations_owed`).
    if o.stage == Stage::Placed && matches!(o.inventory, Inventory::Reserved { .. }) {
        events.push(OrderEvent::OrderAccepted {});
    }
    Ok(events)
}

fn payment_declined(
    o: &Order,
    payment_id: crate::PaymentId,
    reason: crate::Reason,
) -> Result<Vec<OrderEvent>, DomainError> {
    match &o.payment {
        Payment::Declined { payment_id: p } if *p == payment_id => Ok(vec![]),
        Payment::Declined { payment_id: p } => Err(DomainError::PaymentAlreadyDeclined {
            existing: p.to_string(),
        }),
        Payment::Authorized { payment_id: p, .. } | Payment::Voided { payment_id: p } => {
            Err(DomainError::PaymentAlreadyAuthorized {
                existing: p.to_string(),
                reported: payment_id.to_string(),
            })
        }
        Payment::Pending => {
            let mut events = vec![OrderEvent::PaymentDeclined {
                payment_id,
                reason: reason.clone(),
            }];
            if o.stage == Stage::Placed {
                events.push(OrderEvent::OrderRejected {
                    cause: RejectionCause::PaymentDeclined,
                    reason,
                });
            }
            Ok(events)
        }
    }
}

fn inventory_reserved(
    o: &Order,
    reservation_id: crate::ReservationId,
) -> Result<Vec<OrderEvent>, DomainError> {
    match &o.inventory {
        Inventory::Reserved { reservation_id: r } | Inventory::Released { reservation_id: r }
            if *r == reservation_id =>
        {
            Ok(vec![])
        }
        Inventory::Reserved { reservation_id: r } | Inventory::Released { reservation_id: r } => {
            Err(DomainError::InventoryAlreadyReserved {
                existing: r.to_string(),
                reported: reservation_id.to_string(),
            })
        }
        Inventory::Short { reservation_id: r } => Err(DomainError::InventoryAlreadyShort {
            existing: r.to_string(),
        }),
        Inventory::Pending => {
            let mut events = vec![OrderEvent::InventoryReserved { reservation_id }];
            if o.stage == Stage::Placed && matches!(o.payment, Payment::Authorized { .. }) {
                events.push(OrderEvent::OrderAccepted {});
            }
            Ok(events)
        }
    }
}

fn inventory_short(
    o: &Order,
    reservation_id: crate::ReservationId,
    reason: crate::Reason,
) -> Result<Vec<OrderEvent>, DomainError> {
    match &o.inventory {
        Inventory::Short { reservation_id: r } if *r == reservation_id => Ok(vec![]),
        Inventory::Short { reservation_id: r } => Err(DomainError::InventoryAlreadyShort {
            existing: r.to_string(),
        }),
        Inventory::Reserved { reservation_id: r } | Inventory::Released { reservation_id: r } => {
            Err(DomainError::InventoryAlreadyReserved {
                existing: r.to_string(),
                reported: reservation_id.to_string(),
            })
        }
        Inventory::Pending => {
            let mut events = vec![OrderEvent::InventoryReservationFailed {
                reservation_id,
                reason: reason.clone(),
            }];
            if o.stage == Stage::Placed {
                events.push(OrderEvent::OrderRejected {
                    cause: RejectionCause::InventoryShortage,
                    reason,
                });
            }
            Ok(events)
        }
    }
}

//! The order's state, rebuilt by folding `evolve` over its events, and what it owes and awaits.

use super::event::{OrderEvent, RejectionCause};
use crate::kernel::FollowUp;
use crate::values::{
    Carrier, Currency, CustomerId, Money, OrderId, OrderLine, PaymentId, Reason, ReservationId,
    ShippingAddress, TrackingNumber,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The externally visible status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Placed,
    Accepted,
    InFulfillment,
    Shipped,
    Delivered,
    Rejected,
    Cancelled,
}

impl Status {
    /// The wire form: `PLACED`, `IN_FULFILLMENT`...
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Placed => "PLACED",
            Status::Accepted => "ACCEPTED",
            Status::InFulfillment => "IN_FULFILLMENT",
            Status::Shipped => "SHIPPED",
            Status::Delivered => "DELIVERED",
            Status::Rejected => "REJECTED",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// Delivered, rejected and cancelled orders make no further progress.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Status::Delivered | Status::Rejected | Status::Cancelled
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Placed => "placed",
            Status::Accepted => "accepted",
            Status::InFulfillment => "in fulfillment",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
        })
    }
}

/// Where the workflow stands; each variant carries only what that stage needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    Placed,
    Accepted,
    InFulfillment,
    Shipped {
        carrier: Carrier,
        tracking_number: TrackingNumber,
    },
    Delivered {
        carrier: Carrier,
        tracking_number: TrackingNumber,
    },
    Rejected {
        cause: RejectionCause,
        reason: Reason,
    },
    Cancelled {
        reason: Reason,
    },
}

/// What the payment service has told us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Payment {
    Pending,
    Authorized {
        payment_id: PaymentId,
        amount: Money,
    },
    Declined {
        payment_id: PaymentId,
    },
    Voided {
        payment_id: PaymentId,
    },
}

/// What the inventory service has told us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Inventory {
    Pending,
    Reserved { reservation_id: ReservationId },
    Short { reservation_id: ReservationId },
    Released { reservation_id: ReservationId },
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    pub total_minor: i64,
    pub shipping_address: ShippingAddress,
    pub stage: Stage,
    pub payment: Payment,
    pub inventory: Inventory,
    pub escalations: u32,
    /// Reminders per awaited action and the step last escalated.
    #[serde(default)]
    pub follow_up: FollowUp<PendingAction>,
}

/// The aggregate: nothing yet, or an order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "kind", content = "order", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    #[default]
    NotPlaced,
    Placed(Box<Order>),
}

/// Something the workflow waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PendingAction {
    AuthorizePayment,
    ReserveInventory,
    StartFulfillment,
    Ship,
    ConfirmDelivery,
    VoidPayment,
    ReleaseInventory,
}

impl PendingAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AuthorizePayment => "AUTHORIZE_PAYMENT",
            Self::ReserveInventory => "RESERVE_INVENTORY",
            Self::StartFulfillment => "START_FULFILLMENT",
            Self::Ship => "SHIP",
            Self::ConfirmDelivery => "CONFIRM_DELIVERY",
            Self::VoidPayment => "VOID_PAYMENT",
            Self::ReleaseInventory => "RELEASE_INVENTORY",
        }
    }
}

/// A compensation: undoing a downstream effect after rejection or cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compensation {
    VoidPayment,
    ReleaseInventory,
}

impl Compensation {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::VoidPayment => "VOID_PAYMENT",
            Self::ReleaseInventory => "RELEASE_INVENTORY",
        }
    }
}

impl Order {
    pub fn status(&self) -> Status {
        match self.stage {
            Stage::Placed => Status::Placed,
            Stage::Accepted => Status::Accepted,
            Stage::InFulfillment => Status::InFulfillment,
            Stage::Shipped { .. } => Status::Shipped,
            Stage::Delivered { .. } => Status::Delivered,
            Stage::Rejected { .. } => Status::Rejected,
            Stage::Cancelled { .. } => Status::Cancelled,
        }
    }

    /// Rejected or cancelled: whatever was authorized or reserved must be undone.
    pub fn is_abandoned(&self) -> bool {
        matches!(self.stage, Stage::Rejected { .. } | Stage::Cancelled { .. })
    }

    /// Compensations owed and not yet done.
    pub fn compensations_owed(&self) -> Vec<Compensation> {
        let mut owed = Vec::new();
        if self.is_abandoned() {
            if matches!(self.payment, Payment::Authorized { .. }) {
                owed.push(Compensation::VoidPayment);
            }
            if matches!(self.inventory, Inventory::Reserved { .. }) {
                owed.push(Compensation::ReleaseInventory);
            }
        }
        owed
    }

    /// Compensations already recorded.
    pub fn compensations_done(&self) -> Vec<Compensation> {
        let mut done = Vec::new();
        if matches!(self.payment, Payment::Voided { .. }) {
            done.push(Compensation::VoidPayment);
        }
        if matches!(self.inventory, Inventory::Released { .. }) {
            done.push(Compensation::ReleaseInventory);
        }
        done
    }

    /// What the workflow waits for next, in the order it is expected.
    pub fn pending_actions(&self) -> Vec<PendingAction> {
        match self.stage {
            Stage::Placed => {
                let mut p = Vec::new();
                if self.payment == Payment::Pending {
                    p.push(PendingAction::AuthorizePayment);
                }
                if self.inventory == Inventory::Pending {
                    p.push(PendingAction::ReserveInventory);
                }
                p
            }
            Stage::Accepted => vec![PendingAction::StartFulfillment],
            Stage::InFulfillment => vec![PendingAction::Ship],
            Stage::Shipped { .. } => vec![PendingAction::ConfirmDelivery],
            Stage::Delivered { .. } => vec![],
            Stage::Rejected { .. } | Stage::Cancelled { .. } => self
                .compensations_owed()
                .into_iter()
                .map(|c| match c {
                    Compensation::VoidPayment => PendingAction::VoidPayment,
                    Compensation::ReleaseInventory => PendingAction::ReleaseInventory,
                })
                .collect(),
        }
    }

    /// Which configured deadline applies now: the status while the order waits for its next
    /// milestone, `COMPENSATION` once it is finished but still owes a void or a release.
    pub fn deadline_step(&self) -> Option<&'static str> {
        if self.pending_actions().is_empty() {
            None
        } else if self.status().is_final() {
            Some(super::COMPENSATION_STEP)
        } else {
            Some(self.status().as_str())
        }
    }

    /// Finished: final status and nothing owed.
    pub fn is_settled(&self) -> bool {
        self.status().is_final() && self.compensations_owed().is_empty()
    }
}

impl OrderState {
    /// The order, once placed.
    pub fn into_order(self) -> Option<Box<Order>> {
        match self {
            OrderState::NotPlaced => None,
            OrderState::Placed(o) => Some(o),
        }
    }

    pub fn order(&self) -> Option<&Order> {
        match self {
            OrderState::NotPlaced => None,
            OrderState::Placed(o) => Some(o),
        }
    }

    pub fn status(&self) -> Option<Status> {
        self.order().map(Order::status)
    }

    pub fn pending_actions(&self) -> Vec<PendingAction> {
        self.order().map(Order::pending_actions).unwrap_or_default()
    }
}

/// Applies one event. Pure and total: an event that does not fit the state (which `decide`
/// never produces) leaves the state unchanged rather than panicking, so a damaged stream can
/// still be read.
pub fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
    let mut order = match (state, event) {
        (
            OrderState::NotPlaced,
            OrderEvent::OrderPlaced {
                order_id,
                customer_id,
                currency,
                lines,
                total_minor,
                shipping_address,
            },
        ) => {
            return OrderState::Placed(Box::new(Order {
                id: *order_id,
                customer_id: customer_id.clone(),
                currency: *currency,
                lines: lines.clone(),
                total_minor: *total_minor,
                shipping_address: shipping_address.clone(),
                stage: Stage::Placed,
                payment: Payment::Pending,
                inventory: Inventory::Pending,
                escalations: 0,
                follow_up: FollowUp::default(),
            }))
        }
        (state @ OrderState::NotPlaced, _) => return state,
        (OrderState::Placed(order), _) => order,
    };
    match event {
        OrderEvent::OrderPlaced { .. } => {}
        OrderEvent::PaymentAuthorized { payment_id, amount } => {
            order.payment = Payment::Authorized {
                payment_id: payment_id.clone(),
                amount: *amount,
            }
        }
        OrderEvent::PaymentDeclined { payment_id, .. } => {
            order.payment = Payment::Declined {
                payment_id: payment_id.clone(),
            }
        }
        OrderEvent::InventoryReserved { reservation_id } => {
            order.inventory = Inventory::Reserved {
                reservation_id: reservation_id.clone(),
            }
        }
        OrderEvent::InventoryReservationFailed { reservation_id, .. } => {
            order.inventory = Inventory::Short {
                reservation_id: reservation_id.clone(),
            }
        }
        OrderEvent::OrderAccepted {} => order.stage = Stage::Accepted,
        OrderEvent::OrderRejected { cause, reason } => {
            order.stage = Stage::Rejected {
                cause: *cause,
                reason: reason.clone(),
            }
        }
        OrderEvent::FulfillmentStarted {} => order.stage = Stage::InFulfillment,
        OrderEvent::OrderShipped {
            carrier,
            tracking_number,
        } => {
            order.stage = Stage::Shipped {
                carrier: carrier.clone(),
                tracking_number: tracking_number.clone(),
            }
        }
        OrderEvent::OrderDelivered {} => {
            if let Stage::Shipped {
                carrier,
                tracking_number,
            } = &order.stage
            {
                order.stage = Stage::Delivered {
                    carrier: carrier.clone(),
                    tracking_number: tracking_number.clone(),
                }
            }
        }
        OrderEvent::OrderCancelled { reason } => {
            order.stage = Stage::Cancelled {
                reason: reason.clone(),
            }
        }
        OrderEvent::PaymentVoided { payment_id } => {
            order.payment = Payment::Voided {
                payment_id: payment_id.clone(),
            }
        }
        OrderEvent::InventoryReleased { reservation_id } => {
            order.inventory = Inventory::Released {
                reservation_id: reservation_id.clone(),
            }
        }
        OrderEvent::OrderEscalated { .. } => {
            order.escalations += 1;
            let step = order.deadline_step();
            order.follow_up.record_escalation(step);
        }
        OrderEvent::OrderReminded { action, attempt } => {
            order.follow_up.record_reminder(*action, *attempt)
        }
    }
    let pending = order.pending_actions();
    order.follow_up.settle(&pending);
    OrderState::Placed(order)
}

/// Folds a history into a state.
pub fn rebuild<'a>(events: impl IntoIterator<Item = &'a OrderEvent>) -> OrderState {
    events.into_iter().fold(OrderState::NotPlaced, evolve)
}

//! The order workflow as the kernel sees it: [`Orders`] ties the decider, the state's queries
//! and the wire labels together.

use super::{
    decide, evolve, Compensation, DomainError, OrderCommand, OrderEvent, OrderState, PendingAction,
    Status,
};
use crate::kernel::{Label, Workflow};

/// Order fulfilment (DESIGN.md section 5), streams `order-<uuid>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Orders;

impl Workflow for Orders {
    const NAME: &'static str = "order";
    const STREAM_PREFIX: &'static str = "order-";
    const DEADLINE_STEPS: &'static [&'static str] = &[
        "PLACED",
        "ACCEPTED",
        "IN_FULFILLMENT",
        "SHIPPED",
        COMPENSATION_STEP,
    ];

    type Command = OrderCommand;
    type Event = OrderEvent;
    type State = OrderState;
    type Error = DomainError;
    type Status = Status;
    type Action = PendingAction;
    type Compensation = Compensation;

    fn decide(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, DomainError> {
        decide(state, command)
    }

    fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
        evolve(state, event)
    }

    fn status(state: &OrderState) -> Option<Status> {
        state.status()
    }

    fn pending_actions(state: &OrderState) -> Vec<PendingAction> {
        state.pending_actions()
    }

    fn compensations_owed(state: &OrderState) -> Vec<Compensation> {
        state
            .order()
            .map(|o| o.compensations_owed())
            .unwrap_or_default()
    }

    fn compensations_done(state: &OrderState) -> Vec<Compensation> {
        state
            .order()
            .map(|o| o.compensations_done())
            .unwrap_or_default()
    }

    /// The status while the order waits for its next milestone; `COMPENSATION` once it is
    /// finished but still owes a void or a release.
    fn deadline_step(state: &OrderState) -> Option<&'static str> {
        state.order()?.deadline_step()
    }

    fn reminder(event: &OrderEvent) -> Option<(PendingAction, u32)> {
        match event {
            OrderEvent::OrderReminded { action, attempt } => Some((*action, *attempt)),
            _ => None,
        }
    }
}

/// The deadline step of a finished order that still owes compensations.
pub const COMPENSATION_STEP: &str = "COMPENSATION";

impl Label for Status {
    const ALL: &'static [Self] = &[
        Self::Placed,
        Self::Accepted,
        Self::InFulfillment,
        Self::Shipped,
        Self::Delivered,
        Self::Rejected,
        Self::Cancelled,
    ];
    fn as_str(&self) -> &'static str {
        Status::as_str(self)
    }
}

impl Label for PendingAction {
    const ALL: &'static [Self] = &[
        Self::AuthorizePayment,
        Self::ReserveInventory,
        Self::StartFulfillment,
        Self::Ship,
        Self::ConfirmDelivery,
        Self::VoidPayment,
        Self::ReleaseInventory,
    ];
    fn as_str(&self) -> &'static str {
        PendingAction::as_str(self)
    }
}

impl Label for Compensation {
    const ALL: &'static [Self] = &[Self::VoidPayment, Self::ReleaseInventory];
    fn as_str(&self) -> &'static str {
        Compensation::as_str(self)
    }
}

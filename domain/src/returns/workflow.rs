//! The returns workflow as the kernel sees it: [`Returns`] ties the decider, the state's
//! queries and the wire labels together.

use super::{
    decide, evolve, ReturnAction, ReturnCommand, ReturnCompensation, ReturnError, ReturnEvent,
    ReturnState, ReturnStatus,
};
use crate::kernel::{Label, Workflow};
use crate::order::COMPENSATION_STEP;

/// Returns (DESIGN.md section 6), streams `return-<order id>`: one return case per order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Returns;

impl Workflow for Returns {
    const NAME: &'static str = "return";
    const STREAM_PREFIX: &'static str = "return-";
    const DEADLINE_STEPS: &'static [&'static str] =
        &["REQUESTED", "APPROVED", "RECEIVED", COMPENSATION_STEP];

    type Command = ReturnCommand;
    type Event = ReturnEvent;
    type State = ReturnState;
    type Error = ReturnError;
    type Status = ReturnStatus;
    type Action = ReturnAction;
    type Compensation = ReturnCompensation;

    fn decide(
        state: &ReturnState,
        command: ReturnCommand,
    ) -> Result<Vec<ReturnEvent>, ReturnError> {
        decide(state, command)
    }

    fn evolve(state: ReturnState, event: &ReturnEvent) -> ReturnState {
        evolve(state, event)
    }

    fn status(state: &ReturnState) -> Option<ReturnStatus> {
        state.status()
    }

    fn pending_actions(state: &ReturnState) -> Vec<ReturnAction> {
        state.pending_actions()
    }

    fn compensations_owed(state: &ReturnState) -> Vec<ReturnCompensation> {
        state
            .case()
            .map(|c| c.compensations_owed())
            .unwrap_or_default()
    }

    fn compensations_done(state: &ReturnState) -> Vec<ReturnCompensation> {
        state
            .case()
            .map(|c| c.compensations_done())
            .unwrap_or_default()
    }

    /// The status while the return waits for its next step; `COMPENSATION` once it is
    /// cancelled but still owes items back.
    fn deadline_step(state: &ReturnState) -> Option<&'static str> {
        state.case()?.deadline_step()
    }

    fn reminder(event: &ReturnEvent) -> Option<(ReturnAction, u32)> {
        match event {
            ReturnEvent::ReturnReminded { action, attempt } => Some((*action, *attempt)),
            _ => None,
        }
    }
}

impl Label for ReturnStatus {
    const ALL: &'static [Self] = &[
        Self::Requested,
        Self::Approved,
        Self::Received,
        Self::Refunded,
        Self::Rejected,
        Self::Cancelled,
    ];
    fn as_str(&self) -> &'static str {
        ReturnStatus::as_str(self)
    }
}

impl Label for ReturnAction {
    const ALL: &'static [Self] = &[
        Self::DecideReturn,
        Self::ReceiveItems,
        Self::IssueRefund,
        Self::ShipItemsBack,
    ];
    fn as_str(&self) -> &'static str {
        ReturnAction::as_str(self)
    }
}

impl Label for ReturnCompensation {
    const ALL: &'static [Self] = &[Self::ShipItemsBack];
    fn as_str(&self) -> &'static str {
        ReturnCompensation::as_str(self)
    }
}

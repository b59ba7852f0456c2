//! What the reconciler needs to know about a workflow beyond the command API's
//! [`WorkflowApi`]: its status table, how to ask for a reminder and an escalation, and where its
//! state keeps the kernel's follow-up bookkeeping. One short impl per workflow.

use command_api::workflow::WorkflowApi;
use domain::kernel::FollowUp;
use domain::{
    OrderCommand, OrderState, Orders, Reason, ReturnCommand, ReturnState, Returns, Workflow,
};

/// A workflow whose overdue instances the reconciler chases.
pub trait Chased: WorkflowApi {
    /// The projector's status table of the workflow (`order_status`), keyed by `order_id`.
    const STATUS_TABLE: &'static str;

    /// The command recording a reminder of `action` as `attempt`.
    fn remind(action: Self::Action, attempt: u32) -> Self::Command;

    /// The command escalating the instance, for `reason`.
    fn escalate(reason: Reason) -> Self::Command;

    /// The instance's reminders and escalation, once it exists.
    fn follow_up(state: &Self::State) -> Option<&FollowUp<<Self as Workflow>::Action>>;
}

impl Chased for Orders {
    const STATUS_TABLE: &'static str = "order_status";

    fn remind(action: domain::PendingAction, attempt: u32) -> OrderCommand {
        OrderCommand::RecordReminder { action, attempt }
    }

    fn escalate(reason: Reason) -> OrderCommand {
        OrderCommand::EscalateOrder { reason }
    }

    fn follow_up(state: &OrderState) -> Option<&FollowUp<domain::PendingAction>> {
        state.order().map(|o| &o.follow_up)
    }
}

impl Chased for Returns {
    const STATUS_TABLE: &'static str = "return_status";

    fn remind(action: domain::ReturnAction, attempt: u32) -> ReturnCommand {
        ReturnCommand::RecordReminder { action, attempt }
    }

    fn escalate(reason: Reason) -> ReturnCommand {
        ReturnCommand::EscalateReturn { reason }
    }

    fn follow_up(state: &ReturnState) -> Option<&FollowUp<domain::ReturnAction>> {
        state.case().map(|c| &c.follow_up)
    }
}

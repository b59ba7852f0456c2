//! A return case's state, rebuilt by folding `evolve` over its events, and what it owes and
//! awaits.

use super::event::ReturnEvent;
use super::values::{InspectionOutcome, LineInspection, RefundId, ReturnLine, RmaNumber};
use crate::kernel::FollowUp;
use crate::values::{Carrier, Currency, Money, OrderId, Reason, TrackingNumber};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The externally visible status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReturnStatus {
    Requested,
    Approved,
    Received,
    Refunded,
    Rejected,
    Cancelled,
}

impl ReturnStatus {
    /// The wire form: `REQUESTED`, `APPROVED`...
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Approved => "APPROVED",
            Self::Received => "RECEIVED",
            Self::Refunded => "REFUNDED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Refunded, rejected and cancelled returns make no further progress.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Refunded | Self::Rejected | Self::Cancelled)
    }
}

impl fmt::Display for ReturnStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Received => "received",
            Self::Refunded => "refunded",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        })
    }
}

/// Where the return stands; each variant carries only what that stage needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReturnStage {
    Requested,
    Approved {
        rma_number: RmaNumber,
    },
    Received {
        rma_number: RmaNumber,
    },
    Refunded {
        rma_number: RmaNumber,
        refund_id: RefundId,
        amount: Money,
    },
    Rejected {
        reason: Reason,
    },
    Cancelled {
        reason: Reason,
    },
}

/// Something the return waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReturnAction {
    DecideReturn,
    ReceiveItems,
    IssueRefund,
    ShipItemsBack,
}

impl ReturnAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::DecideReturn => "DECIDE_RETURN",
            Self::ReceiveItems => "RECEIVE_ITEMS",
            Self::IssueRefund => "ISSUE_REFUND",
            Self::ShipItemsBack => "SHIP_ITEMS_BACK",
        }
    }
}

/// A compensation: items that arrived after the return was cancelled go back to the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReturnCompensation {
    ShipItemsBack,
}

impl ReturnCompensation {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ShipItemsBack => "SHIP_ITEMS_BACK",
        }
    }
}

/// The parcel sent back to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub carrier: Carrier,
    pub tracking_number: TrackingNumber,
}

/// A requested return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnCase {
    pub order_id: OrderId,
    pub lines: Vec<ReturnLine>,
    /// What the whole return refunds if every line is accepted.
    pub refund_due_minor: i64,
    pub currency: Currency,
    pub reason: Reason,
    pub delivered_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    pub stage: ReturnStage,
    /// The inspection outcomes, once the items arrived (also after cancellation).
    pub inspections: Option<Vec<LineInspection>>,
    /// Items shipped back to the customer after a late arrival.
    pub shipped_back: Option<Shipment>,
    pub escalations: u32,
    /// Reminders per awaited action and the step last escalated.
    #[serde(default)]
    pub follow_up: FollowUp<ReturnAction>,
}

/// The aggregate: nothing yet, or a return case.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "kind", content = "return", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReturnState {
    #[default]
    NotRequested,
    Requested(Box<ReturnCase>),
}

impl ReturnCase {
    pub fn status(&self) -> ReturnStatus {
        match self.stage {
            ReturnStage::Requested => ReturnStatus::Requested,
            ReturnStage::Approved { .. } => ReturnStatus::Approved,
            ReturnStage::Received { .. } => ReturnStatus::Received,
            ReturnStage::Refunded { .. } => ReturnStatus::Refunded,
            ReturnStage::Rejected { .. } => ReturnStatus::Rejected,
            ReturnStage::Cancelled { .. } => ReturnStatus::Cancelled,
        }
    }

    /// What the accepted lines refund, in minor units: zero until the items are inspected.
    pub fn accepted_refund_minor(&self) -> i64 {
        self.inspections
            .as_deref()
            .map(|inspections| accepted_refund_minor(&self.lines, inspections))
            .unwrap_or(0)
    }

    /// What has been refunded, in minor units.
    pub fn refunded_minor(&self) -> i64 {
        match &self.stage {
            ReturnStage::Refunded { amount, .. } => amount.amount_minor,
            _ => 0,
        }
    }

    /// Compensations owed and not yet done.
    pub fn compensations_owed(&self) -> Vec<ReturnCompensation> {
        let late_arrival =
            matches!(self.stage, ReturnStage::Cancelled { .. }) && self.inspections.is_some();
        if late_arrival && self.shipped_back.is_none() {
            vec![ReturnCompensation::ShipItemsBack]
        } else {
            vec![]
        }
    }

    /// Compensations already recorded.
    pub fn compensations_done(&self) -> Vec<ReturnCompensation> {
        if self.shipped_back.is_some() {
            vec![ReturnCompensation::ShipItemsBack]
        } else {
            vec![]
        }
    }

    /// What the return waits for next.
    pub fn pending_actions(&self) -> Vec<ReturnAction> {
        match self.stage {
            ReturnStage::Requested => vec![ReturnAction::DecideReturn],
            ReturnStage::Approved { .. } => vec![ReturnAction::ReceiveItems],
            ReturnStage::Received { .. } => vec![ReturnAction::IssueRefund],
            ReturnStage::Refunded { .. } | ReturnStage::Rejected { .. } => vec![],
            ReturnStage::Cancelled { .. } => self
                .compensations_owed()
                .into_iter()
                .map(|c| match c {
                    ReturnCompensation::ShipItemsBack => ReturnAction::ShipItemsBack,
                })
                .collect(),
        }
    }

    /// Which configured deadline applies now: the status while the return waits for its next
    /// step, `COMPENSATION` once it is cancelled but still owes items back.
    pub fn deadline_step(&self) -> Option<&'static str> {
        if self.pending_actions().is_empty() {
            None
        } else if self.status().is_final() {
            Some(crate::order::COMPENSATION_STEP)
        } else {
            Some(self.status().as_str())
        }
    }

    /// Finished: final status and nothing owed.
    pub fn is_settled(&self) -> bool {
        self.status().is_final() && self.compensations_owed().is_empty()
    }
}

/// What the accepted lines among `lines` refund, in minor units.
pub fn accepted_refund_minor(lines: &[ReturnLine], inspections: &[LineInspection]) -> i64 {
    lines
        .iter()
        .filter(|line| {
            inspections
                .iter()
                .any(|i| i.sku == line.sku && i.outcome == InspectionOutcome::Accepted)
        })
        .map(ReturnLine::refund_minor)
        .sum()
}

impl ReturnState {
    /// The return case, once requested.
    pub fn case(&self) -> Option<&ReturnCase> {
        match self {
            Self::NotRequested => None,
            Self::Requested(c) => Some(c),
        }
    }

    pub fn status(&self) -> Option<ReturnStatus> {
        self.case().map(ReturnCase::status)
    }

    pub fn pending_actions(&self) -> Vec<ReturnAction> {
        self.case()
            .map(ReturnCase::pending_actions)
            .unwrap_or_default()
    }
}

/// Applies one event. Pure and total: an event that does not fit the state (which `decide`
/// never produces) leaves the state unchanged rather than panicking.
pub fn evolve(state: ReturnState, event: &ReturnEvent) -> ReturnState {
    let mut case = match (state, event) {
        (
            ReturnState::NotRequested,
            ReturnEvent::ReturnRequested {
                order_id,
                lines,
                refund_due_minor,
                currency,
                reason,
                delivered_at,
                requested_at,
            },
        ) => {
            return ReturnState::Requested(Box::new(ReturnCase {
                order_id: *order_id,
                lines: lines.clone(),
                refund_due_minor: *refund_due_minor,
                currency: *currency,
                reason: reason.clone(),
                delivered_at: *delivered_at,
                requested_at: *requested_at,
                stage: ReturnStage::Requested,
                inspections: None,
                shipped_back: None,
                escalations: 0,
                follow_up: FollowUp::default(),
            }))
        }
        (state @ ReturnState::NotRequested, _) => return state,
        (ReturnState::Requested(case), _) => case,
    };
    match event {
        ReturnEvent::ReturnRequested { .. } => {}
        ReturnEvent::ReturnApproved { rma_number } => {
            if case.stage == ReturnStage::Requested {
                case.stage = ReturnStage::Approved {
                    rma_number: rma_number.clone(),
                }
            }
        }
        ReturnEvent::ReturnRejected { reason } => {
            case.stage = ReturnStage::Rejected {
                reason: reason.clone(),
            }
        }
        ReturnEvent::ReturnItemsReceived { inspections, .. } => {
            case.inspections = Some(inspections.clone());
            if let ReturnStage::Approved { rma_number } = &case.stage {
                case.stage = ReturnStage::Received {
                    rma_number: rma_number.clone(),
                }
            }
        }
        ReturnEvent::RefundIssued { refund_id, amount } => {
            if let ReturnStage::Received { rma_number } = &case.stage {
                case.stage = ReturnStage::Refunded {
                    rma_number: rma_number.clone(),
                    refund_id: refund_id.clone(),
                    amount: *amount,
                }
            }
        }
        ReturnEvent::ReturnCancelled { reason } => {
            case.stage = ReturnStage::Cancelled {
                reason: reason.clone(),
            }
        }
        ReturnEvent::ReturnItemsShippedBack {
            carrier,
            tracking_number,
        } => {
            case.shipped_back = Some(Shipment {
                carrier: carrier.clone(),
                tracking_number: tracking_number.clone(),
            })
        }
        ReturnEvent::ReturnEscalated { .. } => {
            case.escalations += 1;
            let step = case.deadline_step();
            case.follow_up.record_escalation(step);
        }
        ReturnEvent::ReturnReminded { action, attempt } => {
            case.follow_up.record_reminder(*action, *attempt)
        }
    }
    let pending = case.pending_actions();
    case.follow_up.settle(&pending);
    ReturnState::Requested(case)
}

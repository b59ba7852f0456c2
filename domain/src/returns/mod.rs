//! The returns workflow (DESIGN.md section 6) in decider style, built on the kernel like any
//! workflow a user of Milestone adds: one return case per delivered order, stream
//! `return-<order id>`. Facts from the order's stream arrive inside the request command
//! ([`ReturnRequestContext`]), so `decide` stays pure.

pub mod command;
pub mod error;
pub mod event;
pub mod state;
pub mod values;
mod workflow;

#[cfg(test)]
mod tests;

pub use command::{RequestReturn, ReturnCommand, ReturnRequestContext};
pub use error::ReturnError;
pub use event::ReturnEvent;
pub use state::{
    evolve, ReturnAction, ReturnCase, ReturnCompensation, ReturnStage, ReturnState, ReturnStatus,
    Shipment,
};
pub use values::{
    InspectionOutcome, LineInspection, RefundId, RequestedLine, ReturnLine, ReturnWindow, RmaNumber,
};
pub use workflow::Returns;

use crate::values::{Money, Reason};
use state::accepted_refund_minor;
use std::collections::HashSet;

/// The reason recorded when every returned line was refused at inspection.
pub const ALL_LINES_REFUSED: &str = "every returned line was refused at inspection";

/// Decides what a command means for the return case as it stands. Pure: everything from
/// outside is already in the command. An empty list is a successful no-op (a re-reported fact).
///
/// # Errors
/// A [`ReturnError`] naming the rule the command breaks.
pub fn decide(
    state: &ReturnState,
    command: ReturnCommand,
) -> Result<Vec<ReturnEvent>, ReturnError> {
    let (case, command) = match (state, command) {
        (ReturnState::NotRequested, ReturnCommand::RequestReturn(request)) => {
            return request_return(request)
        }
        (ReturnState::NotRequested, _) => return Err(ReturnError::ReturnNotFound),
        (ReturnState::Requested(case), command) => (case.as_ref(), command),
    };
    match command {
        ReturnCommand::RequestReturn(_) => Err(ReturnError::ReturnAlreadyRequested {
            status: case.status(),
        }),
        ReturnCommand::ApproveReturn { rma_number } => match case.stage {
            ReturnStage::Requested => Ok(vec![ReturnEvent::ReturnApproved { rma_number }]),
            _ => Err(illegal(
                case,
                "approving",
                "only a requested return can be approved",
            )),
        },
        ReturnCommand::RejectReturn { reason } => match case.stage {
            ReturnStage::Requested => Ok(vec![ReturnEvent::ReturnRejected { reason }]),
            _ => Err(illegal(
                case,
                "rejecting",
                "only a requested return can be rejected; received items are refused at inspection",
            )),
        },
        ReturnCommand::RecordItemsReceived { inspections } => items_received(case, inspections),
        ReturnCommand::RecordRefundIssued { refund_id, amount } => {
            refund_issued(case, refund_id, amount)
        }
        ReturnCommand::CancelReturn { reason } => match case.stage {
            ReturnStage::Requested | ReturnStage::Approved { .. } => {
                Ok(vec![ReturnEvent::ReturnCancelled { reason }])
            }
            _ => Err(ReturnError::CannotCancel {
                status: case.status(),
            }),
        },
        ReturnCommand::RecordItemsShippedBack {
            carrier,
            tracking_number,
        } => match &case.shipped_back {
            Some(done) if done.carrier == carrier && done.tracking_number == tracking_number => {
                Ok(vec![])
            }
            Some(done) => Err(ReturnError::ItemsAlreadyShippedBack {
                carrier: done.carrier.to_string(),
                tracking_number: done.tracking_number.as_str().to_owned(),
            }),
            _ if !case.compensations_owed().is_empty() => {
                Ok(vec![ReturnEvent::ReturnItemsShippedBack {
                    carrier,
                    tracking_number,
                }])
            }
            _ => Err(ReturnError::NoShipBackOwed {
                status: case.status(),
            }),
        },
        ReturnCommand::EscalateReturn { reason } => {
            if case.is_settled() {
                Err(ReturnError::NothingToEscalate {
                    status: case.status(),
                })
            } else if case.follow_up.escalated_in(case.deadline_step()) {
                Ok(vec![])
            } else {
                Ok(vec![ReturnEvent::ReturnEscalated { reason }])
            }
        }
        ReturnCommand::RecordReminder { action, attempt } => {
            if case
                .follow_up
                .check_reminder(&case.pending_actions(), action, attempt)?
            {
                Ok(vec![ReturnEvent::ReturnReminded { action, attempt }])
            } else {
                Ok(vec![])
            }
        }
    }
}

fn illegal(case: &ReturnCase, action: &'static str, hint: &'static str) -> ReturnError {
    ReturnError::IllegalTransition {
        status: case.status(),
        action,
        hint,
    }
}

fn request_return(request: RequestReturn) -> Result<Vec<ReturnEvent>, ReturnError> {
    let order = &request.order;
    let delivered_at = order.delivery()?;
    let closes_at = delivered_at + request.window.duration();
    if request.requested_at > closes_at {
        return Err(ReturnError::ReturnWindowClosed {
            order_id: order.order_id,
            delivered_on: delivered_at.date_naive(),
            window_days: request.window.days(),
            closed_on: closes_at.date_naive(),
        });
    }
    if request.lines.is_empty() {
        return Err(ReturnError::NoLines);
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::with_capacity(request.lines.len());
    for wanted in request.lines {
        if !seen.insert(wanted.sku.clone()) {
            return Err(ReturnError::DuplicateSku(wanted.sku.as_str().to_owned()));
        }
        let ordered = order
            .lines
            .iter()
            .find(|l| l.sku == wanted.sku)
            .ok_or_else(|| ReturnError::SkuNotOrdered {
                order_id: order.order_id,
                sku: wanted.sku.as_str().to_owned(),
            })?;
        if wanted.quantity.get() > ordered.quantity.get() {
            return Err(ReturnError::QuantityExceedsOrdered {
                sku: wanted.sku.as_str().to_owned(),
                ordered: ordered.quantity.get(),
                requested: wanted.quantity.get(),
            });
        }
        lines.push(ReturnLine {
            sku: wanted.sku,
            quantity: wanted.quantity,
            unit_price_minor: ordered.unit_price_minor,
        });
    }
    let refund_due_minor = lines.iter().map(ReturnLine::refund_minor).sum();
    Ok(vec![ReturnEvent::ReturnRequested {
        order_id: order.order_id,
        lines,
        refund_due_minor,
        currency: order.currency,
        reason: request.reason,
        delivered_at,
        requested_at: request.requested_at,
    }])
}

fn items_received(
    case: &ReturnCase,
    inspections: Vec<LineInspection>,
) -> Result<Vec<ReturnEvent>, ReturnError> {
    if let Some(recorded) = &case.inspections {
        // The same inspection reported again is the same fact, in whatever order.
        let same =
            recorded.len() == inspections.len() && inspections.iter().all(|i| recorded.contains(i));
        return if same {
            Ok(vec![])
        } else {
            Err(ReturnError::ItemsAlreadyReceived)
        };
    }
    let approved = match case.stage {
        ReturnStage::Approved { .. } => true,
        // A parcel that arrives after cancellation is still a fact: it is recorded and the
        // items are owed back (see `ReturnCase::compensations_owed`).
        ReturnStage::Cancelled { .. } => false,
        _ => {
            return Err(illegal(
                case,
                "recording items received",
                "items are received for an approved return, or after its cancellation",
            ))
        }
    };
    let mut seen = HashSet::new();
    for inspection in &inspections {
        if !seen.insert(&inspection.sku) {
            return Err(ReturnError::DuplicateSku(
                inspection.sku.as_str().to_owned(),
            ));
        }
        if !case.lines.iter().any(|l| l.sku == inspection.sku) {
            return Err(ReturnError::LineNotReturned(
                inspection.sku.as_str().to_owned(),
            ));
        }
    }
    if let Some(missing) = case.lines.iter().find(|l| !seen.contains(&l.sku)) {
        return Err(ReturnError::LineNotInspected(
            missing.sku.as_str().to_owned(),
        ));
    }
    let none_accepted = inspections
        .iter()
        .all(|i| i.outcome == InspectionOutcome::Refused);
    let refund_due_minor = accepted_refund_minor(&case.lines, &inspections);
    let mut events = vec![ReturnEvent::ReturnItemsReceived {
        inspections,
        refund_due_minor,
    }];
    if approved && none_accepted {
        events.push(ReturnEvent::ReturnRejected {
            reason: Reason::parse(ALL_LINES_REFUSED)
                .expect("the constant reason is short, non-empty text"),
        });
    }
    Ok(events)
}

fn refund_issued(
    case: &ReturnCase,
    refund_id: RefundId,
    amount: Money,
) -> Result<Vec<ReturnEvent>, ReturnError> {
    match &case.stage {
        ReturnStage::Refunded {
            refund_id: issued, ..
        } if *issued == refund_id => Ok(vec![]),
        ReturnStage::Refunded {
            refund_id: issued, ..
        } => Err(ReturnError::RefundAlreadyIssued {
            existing: issued.to_string(),
            reported: refund_id.to_string(),
        }),
        ReturnStage::Received { .. } => {
            let due = case.accepted_refund_minor();
            if amount.amount_minor != due || amount.currency != case.currency {
                return Err(ReturnError::RefundAmountMismatch {
                    expected: due,
                    expected_currency: case.currency.code().to_owned(),
                    actual: amount.amount_minor,
                    actual_currency: amount.currency.code().to_owned(),
                });
            }
            Ok(vec![ReturnEvent::RefundIssued { refund_id, amount }])
        }
        _ => Err(illegal(
            case,
            "recording a refund",
            "only a return whose items were received and accepted can be refunded",
        )),
    }
}

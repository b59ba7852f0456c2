//! The returns workflow's public contract: every return event becomes a public event under
//! `milestone.return.<event>`, and every action a return case waits for is a work request under
//! `milestone.return.work.<action>` carrying what the returns desk, the warehouse or the
//! payment service needs.

use super::{Contract, PublicEvent};
use domain::returns::state::accepted_refund_minor;
use domain::{ReturnAction, ReturnEvent, ReturnStage, ReturnState, Returns};
use serde::Serialize;
use serde_json::{json, Value};

fn value(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Contract for Returns {
    fn public_event(event: &ReturnEvent, after: &ReturnState) -> Option<PublicEvent> {
        let order_id = value(after.case().map(|c| c.order_id));
        let (name, data) = match event {
            ReturnEvent::ReturnRequested {
                lines,
                refund_due_minor,
                currency,
                reason,
                delivered_at,
                requested_at,
                ..
            } => (
                "requested",
                json!({"lines": lines, "refund_due_minor": refund_due_minor, "currency": currency,
                       "reason": reason, "delivered_at": delivered_at, "requested_at": requested_at}),
            ),
            ReturnEvent::ReturnApproved { rma_number } => {
                ("approved", json!({"rma_number": rma_number}))
            }
            ReturnEvent::ReturnRejected { reason } => ("rejected", json!({"reason": reason})),
            ReturnEvent::ReturnItemsReceived {
                inspections,
                refund_due_minor,
            } => (
                "items-received",
                json!({"inspections": inspections, "refund_due_minor": refund_due_minor}),
            ),
            ReturnEvent::RefundIssued { refund_id, amount } => (
                "refund-issued",
                json!({"refund_id": refund_id, "amount_minor": amount.amount_minor,
                       "currency": amount.currency}),
            ),
            ReturnEvent::ReturnCancelled { reason } => ("cancelled", json!({"reason": reason})),
            ReturnEvent::ReturnItemsShippedBack {
                carrier,
                tracking_number,
            } => (
                "items-shipped-back",
                json!({"carrier": carrier, "tracking_number": tracking_number}),
            ),
            ReturnEvent::ReturnEscalated { reason } => ("escalated", json!({"reason": reason})),
            // Private: a reminder goes out as its action's work request again (`Workflow::reminder`).
            ReturnEvent::ReturnReminded { .. } => return None,
        };
        let mut data = data;
        data["order_id"] = order_id;
        Some(PublicEvent { name, data })
    }

    fn work_request(state: &ReturnState, action: ReturnAction) -> Value {
        let Some(case) = state.case() else {
            return json!({});
        };
        let rma_number = match &case.stage {
            ReturnStage::Approved { rma_number }
            | ReturnStage::Received { rma_number }
            | ReturnStage::Refunded { rma_number, .. } => value(rma_number),
            _ => Value::Null,
        };
        let mut data = match action {
            ReturnAction::DecideReturn => json!({
                "lines": case.lines,
                "refund_due_minor": case.refund_due_minor,
                "currency": case.currency,
                "reason": case.reason,
                "delivered_at": case.delivered_at,
                "requested_at": case.requested_at,
            }),
            ReturnAction::ReceiveItems => json!({"rma_number": rma_number, "lines": case.lines}),
            ReturnAction::IssueRefund => json!({
                "rma_number": rma_number,
                "refund_due_minor": accepted_refund_minor(
                    &case.lines,
                    case.inspections.as_deref().unwrap_or_default(),
                ),
                "currency": case.currency,
            }),
            ReturnAction::ShipItemsBack => json!({
                "lines": case.lines,
                "inspections": case.inspections,
            }),
        };
        data["order_id"] = value(case.order_id);
        data
    }
}

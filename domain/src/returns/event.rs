//! Events: the facts of a return case's life, and wire contracts. Each has a stable type name
//! and a schema version, with a JSON Schema under `schemas/events/` (checked by a test).

use super::state::ReturnAction;
use super::values::{InspectionOutcome, LineInspection, RefundId, ReturnLine, RmaNumber};
use crate::values::{Carrier, Currency, Money, OrderId, Reason, TrackingNumber};
use chrono::{DateTime, Utc};

crate::event_contract! {
    /// A return case's events. Serialised as `{"type": ..., "data": {...}}`; the event store
    /// keeps the type (the variant's name) and the schema version apart from the data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ReturnEvent {
        ReturnRequested(version 1) {
            order_id: OrderId,
            /// The returned lines, priced with the order's unit prices.
            lines: Vec<ReturnLine>,
            /// What the whole return refunds if every line is accepted, in minor units.
            refund_due_minor: i64,
            currency: Currency,
            reason: Reason,
            delivered_at: DateTime<Utc>,
            requested_at: DateTime<Utc>,
        },
        ReturnApproved(version 1) {
            rma_number: RmaNumber,
        },
        ReturnRejected(version 1) {
            reason: Reason,
        },
        ReturnItemsReceived(version 1) {
            inspections: Vec<LineInspection>,
            /// What the accepted lines refund, in minor units.
            refund_due_minor: i64,
        },
        RefundIssued(version 1) {
            refund_id: RefundId,
            amount: Money,
        },
        ReturnCancelled(version 1) {
            reason: Reason,
        },
        ReturnItemsShippedBack(version 1) {
            carrier: Carrier,
            tracking_number: TrackingNumber,
        },
        ReturnEscalated(version 1) {
            reason: Reason,
        },
        /// The work request of a pending action was sent again, as `attempt`.
        ReturnReminded(version 1) {
            action: ReturnAction,
            attempt: u32,
        },
    }
    upcasters = &[];

    fn summary(&self) -> String {
        match self {
            Self::ReturnRequested {
                lines,
                refund_due_minor,
                currency,
                reason,
                ..
            } => format!(
                "return requested: {} line(s), refund due {refund_due_minor} {currency}: {reason}",
                lines.len()
            ),
            Self::ReturnApproved { rma_number } => format!("return approved, RMA {rma_number}"),
            Self::ReturnRejected { reason } => format!("return rejected: {reason}"),
            Self::ReturnItemsReceived {
                inspections,
                refund_due_minor,
            } => format!(
                "items received: {} of {} line(s) accepted, refund due {refund_due_minor}",
                inspections
                    .iter()
                    .filter(|i| i.outcome == InspectionOutcome::Accepted)
                    .count(),
                inspections.len()
            ),
            Self::RefundIssued { refund_id, amount } => {
                format!("refund {refund_id} issued for {amount}")
            }
            Self::ReturnCancelled { reason } => format!("return cancelled: {reason}"),
            Self::ReturnItemsShippedBack {
                carrier,
                tracking_number,
            } => format!(
                "items shipped back with {carrier}, tracking {}",
                tracking_number.as_str()
            ),
            Self::ReturnEscalated { reason } => format!("escalated: {reason}"),
            Self::ReturnReminded { action, attempt } => {
                format!("reminder: {}, attempt {attempt}", action.as_str())
            }
        }
    }
}

//! Named errors of the returns workflow. Each message says why and what the caller can do.

use super::state::ReturnStatus;
use crate::kernel::ReminderRefusal;
use crate::order::{ErrorKind, Status as OrderStatus};
use crate::values::OrderId;
use chrono::NaiveDate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    #[error("no return was requested for this order; request one first")]
    ReturnNotFound,
    #[error("a return was already requested for this order and is {status}; an order has one return case")]
    ReturnAlreadyRequested { status: ReturnStatus },
    #[error(
        "order {order_id} is {status}; a return can only be requested once the order is delivered"
    )]
    OrderNotDelivered {
        order_id: OrderId,
        status: OrderStatus,
    },
    #[error("order {order_id} was delivered on {delivered_on}; returns close {window_days} days after delivery, on {closed_on}")]
    ReturnWindowClosed {
        order_id: OrderId,
        delivered_on: NaiveDate,
        window_days: u32,
        closed_on: NaiveDate,
    },
    #[error("a return needs at least one line")]
    NoLines,
    #[error("SKU {0} appears on more than one line; merge the lines")]
    DuplicateSku(String),
    #[error("SKU {sku} is not on order {order_id}; only ordered SKUs can be returned")]
    SkuNotOrdered { order_id: OrderId, sku: String },
    #[error("SKU {sku} was ordered {ordered} times; {requested} cannot be returned")]
    QuantityExceedsOrdered {
        sku: String,
        ordered: u32,
        requested: u32,
    },
    #[error("SKU {0} is part of the return but has no inspection outcome; report one outcome per returned line")]
    LineNotInspected(String),
    #[error("SKU {0} was inspected but is not part of the return; report only the returned lines")]
    LineNotReturned(String),
    #[error("the items were already received with another inspection outcome; report the recorded outcome or escalate")]
    ItemsAlreadyReceived,
    #[error("refund amount {actual} {actual_currency} does not match the refund due for the accepted lines, {expected} {expected_currency}")]
    RefundAmountMismatch {
        expected: i64,
        expected_currency: String,
        actual: i64,
        actual_currency: String,
    },
    #[error("refund {existing} was already issued for this return; refund {reported} cannot also be recorded")]
    RefundAlreadyIssued { existing: String, reported: String },
    #[error("return is {status}; {action} is not possible now ({hint})")]
    IllegalTransition {
        status: ReturnStatus,
        action: &'static str,
        hint: &'static str,
    },
    #[error("return is {status}; it can no longer be cancelled")]
    CannotCancel { status: ReturnStatus },
    #[error("the items were already shipped back with {carrier}, tracking {tracking_number}; a second shipment cannot be recorded")]
    ItemsAlreadyShippedBack {
        carrier: String,
        tracking_number: String,
    },
    #[error("return is {status}; no items are owed back to the customer (only items received after cancellation are)")]
    NoShipBackOwed { status: ReturnStatus },
    #[error("return is {status} with nothing owed; there is nothing to escalate")]
    NothingToEscalate { status: ReturnStatus },
    #[error(transparent)]
    Reminder(#[from] ReminderRefusal),
}

impl ReturnError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ReturnNotFound => "return_not_found",
            Self::ReturnAlreadyRequested { .. } => "return_already_requested",
            Self::OrderNotDelivered { .. } => "order_not_delivered",
            Self::ReturnWindowClosed { .. } => "return_window_closed",
            Self::NoLines => "no_lines",
            Self::DuplicateSku(_) => "duplicate_sku",
            Self::SkuNotOrdered { .. } => "sku_not_ordered",
            Self::QuantityExceedsOrdered { .. } => "quantity_exceeds_ordered",
            Self::LineNotInspected(_) => "line_not_inspected",
            Self::LineNotReturned(_) => "line_not_returned",
            Self::ItemsAlreadyReceived => "items_already_received",
            Self::RefundAmountMismatch { .. } => "refund_amount_mismatch",
            Self::RefundAlreadyIssued { .. } => "refund_already_issued",
            Self::IllegalTransition { .. } => "illegal_transition",
            Self::CannotCancel { .. } => "cannot_cancel",
            Self::ItemsAlreadyShippedBack { .. } => "items_already_shipped_back",
            Self::NoShipBackOwed { .. } => "no_ship_back_owed",
            Self::NothingToEscalate { .. } => "nothing_to_escalate",
            Self::Reminder(refusal) => refusal.code(),
        }
    }

    /// How an API should classify the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::ReturnNotFound => ErrorKind::NotFound,
            Self::NoLines
            | Self::DuplicateSku(_)
            | Self::SkuNotOrdered { .. }
            | Self::QuantityExceedsOrdered { .. }
            | Self::LineNotInspected(_)
            | Self::LineNotReturned(_)
            | Self::RefundAmountMismatch { .. } => ErrorKind::Invalid,
            _ => ErrorKind::Conflict,
        }
    }
}

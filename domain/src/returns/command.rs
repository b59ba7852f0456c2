//! Commands: what a caller asks a return case to do. Every field is already a parsed value
//! object; facts from the order's stream arrive in [`ReturnRequestContext`], so `decide` stays
//! pure and only checks workflow rules.

use super::error::ReturnError;
use super::state::ReturnAction;
use super::values::{LineInspection, RefundId, RequestedLine, ReturnWindow, RmaNumber};
use crate::order::{Order, Status as OrderStatus};
use crate::values::{Carrier, Currency, Money, OrderId, OrderLine, Reason, TrackingNumber};
use chrono::{DateTime, Utc};

/// What the command handler found in the order's stream when a return is requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnRequestContext {
    pub order_id: OrderId,
    /// The order's status when the request was handled.
    pub order_status: OrderStatus,
    /// When the order was delivered (the time its `OrderDelivered` event was recorded);
    /// `None` while it is not delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The order's lines, with the unit prices the refund is computed from.
    pub lines: Vec<OrderLine>,
    pub currency: Currency,
}

impl ReturnRequestContext {
    /// The context of a rebuilt order. The order's state does not hold times, so the caller
    /// passes when its `OrderDelivered` event was recorded (`None` when there is none).
    ///
    /// # Errors
    /// [`ReturnError::OrderNotDelivered`] when the order is not delivered.
    pub fn from_order(
        order: &Order,
        delivered_at: Option<DateTime<Utc>>,
    ) -> Result<Self, ReturnError> {
        let context = Self {
            order_id: order.id,
            order_status: order.status(),
            delivered_at,
            lines: order.lines.clone(),
            currency: order.currency,
        };
        context.delivery()?;
        Ok(context)
    }

    /// When the order was delivered.
    ///
    /// # Errors
    /// [`ReturnError::OrderNotDelivered`] when the order is not delivered (or its delivery
    /// time is unknown).
    pub fn delivery(&self) -> Result<DateTime<Utc>, ReturnError> {
        match (self.order_status, self.delivered_at) {
            (OrderStatus::Delivered, Some(at)) => Ok(at),
            (status, _) => Err(ReturnError::OrderNotDelivered {
                order_id: self.order_id,
                status,
            }),
        }
    }
}

/// Asking for a return of some of an order's delivered items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestReturn {
    pub order: ReturnRequestContext,
    /// When the command was handled: the window is checked against it.
    pub requested_at: DateTime<Utc>,
    /// How long after delivery returns stay open (configuration; 30 days by default).
    pub window: ReturnWindow,
    pub lines: Vec<RequestedLine>,
    pub reason: Reason,
}

/// Every command the returns workflow accepts (DESIGN.md section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnCommand {
    RequestReturn(RequestReturn),
    ApproveReturn {
        rma_number: RmaNumber,
    },
    RejectReturn {
        reason: Reason,
    },
    /// The returned parcel arrived and was inspected: one outcome per returned line.
    RecordItemsReceived {
        inspections: Vec<LineInspection>,
    },
    RecordRefundIssued {
        refund_id: RefundId,
        amount: Money,
    },
    CancelReturn {
        reason: Reason,
    },
    RecordItemsShippedBack {
        carrier: Carrier,
        tracking_number: TrackingNumber,
    },
    EscalateReturn {
        reason: Reason,
    },
    /// Records that the work request of a pending action was sent again, as `attempt` (the
    /// first reminder is attempt 2).
    RecordReminder {
        action: ReturnAction,
        attempt: u32,
    },
}

impl ReturnCommand {
    /// A stable name for logs and metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RequestReturn(_) => "RequestReturn",
            Self::ApproveReturn { .. } => "ApproveReturn",
            Self::RejectReturn { .. } => "RejectReturn",
            Self::RecordItemsReceived { .. } => "RecordItemsReceived",
            Self::RecordRefundIssued { .. } => "RecordRefundIssued",
            Self::CancelReturn { .. } => "CancelReturn",
            Self::RecordItemsShippedBack { .. } => "RecordItemsShippedBack",
            Self::EscalateReturn { .. } => "EscalateReturn",
            Self::RecordReminder { .. } => "RecordReminder",
        }
    }
}

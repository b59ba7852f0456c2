//! Commands: what a caller asks the order to do. Every field is already a parsed value object,
//! so `decide` only checks workflow rules.

use super::state::PendingAction;
use crate::values::{
    Carrier, Currency, CustomerId, Money, OrderId, OrderLine, PaymentId, Reason, ReservationId,
    ShippingAddress, TrackingNumber,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    pub shipping_address: ShippingAddress,
}

/// Every command the order workflow accepts (DESIGN.md section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    PlaceOrder(PlaceOrder),
    RecordPaymentAuthorized {
        payment_id: PaymentId,
        amount: Money,
    },
    RecordPaymentDeclined {
        payment_id: PaymentId,
        reason: Reason,
    },
    RecordInventoryReserved {
        reservation_id: ReservationId,
    },
    RecordInventoryShortage {
        reservation_id: ReservationId,
        reason: Reason,
    },
    StartFulfillment,
    ShipOrder {
        carrier: Carrier,
        tracking_number: TrackingNumber,
    },
    ConfirmDelivery,
    CancelOrder {
        reason: Reason,
    },
    RecordPaymentVoided {
        payment_id: PaymentId,
    },
    RecordInventoryReleased {
        reservation_id: ReservationId,
    },
    EscalateOrder {
        reason: Reason,
    },
    /// Records that the work request of a pending action was sent again, as `attempt` (the
    /// first reminder is attempt 2).
    RecordReminder {
        action: PendingAction,
        attempt: u32,
    },
}

impl OrderCommand {
    /// A stable name for logs and metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PlaceOrder(_) => "PlaceOrder",
            Self::RecordPaymentAuthorized { .. } => "RecordPaymentAuthorized",
            Self::RecordPaymentDeclined { .. } => "RecordPaymentDeclined",
            Self::RecordInventoryReserved { .. } => "RecordInventoryReserved",
            Self::RecordInventoryShortage { .. } => "RecordInventoryShortage",
            Self::StartFulfillment => "StartFulfillment",
            Self::ShipOrder { .. } => "ShipOrder",
            Self::ConfirmDelivery => "ConfirmDelivery",
            Self::CancelOrder { .. } => "CancelOrder",
            Self::RecordPaymentVoided { .. } => "RecordPaymentVoided",
            Self::RecordInventoryReleased { .. } => "RecordInventoryReleased",
            Self::EscalateOrder { .. } => "EscalateOrder",
            Self::RecordReminder { .. } => "RecordReminder",
        }
    }
}

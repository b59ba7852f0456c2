//! Named domain errors. The message is written for the caller and says what they can do.

use super::state::Status;
use crate::kernel::ReminderRefusal;

/// How an API should classify a domain error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The order does not exist.
    NotFound,
    /// The command is not allowed in the order's current state.
    Conflict,
    /// The command's content contradicts the order (e.g. wrong amount).
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("order not found; place it first")]
    OrderNotFound,
    #[error("order already exists; use a new order id")]
    OrderAlreadyPlaced,
    #[error("an order needs between 1 and 100 lines, got {0}")]
    InvalidLineCount(usize),
    #[error("sku {0} appears on more than one line; merge the lines")]
    DuplicateSku(String),
    #[error("payment amount {actual} {actual_currency} does not match the order total {expected} {expected_currency}")]
    AmountMismatch {
        expected: i64,
        expected_currency: String,
        actual: i64,
        actual_currency: String,
    },
    #[error("payment {existing} is already authorized for this order; payment {reported} cannot also be authorized")]
    PaymentAlreadyAuthorized { existing: String, reported: String },
    #[error("payment {existing} was already declined for this order; report a new order instead")]
    PaymentAlreadyDeclined { existing: String },
    #[error("reservation {existing} already holds stock for this order; reservation {reported} cannot also be recorded")]
    InventoryAlreadyReserved { existing: String, reported: String },
    #[error("reservation {existing} already failed for this order")]
    InventoryAlreadyShort { existing: String },
    #[error("order is {status}; {action} is not possible now ({hint})")]
    IllegalTransition {
        status: Status,
        action: &'static str,
        hint: &'static str,
    },
    #[error("order is {status}; it can no longer be cancelled")]
    CannotCancel { status: Status },
    #[error("no payment void is owed for payment {0}")]
    NoPaymentVoidOwed(String),
    #[error("no stock release is owed for reservation {0}")]
    NoInventoryReleaseOwed(String),
    #[error("order is {status} with nothing owed; there is nothing to escalate")]
    NothingToEscalate { status: Status },
    #[error(transparent)]
    Reminder(#[from] ReminderRefusal),
}

impl DomainError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::OrderNotFound => "order_not_found",
            Self::OrderAlreadyPlaced => "order_already_placed",
            Self::InvalidLineCount(_) => "invalid_line_count",
            Self::DuplicateSku(_) => "duplicate_sku",
            Self::AmountMismatch { .. } => "amount_mismatch",
            Self::PaymentAlreadyAuthorized { .. } => "payment_already_authorized",
            Self::PaymentAlreadyDeclined { .. } => "payment_already_declined",
            Self::InventoryAlreadyReserved { .. } => "inventory_already_reserved",
            Self::InventoryAlreadyShort { .. } => "inventory_already_short",
            Self::IllegalTransition { .. } => "illegal_transition",
            Self::CannotCancel { .. } => "cannot_cancel",
            Self::NoPaymentVoidOwed(_) => "no_payment_void_owed",
            Self::NoInventoryReleaseOwed(_) => "no_inventory_release_owed",
            Self::NothingToEscalate { .. } => "nothing_to_escalate",
            Self::Reminder(refusal) => refusal.code(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::OrderNotFound => ErrorKind::NotFound,
            Self::InvalidLineCount(_) | Self::DuplicateSku(_) | Self::AmountMismatch { .. } => {
                ErrorKind::Invalid
            }
            _ => ErrorKind::Conflict,
        }
    }
}

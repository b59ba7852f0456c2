//! Milestone's domain: the workflow kernel and the workflows built on it, as pure functions.
//!
//! `kernel` declares what a workflow is ([`Workflow`], [`EventContract`], the [`Spec`] test
//! helper); `values` holds the value objects that parse raw input; `order` is the order
//! workflow in decider style (`decide`, `evolve`), its commands, events (the wire contracts) and
//! named errors, implemented for the kernel by [`Orders`]; `returns` is the returns workflow,
//! built on the kernel the same way and implemented by [`Returns`]. No async, no I/O: the
//! command API feeds workflows commands, the projector and the analyst tools fold their events.

#![forbid(unsafe_code)]

pub mod kernel;
pub mod order;
pub mod returns;
pub mod values;

pub use kernel::{DecodeError, EventContract, EventType, Label, Spec, Then, Upcaster, Workflow};
pub use order::{
    decide, evolve, rebuild, Compensation, DomainError, ErrorKind, Inventory, Order, OrderCommand,
    OrderEvent, OrderState, Orders, Payment, PendingAction, PlaceOrder, RejectionCause, Stage,
    Status, COMPENSATION_STEP,
};
pub use returns::{
    InspectionOutcome, LineInspection, RefundId, RequestReturn, RequestedLine, ReturnAction,
    ReturnCase, ReturnCommand, ReturnCompensation, ReturnError, ReturnEvent, ReturnLine,
    ReturnRequestContext, ReturnStage, ReturnState, ReturnStatus, ReturnWindow, Returns, RmaNumber,
};
pub use values::{
    AddressLine, Carrier, CountryCode, Currency, CustomerId, Money, OrderId, OrderLine, PaymentId,
    Quantity, Reason, ReservationId, ShippingAddress, Sku, TrackingNumber, ValueError,
};

/// Every order stream's name starts with this.
pub const ORDER_STREAM_PREFIX: &str = <Orders as Workflow>::STREAM_PREFIX;

//! Milestone's domain: the order-fulfilment workflow as pure functions.
//!
//! `values` holds the value objects that parse raw input; `order` holds the aggregate in decider
//! style (`decide`, `evolve`), its commands, events (the wire contracts) and named errors. No
//! async, no I/O: the command API feeds it commands, the projector and the analyst tools fold
//! its events.

#![forbid(unsafe_code)]

pub mod order;
pub mod values;

pub use order::{
    decide, evolve, rebuild, Compensation, DecodeError, DomainError, ErrorKind, Inventory, Order,
    OrderCommand, OrderEvent, OrderState, Payment, PendingAction, PlaceOrder, RejectionCause,
    Stage, Status, EVENT_TYPES,
};
pub use values::{
    AddressLine, Carrier, CountryCode, Currency, CustomerId, Money, OrderId, OrderLine, PaymentId,
    Quantity, Reason, ReservationId, ShippingAddress, Sku, TrackingNumber, ValueError,
};

/// Every order stream's name starts with this.
pub const ORDER_STREAM_PREFIX: &str = "order-";

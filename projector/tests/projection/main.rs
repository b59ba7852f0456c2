//! The projector against a real PostgreSQL database (fresh per test), with events appended
//! through the event-store port.

mod helpers;

mod blue_green;
mod exactly_once;
mod follow_up;
mod instances;
mod metrics;
mod partitions;
mod poison;
mod proxy;
mod read_models;
mod returns;
mod upcast;

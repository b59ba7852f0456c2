//! The event-store contract, run against every backend: PostgreSQL always (a fresh database per
//! test), KurrentDB when `KURRENTDB_URL` is set (unique stream names per test).

mod support;

mod appends;
mod ordering;
mod reads;
mod startup;
mod subscriptions;

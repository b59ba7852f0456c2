//! The command API over HTTP: the app on port 0, a PostgreSQL event store in a fresh database
//! per test.

mod helpers;

mod auth;
mod concurrency;
mod cors;
mod errors;
mod follow_up;
mod generic;
mod headers;
mod idempotency;
mod lost_answers;
mod openapi;
mod principals;
mod rate_limits;
mod returns;
mod round_trips;
mod upcast;
mod workflow;

//! The plumbing every Milestone binary shares, written once.
//!
//! `telemetry` installs the logs (JSON on stderr, filtered by `RUST_LOG`, with trace and
//! correlation ids) and the OpenTelemetry traces (OTLP, off unless an `OTEL_*` endpoint is set),
//! and keeps tests quiet unless `TEST_LOG` is set; `trace` carries the W3C trace context in and
//! out of spans, and `http_trace` (feature `http`) gives every request its server span; `secret` holds credentials in configuration so that logging
//! a configuration never prints a password; `shutdown` resolves on SIGINT or SIGTERM; `health`
//! (feature `http`) answers `/healthz` and `/readyz`; `postgres` builds connection pools,
//! applies migrations, LISTENs for notifications and tells an unreachable database from a
//! refused statement; `lease` keeps one active instance of a service with a fencing token. Nothing here knows about events or read models: the event store and the
//! read models both build on it.

#![forbid(unsafe_code)]

#[cfg(feature = "http")]
pub mod health;
#[cfg(feature = "http")]
pub mod http_trace;
pub mod lease;
pub mod postgres;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use secret::SecretUrl;
pub use shutdown::shutdown_signal;
pub use telemetry::{init_test_tracing, init_tracing, shutdown_tracing};

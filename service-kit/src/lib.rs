//! The plumbing every Milestone binary shares, written once.
//!
//! `telemetry` installs the logs (JSON on stderr, filtered by `RUST_LOG`, with trace and
//! correlation ids) and the OpenTelemetry traces (OTLP, off unless an `OTEL_*` endpoint is set),
//! and keeps tests quiet unless `TEST_LOG` is set; `trace` carries the W3C trace context in and
//! out of spans, and `http_trace` (feature `http`) gives every request its server span; `secret` holds credentials in configuration so that logging
//! a configuration never prints a password; `shutdown` resolves on SIGINT or SIGTERM; `health`
//! (feature `http`) answers `/healthz` and `/readyz`; `postgres` builds connection pools,
//! applies migrations, LISTENs for notifications and tells an unreachable database from a
//! refused statement; `auth` (feature `auth`) checks bearer tokens against a JSON Web Key
//! Set and says which scopes a caller's role grants; `lease` keeps one active instance of a
//! service with a fencing token; `metrics` holds the process's one Prometheus registry, the
//! helpers that declare each metric once and (feature `http`) the `/metrics` page, the RED
//! metrics of HTTP requests and a small listener for the services without HTTP; `rate_limit`
//! keeps a token bucket per caller for the APIs' rate limits. Nothing here knows about events
//! or read models: the event store and the read models both build on it.

// Denied, not forbidden: one layer wrapper (`telemetry::SkipEntries`) implements the tracing
// `Layer` trait's downcast, an `unsafe fn` every wrapping layer implements, and allows it there.
#![deny(unsafe_code)]

/// Every binary that links service-kit (the services, the CLI, their tests and benchmarks)
/// allocates with mimalloc: under glibc's malloc, freeing a batch's many small JSON values on
/// one thread and allocating on others cost a third of the projector's catch-up CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "http")]
pub mod health;
#[cfg(feature = "http")]
pub mod http_body;
#[cfg(feature = "http")]
pub mod http_trace;
pub mod lease;
pub mod metrics;
pub mod postgres;
pub mod rate_limit;
#[cfg(feature = "http")]
pub mod routes;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use secret::SecretUrl;
pub use shutdown::shutdown_signal;
pub use telemetry::{init_test_tracing, init_tracing, shutdown_tracing};

/// An error and its causes, outermost first, joined for one log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        next = cause.source();
    }
    chain
}

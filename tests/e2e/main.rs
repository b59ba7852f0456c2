//! The services as real processes, driven over HTTP only (and, for the relay, over NATS
//! JetStream, as downstream services would).

mod stack;

mod console;
mod crash;
mod integration;
mod logs;
mod prometheus;
mod reconciler;
mod returns;
mod run_script;
mod shutdown;
mod workflow;

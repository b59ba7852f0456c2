//! The three services as real processes, driven over HTTP only.

mod stack;

mod crash;
mod reconciler;
mod returns;
mod run_script;
mod workflow;

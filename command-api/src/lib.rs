//! Milestone's REST command API.
//!
//! A caller states an intent (`POST /orders`, `POST /orders/{id}/<action>`, the same under
//! `/returns`) and gets an immediate answer. `http` turns the request into a command (body limit, content type, JSON,
//! headers), `dto` parses bodies into the domain's value objects, `service` reads the instance's
//! stream, decides with the workflow and appends with the expected revision, retrying lost
//! races; `idempotency` keeps the answers of keyed requests that wrote no events. Both are
//! written once against `workflow::WorkflowApi`; `orders` implements it for the order workflow,
//! `returns` (bodies in `returns_dto`) for the returns workflow.
//! `auth` checks each request's bearer token and the scope its route declares; `cors` lets the
//! configured origins (the operations console) call it from a browser;
//! `error` renders every failure as RFC 9457 problem+json; `openapi` documents it all;
//! `metrics` declares what the pipeline counts and times; `startup` wires the server.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod cors;
pub mod dto;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod returns;
pub mod returns_dto;
pub mod routes;
pub mod service;
pub mod startup;
pub mod workflow;

/// Every workflow the command API serves: adding one is one line here.
pub const SERVED: &[routes::Served] = &[orders::SERVED, returns::SERVED];

//! Milestone's GraphQL query API over the projector's read models.
//!
//! `schema` defines the types and resolvers by area (orders and returns: timelines through a
//! DataLoader, counts, stalled instances; paging; projection status) with depth and complexity
//! limits;
//! `error` gives every failure a stable `extensions.code`; `db` reads the tables by column name;
//! `consistency` follows every projection's checkpoint through its NOTIFY so a query carrying a
//! command's consistency token can wait (bounded) to read its own write; `log` reads the event
//! log through the store's port (lag, what a token concerns); `live` turns the same
//! notifications into the subscriptions' updates, read from the read models after each
//! subscriber's position; `http` serves it all on actix-web, and `ws` the subscriptions over a
//! websocket on the same path, with their limits; `auth` checks each request's bearer token,
//! the scope each root field needs and narrows a customer's reads to their own; `metrics`
//! declares what is measured besides HTTP (read-your-writes waits, stale answers); `repair`
//! retries parked instances with the projector's own code (the `retryParked` mutation);
//! `console` serves the operations console, a page on `/console` built on all of it; `startup`
//! wires it.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod consistency;
pub mod console;
pub mod db;
pub mod error;
pub mod http;
pub mod live;
pub mod log;
pub mod metrics;
pub mod repair;
pub mod schema;
pub mod startup;
pub mod ws;

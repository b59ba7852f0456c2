//! The OpenAPI 3.1 document, generated from the handlers and bodies. Committed at
//! `schemas/openapi.json`; a test fails when they drift.

use crate::dto::*;
use crate::error::{FieldError, Problem};
use crate::routes;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Milestone command API",
        description = "State an intent about an order and get an immediate answer. Every accepted command returns the order's status, its stream revision and a consistency token to read your own write through the query API. Errors are RFC 9457 problem+json with a stable `code`.",
        version = "0.1.0"
    ),
    paths(
        routes::place_order,
        routes::payment_authorized,
        routes::payment_declined,
        routes::inventory_reserved,
        routes::inventory_shortage,
        routes::start_fulfillment,
        routes::ship,
        routes::confirm_delivery,
        routes::cancel,
        routes::payment_voided,
        routes::inventory_released,
        routes::escalate,
    ),
    components(schemas(CommandOutcome, Problem, FieldError, ReservationRequest, ReasonRequest)),
    tags((name = "orders", description = "Order-fulfilment commands"))
)]
pub struct ApiDoc;

/// The document as pretty JSON, as committed.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

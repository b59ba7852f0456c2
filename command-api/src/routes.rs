//! One handler per command route, each documented for the OpenAPI document.

use crate::dto::*;
use crate::error::{ApiError, Problem};
use crate::http::{handle_action, handle_create};
use crate::orders::OrderOutcome;
use crate::startup::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::ResponseError;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};
use domain::Orders;
use serde::Deserialize;
use utoipa::IntoParams;

/// Headers every command accepts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct CommandHeaders {
    /// A retried request with the same key returns the original outcome (with
    /// `Idempotent-Replayed: true`) and writes nothing; the same key with a different body is
    /// refused with 422 `idempotency_key_reused`. Keys are scoped to one order.
    #[serde(rename = "Idempotency-Key")]
    #[param(schema_with = crate::http::token_schema)]
    idempotency_key: Option<String>,
    /// The revision the command expects (the `ETag` or `revision` of an earlier response). A
    /// mismatch is 412 and nothing is written. Without it, a concurrent change is retried.
    #[serde(rename = "If-Match")]
    #[param(schema_with = crate::http::if_match_schema)]
    if_match: Option<String>,
    /// Stored in every event's metadata and echoed on every response, errors included;
    /// generated when absent.
    #[serde(rename = "X-Correlation-Id")]
    #[param(schema_with = crate::http::token_schema)]
    x_correlation_id: Option<String>,
}

/// Place a new order.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    params(CommandHeaders),
    request_body(content = PlaceOrderRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Order placed; `Location` names it", body = OrderOutcome),
        (status = 400, description = "Malformed JSON, unknown field or bad header", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An order with this id already exists", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (listed), or Idempotency-Key reused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn place_order(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    handle_create::<Orders, PlaceOrderRequest>(app, req, "place-order", payload).await
}

macro_rules! action_route {
    ($name:ident, $path:tt, $action:tt, $body:ty, $summary:tt) => {
        #[doc = $summary]
        #[utoipa::path(
            post,
            path = $path,
            tag = "orders",
            params(("order_id" = uuid::Uuid, Path, description = "The order's id (a UUID)"), CommandHeaders),
            request_body(content = $body, content_type = "application/json"),
            responses(
                (status = 200, description = "Applied, or a no-op re-report of a known fact", body = OrderOutcome),
                (status = 400, description = "Malformed JSON, unknown field or bad header", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "Not allowed in the order's current state, or contention", body = Problem, content_type = "application/problem+json"),
                (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
                (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
                (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
                (status = 422, description = "Invalid fields (listed), contradicts the order, or Idempotency-Key reused", body = Problem, content_type = "application/problem+json"),
                (status = 503, description = "Event store unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
            )
        )]
        pub async fn $name(
            app: web::Data<AppState>,
            req: HttpRequest,
            path: web::Path<String>,
            payload: web::Payload,
        ) -> Result<HttpResponse, ApiError> {
            handle_action::<Orders, $body>(app, req, path.into_inner(), $action, payload).await
        }
    };
}

action_route!(
    payment_authorized,
    "/orders/{order_id}/payment-authorized",
    "payment-authorized",
    PaymentAuthorizedRequest,
    "Record that the payment was authorized."
);
action_route!(
    payment_declined,
    "/orders/{order_id}/payment-declined",
    "payment-declined",
    PaymentDeclinedRequest,
    "Record that the payment was declined (rejects a placed order)."
);
action_route!(
    inventory_reserved,
    "/orders/{order_id}/inventory-reserved",
    "inventory-reserved",
    InventoryReservedRequest,
    "Record that the stock was reserved."
);
action_route!(
    inventory_shortage,
    "/orders/{order_id}/inventory-shortage",
    "inventory-shortage",
    InventoryShortageRequest,
    "Record that the stock could not be reserved (rejects a placed order)."
);
action_route!(
    start_fulfillment,
    "/orders/{order_id}/start-fulfillment",
    "start-fulfillment",
    StartFulfillmentRequest,
    "Start fulfilling an accepted order."
);
action_route!(
    ship,
    "/orders/{order_id}/ship",
    "ship",
    ShipRequest,
    "Record that the order left with a carrier."
);
action_route!(
    confirm_delivery,
    "/orders/{order_id}/confirm-delivery",
    "confirm-delivery",
    ConfirmDeliveryRequest,
    "Record that the carrier delivered the order."
);
action_route!(
    cancel,
    "/orders/{order_id}/cancel",
    "cancel",
    CancelRequest,
    "Cancel an order that has not started fulfilment."
);
action_route!(
    payment_voided,
    "/orders/{order_id}/payment-voided",
    "payment-voided",
    PaymentVoidedRequest,
    "Record that an owed payment void was done."
);
action_route!(
    inventory_released,
    "/orders/{order_id}/inventory-released",
    "inventory-released",
    InventoryReleasedRequest,
    "Record that an owed stock release was done."
);
action_route!(
    escalate,
    "/orders/{order_id}/escalate",
    "escalate",
    EscalateRequest,
    "Escalate an unfinished order to a person."
);

/// A resource that answers `method` with `handler`, and any other method with a 405 whose
/// `Allow` header names `method`.
pub fn only<F, Args>(path: &str, method: Method, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let allowed = method.clone();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move |req: HttpRequest| {
            method_not_allowed(req, allowed.clone())
        }))
}

/// Registers every command route; other methods on them answer 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(only("/orders", Method::POST, place_order));
    macro_rules! register {
        ($($action:literal => $handler:ident),* $(,)?) => {
            $(cfg.service(only(concat!("/orders/{order_id}/", $action), Method::POST, $handler));)*
        };
    }
    register!(
        "payment-authorized" => payment_authorized,
        "payment-declined" => payment_declined,
        "inventory-reserved" => inventory_reserved,
        "inventory-shortage" => inventory_shortage,
        "start-fulfillment" => start_fulfillment,
        "ship" => ship,
        "confirm-delivery" => confirm_delivery,
        "cancel" => cancel,
        "payment-voided" => payment_voided,
        "inventory-released" => inventory_released,
        "escalate" => escalate,
    );
}

async fn method_not_allowed(req: HttpRequest, allowed: Method) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}; use {allowed}",
        req.method(),
        req.path()
    ))
    .error_response();
    if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Any path that is not a route.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

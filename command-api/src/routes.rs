//! What every command route shares: the headers it accepts, 405 for other methods, 404 for
//! unknown paths, and [`command_routes!`], with which a workflow declares its routes once.

use crate::error::ApiError;
use actix_web::http::Method;
use actix_web::ResponseError;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};
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

/// Declares a workflow's command routes once: the creating route and every action, each with
/// its path segment, request body, the scope a caller needs (a `service_kit::auth::Scope`) and
/// summary, and the schemas its bodies nest. The handlers check the scope; the OpenAPI document
/// shows it as the operation's security requirement. Generates the
/// actix handlers, `configure` (which registers them, answering 405 to other methods), an
/// `OpenApi` struct with their paths and tag, and `SERVED`, from which the document's links to
/// every action are derived.
///
/// ```ignore
/// command_routes! {
///     workflow: Orders, tag: "orders" = "Order-fulfilment commands", outcome: OrderOutcome,
///     schemas: (OrderLineRequest),
///     id: "order_id": uuid::Uuid = "The order's id (a UUID)",
///     create: place_order => "/orders", "place-order", PlaceOrderRequest, scope: PlaceOrders,
///         "Place a new order.", created: "…", exists: "…";
///     actions (not_found: "…", conflict: "…", invalid: "…") {
///         ship => "ship", ShipRequest, scope: ReportCarrier,
///             "Record that the order left with a carrier.";
///     }
///     openapi: OrderRoutes
/// }
/// ```
macro_rules! command_routes {
    (
        workflow: $workflow:ty, tag: $tag:tt = $tag_description:tt, outcome: $outcome:ty,
        schemas: ($($schema:ty),* $(,)?),
        id: $id_field:tt : $id_type:ty = $id_description:tt,
        create: $create:ident => $collection:tt, $endpoint:tt, $create_body:ty,
            scope: $create_scope:ident, $create_summary:tt,
            created: $created:tt, exists: $exists:tt;
        actions (not_found: $not_found:tt, conflict: $conflict:tt, invalid: $invalid:tt) {
            $( $action:ident => $segment:tt, $body:ty, scope: $scope:ident, $summary:tt; )*
        }
        openapi: $doc:ident
    ) => {
        #[doc = $create_summary]
        #[utoipa::path(
            post,
            path = $collection,
            tag = $tag,
            params($crate::routes::CommandHeaders),
            request_body(content = $create_body, content_type = "application/json"),
            responses(
                (status = 201, description = $created, body = $outcome),
                (status = 400, description = "Malformed JSON, unknown field or bad header", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 401, description = "No bearer token, or one that does not verify", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 403, description = "The caller's role does not have the route's scope", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 409, description = $exists, body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 412, description = "If-Match does not match", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 408, description = "The body did not arrive in full within 10 s (`request_timeout`)", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 413, description = "Body too large", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 415, description = "Body is not JSON, or is compressed (Content-Encoding)", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 422, description = "Invalid fields (listed), or Idempotency-Key reused", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 429, description = "Rate limit exceeded (`rate_limited`); see Retry-After", body = $crate::error::Problem, content_type = "application/problem+json"),
                (status = 503, description = "Event store unavailable; see Retry-After", body = $crate::error::Problem, content_type = "application/problem+json"),
            )
        )]
        pub async fn $create(
            app: actix_web::web::Data<$crate::startup::AppState>,
            req: actix_web::HttpRequest,
            payload: actix_web::web::Payload,
        ) -> Result<actix_web::HttpResponse, $crate::error::ApiError> {
            $crate::http::handle_create::<$workflow, $create_body>(
                app,
                req,
                $endpoint,
                service_kit::auth::Scope::$create_scope,
                payload,
            )
            .await
        }

        $(
            #[doc = $summary]
            #[utoipa::path(
                post,
                path = concat!($collection, "/{", $id_field, "}/", $segment),
                tag = $tag,
                params(($id_field = $id_type, Path, description = $id_description), $crate::routes::CommandHeaders),
                request_body(content = $body, content_type = "application/json"),
                responses(
                    (status = 200, description = "Applied, or a no-op re-report of a known fact", body = $outcome),
                    (status = 400, description = "Malformed JSON, unknown field or bad header", body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 401, description = "No bearer token, or one that does not verify", body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 403, description = "The caller's role does not have the route's scope", body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 404, description = $not_found, body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 409, description = $conflict, body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 412, description = "If-Match does not match", body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 408, description = "The body did not arrive in full within 10 s (`request_timeout`)", body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 413, description = "Body too large", body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 415, description = "Body is not JSON, or is compressed (Content-Encoding)", body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 422, description = $invalid, body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 429, description = "Rate limit exceeded (`rate_limited`); see Retry-After", body = $crate::error::Problem, content_type = "application/problem+json"),
                    (status = 503, description = "Event store unavailable; see Retry-After", body = $crate::error::Problem, content_type = "application/problem+json"),
                )
            )]
            pub async fn $action(
                app: actix_web::web::Data<$crate::startup::AppState>,
                req: actix_web::HttpRequest,
                path: actix_web::web::Path<String>,
                payload: actix_web::web::Payload,
            ) -> Result<actix_web::HttpResponse, $crate::error::ApiError> {
                $crate::http::handle_action::<$workflow, $body>(
                    app,
                    req,
                    path.into_inner(),
                    $segment,
                    service_kit::auth::Scope::$scope,
                    payload,
                )
                .await
            }
        )*

        /// Registers every command route of the workflow; other methods on them answer 405.
        pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
            use actix_web::http::Method;
            cfg.service($crate::routes::only($collection, Method::POST, $create));
            $(
                cfg.service($crate::routes::only(
                    concat!($collection, "/{", $id_field, "}/", $segment),
                    Method::POST,
                    $action,
                ));
            )*
        }

        /// The OpenAPI paths of the workflow's command routes.
        #[derive(utoipa::OpenApi)]
        #[openapi(
            paths($create, $($action),*),
            components(schemas($outcome $(, $schema)*)),
            tags((name = $tag, description = $tag_description))
        )]
        pub struct $doc;

        /// The workflow as the command API serves it; listed in [`crate::SERVED`].
        pub const SERVED: $crate::routes::Served = $crate::routes::Served {
            configure,
            openapi: <$doc as utoipa::OpenApi>::openapi,
            links: $crate::openapi::add_action_links::<$workflow>,
            scopes: &[
                ($collection, service_kit::auth::Scope::$create_scope),
                $((
                    concat!($collection, "/{", $id_field, "}/", $segment),
                    service_kit::auth::Scope::$scope,
                ),)*
            ],
        };
    };
}

pub(crate) use command_routes;

/// A workflow's command routes, as [`command_routes!`] declares them: how to register them, their
/// OpenAPI paths, the links from each outcome to the instance's actions, and the scope each
/// route (by its OpenAPI path) needs.
pub struct Served {
    pub configure: fn(&mut web::ServiceConfig),
    pub openapi: fn() -> utoipa::openapi::OpenApi,
    pub links: fn(&mut serde_json::Value),
    pub scopes: &'static [(&'static str, service_kit::auth::Scope)],
}

/// A resource that answers `method` with `handler` (and `HEAD` too for `GET`), and any other
/// method with a 405 `method_not_allowed` whose `Allow` header names what it serves.
pub fn only<F, Args>(path: &str, method: Method, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    service_kit::routes::only(path, method, handler, method_not_allowed)
}

fn method_not_allowed(message: String) -> HttpResponse {
    ApiError::MethodNotAllowed(message).error_response()
}

/// Any path that is not a route.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

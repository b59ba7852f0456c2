//! The HTTP edge: `POST /graphql` (for an authenticated caller) with read-your-writes, GraphiQL
//! on `GET /graphql`, health.

use crate::db::{projection, Snapshot};
use crate::error::error_chain;
use crate::metrics::StaleLabels;
use crate::schema::{self, PROJECTION};
use crate::startup::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use async_graphql::http::GraphiQLSource;
use event_store::Position;
use serde_json::json;
use service_kit::health;
use service_kit::rate_limit::{Caller, RateLimiter};
use std::sync::Arc;

/// The header (or request extension `consistencyToken`) carrying a command's consistency token.
pub const CONSISTENCY_HEADER: &str = "X-Consistency-Token";

/// A response that is only errors, each with `extensions.code`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code } }]
    }))
}

/// Middleware: takes each `POST` (`/graphql` is the only route that answers one; matching the
/// method alone leaves no spelling of the path uncounted) from its caller's token bucket, the
/// principal's subject or, without one, the client's address; over the limit, the request is
/// answered
/// `429` with `Retry-After` and an error whose `extensions.code` is `RATE_LIMITED`, and no
/// query runs. Wrapped inside the authentication middleware, so that the principal is known.
///
/// # Errors
/// The `429` response; an error of the inner service.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::POST {
        if let Some(limiter) = req.app_data::<web::Data<RateLimiter>>() {
            let subject = req
                .extensions()
                .get::<event_store::Principal>()
                .map(|p| p.subject.clone());
            let caller = Caller::of(subject.as_deref(), req.peer_addr());
            if let Err(limited) = limiter.admit(&caller) {
                let secs = limited.retry_after_secs();
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    &format!("too many requests: retry after {secs} s"),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
                return Err(InternalError::from_response("rate limited", response).into());
            }
        }
    }
    next.call(req).await
}

/// The request's consistency token, if it carries one.
///
/// # Errors
/// When the token is not a position.
fn token(
    req: &HttpRequest,
    request: &async_graphql::Request,
) -> Result<Option<Position>, event_store::StoreError> {
    let raw = match req.headers().get(CONSISTENCY_HEADER) {
        Some(v) => Some(v.to_str().map(str::to_owned).unwrap_or_default()),
        None => request.extensions.get("consistencyToken").map(|v| match v {
            async_graphql::Value::String(s) => s.clone(),
            _ => String::new(),
        }),
    };
    match raw {
        None => Ok(None),
        Some(raw) => raw.trim().parse::<Position>().map(Some),
    }
}

/// Gives a stable `extensions.code` to the errors async-graphql raises itself (a query that
/// does not parse, variables that do not fit): the API's own errors carry theirs.
fn classify(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if error.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            "INTERNAL"
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

/// `POST /graphql`.
pub async fn graphql(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<async_graphql::Request>,
) -> HttpResponse {
    let caller = match service_kit::auth::http::caller(&req) {
        Ok(caller) => caller,
        Err(e) => return crate::auth::refusal(e),
    };
    let request = body.into_inner();
    if request.query.trim().is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the request has no query: send {\"query\": \"{ ... }\"}, with \"variables\" if it has any",
        );
    }
    let token = match token(&req, &request) {
        Ok(t) => t,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_CONSISTENCY_TOKEN",
                "the consistency token is malformed; pass the consistency_token of a command response, e.g. 812-3",
            )
        }
    };
    let wait = match token {
        Some(t) => Some((
            t,
            app.checkpoints
                .wait_for(t, app.config.read_your_writes_timeout)
                .await,
        )),
        None => None,
    };
    let snapshot = Arc::new(Snapshot::new(app.pool.clone()));
    let mut response = app
        .schema
        .execute(schema::for_request(request, caller, &snapshot))
        .await;
    classify(&mut response);
    if let Some((token, outcome)) = wait {
        // From the answer's own snapshot: parked as of what the answer shows.
        let parked = match snapshot.client().await {
            Ok(client) => projection::parked_at(client, token).await,
            Err(e) => Err(e),
        };
        let parked = parked
            .inspect_err(|e| tracing::warn!(cause = %error_chain(e), "cannot tell whether the order is parked"))
            .ok();
        // The write does not show: not applied yet, parked, or not known to be applied.
        let stale = match &parked {
            _ if !outcome.reached => Some("timed_out"),
            None => Some("unknown"),
            Some(p) if !p.is_empty() => Some("parked"),
            Some(_) => None,
        };
        if let Some(reason) = stale {
            crate::metrics::METRICS
                .stale
                .get_or_create(&StaleLabels { reason })
                .inc();
        }
        let consistency = json!({
            "token": token.to_string(),
            "reached": outcome.reached,
            "stale": stale.is_some(),
            "parked": parked,
            "checkpoint": outcome.checkpoint.map(|p| p.to_string()),
            "waitedMs": outcome.waited.as_millis() as u64,
        });
        if let Ok(value) = async_graphql::Value::from_json(consistency) {
            response.extensions.insert("consistency".to_owned(), value);
        }
    }
    // The request's data (its DataLoader) is gone; a loader task still holding the snapshot
    // drops it later, closing the connection rather than reusing it mid-transaction.
    if let Ok(snapshot) = Arc::try_unwrap(snapshot) {
        snapshot.finish().await;
    }
    HttpResponse::Ok().json(response)
}

/// `GET /graphql`: GraphiQL, for local use.
pub async fn graphiql() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .finish(),
        )
}

/// `GET /schema.graphql`: the SDL.
pub async fn sdl(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(app.schema.sdl())
}

pub async fn readyz(app: web::Data<AppState>) -> HttpResponse {
    match app.checkpoints.refresh().await {
        Ok(checkpoints) => health::ready([
            (
                "checkpoint",
                checkpoints
                    .get(PROJECTION)
                    .copied()
                    .flatten()
                    .map(|p| p.to_string())
                    .into(),
            ),
            (
                "checkpoints",
                checkpoints
                    .iter()
                    .map(|(name, p)| (name.to_string(), json!(p.map(|p| p.to_string()))))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            ),
        ]),
        Err(e) => {
            tracing::warn!(cause = %error_chain(&e), "not ready: read models unavailable");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "READ_MODEL_UNAVAILABLE",
                &e.to_string(),
            )
        }
    }
}

/// Errors of the JSON body extractor, as GraphQL errors with codes.
pub fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let (status, code, message) = match &err {
        E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than the limit of {limit} bytes"),
        ),
        E::ContentType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the query as application/json".to_owned(),
        ),
        E::Payload(p) if service_kit::http_body::timed_out(p).is_some() => (
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            service_kit::http_body::BodyTimedOut(service_kit::http_body::BODY_TIMEOUT).to_string(),
        ),
        other => (
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("the request body is not a GraphQL request: {other}"),
        ),
    };
    actix_web::error::InternalError::from_response(err, error_response(status, code, &message))
        .into()
}

/// A method a resource does not serve (the status and `Allow` are set by
/// [`service_kit::routes`]).
pub fn method_not_allowed(message: String) -> HttpResponse {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        &message,
    )
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("no route for {} {}", req.method(), req.path()),
    )
}

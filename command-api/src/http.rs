//! The HTTP edge of a command: headers, body limits and content type, JSON parsing, and the
//! response. Everything a client can send is answered with a problem, never a panic.

use crate::dto::{CommandBody, PlaceOrderRequest};
use crate::error::ApiError;
use crate::service::{self, CommandContext, Executed};
use crate::startup::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::OrderId;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The header that marks a response as the stored outcome of an earlier identical request.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
pub const CORRELATION_HEADER: &str = "X-Correlation-Id";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Result<Option<&'a str>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ApiError::InvalidHeader(format!("{name} must be visible ASCII"))),
    }
}

fn token_header(req: &HttpRequest, name: &str) -> Result<Option<String>, ApiError> {
    match header_str(req, name)? {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > 255 => Err(ApiError::InvalidHeader(format!(
            "{name} must be 1 to 255 characters"
        ))),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// `If-Match: "3"` (or `3`, or `W/"3"`) pins the revision the command expects.
fn if_match(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(raw) = header_str(req, "If-Match")? else {
        return Ok(None);
    };
    if raw == "*" {
        return Ok(None);
    }
    let unquoted = raw.trim_start_matches("W/").trim_matches('"');
    unquoted.parse::<u64>().map(Some).map_err(|_| {
        ApiError::InvalidHeader(format!(
            "If-Match must be a revision number such as \"3\" (from the ETag or `revision`), not '{}'",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

/// Reads the body up to the configured limit and checks its content type. An empty body
/// without a content type is allowed (it reads as `{}`).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::InvalidBody(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let content_type = header_str(req, "Content-Type")?;
    let is_json = content_type.is_some_and(|ct| {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    });
    match (is_json, content_type, body.is_empty()) {
        (true, _, _) | (false, None, true) => Ok(body),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Parses JSON in two steps so that syntax errors (400 `malformed_json`) and shape errors
/// (400 `invalid_body`: wrong types, unknown or missing fields) are told apart.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<(T, serde_json::Value), ApiError> {
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::MalformedJson(format!("request body is not valid JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::InvalidBody(
            "request body must be a JSON object".into(),
        ));
    }
    let parsed = T::deserialize(&value).map_err(|e| {
        ApiError::InvalidBody(format!("request body does not match the schema: {e}"))
    })?;
    Ok((parsed, value))
}

/// SHA-256 of the endpoint and the canonical body (object keys sorted).
fn request_hash(endpoint: &str, body: &serde_json::Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(endpoint.as_bytes());
    hasher.update(b"\n");
    hasher.update(body.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

fn context(
    req: &HttpRequest,
    endpoint: &str,
    body: &serde_json::Value,
) -> Result<CommandContext, ApiError> {
    let idempotency_key = token_header(req, IDEMPOTENCY_HEADER)?;
    let correlation_id = token_header(req, CORRELATION_HEADER)?
        .unwrap_or_else(|| service::default_correlation_id(idempotency_key.as_deref()));
    Ok(CommandContext {
        if_match: if_match(req)?,
        request_hash: idempotency_key
            .as_ref()
            .map(|_| request_hash(endpoint, body)),
        idempotency_key,
        correlation_id,
    })
}

fn respond(executed: Executed, created: bool) -> HttpResponse {
    let Executed { outcome, replayed } = executed;
    let mut response = if created {
        let mut r = HttpResponse::Created();
        r.insert_header((header::LOCATION, format!("/orders/{}", outcome.order_id)));
        r
    } else {
        HttpResponse::Ok()
    };
    response.insert_header((header::ETAG, format!("\"{}\"", outcome.revision)));
    response.insert_header((CORRELATION_HEADER, outcome.correlation_id.clone()));
    if replayed {
        response.insert_header((REPLAYED_HEADER, "true"));
    }
    response.json(outcome)
}

/// `POST /orders`.
pub async fn handle_place_order(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, app.config.body_limit_bytes).await?;
    let (request, value) = parse_json::<PlaceOrderRequest>(&body)?;
    let ctx = context(&req, "place-order", &value)?;
    let fallback = service::order_id_for(ctx.idempotency_key.as_deref());
    let (order_id, command) = request
        .into_command(fallback)
        .map_err(ApiError::Validation)?;
    let executed = service::execute(app.store.as_ref(), order_id, command, &ctx).await?;
    Ok(respond(executed, true))
}

/// `POST /orders/{order_id}/<action>`.
pub async fn handle_action<B: CommandBody>(
    app: web::Data<AppState>,
    req: HttpRequest,
    order_id: String,
    action: &str,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let order_id =
        OrderId::parse(&order_id).map_err(|e| ApiError::NotFound(format!("no such order: {e}")))?;
    let body = read_body(&req, payload, app.config.body_limit_bytes).await?;
    let (request, value) = parse_json::<B>(&body)?;
    let ctx = context(&req, action, &value)?;
    let command = request
        .into_command(order_id)
        .map_err(ApiError::Validation)?;
    let executed = service::execute(app.store.as_ref(), order_id, command, &ctx).await?;
    Ok(respond(executed, false))
}

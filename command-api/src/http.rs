//! The HTTP edge of a command: headers, body limits and content type, JSON parsing, and the
//! response. Everything a client can send is answered with a problem, never a panic.

use crate::dto::{CommandBody, CreateBody};
use crate::error::ApiError;
use crate::metrics::CommandLabels;
use crate::service::{self, CommandContext, Executed};
use crate::startup::AppState;
use crate::workflow::WorkflowApi;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use event_store::Principal;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use service_kit::auth::Scope;
use service_kit::http_trace::INSTANCE_FIELD;
use service_kit::rate_limit::{Caller, RateLimiter};
use sha2::{Digest, Sha256};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// The header that marks a response as the stored outcome of an earlier identical request.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
pub const CORRELATION_HEADER: &str = "X-Correlation-Id";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The longest `Idempotency-Key` or `X-Correlation-Id` accepted, after trimming.
pub const TOKEN_MAX_LEN: usize = 255;

/// The most digits a revision in `If-Match` may have (any 19-digit number fits a `u64`).
pub const REVISION_MAX_DIGITS: usize = 19;

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ApiError::InvalidHeader(format!("{name} must be visible ASCII"))),
    }
}

/// An `Idempotency-Key` or `X-Correlation-Id`: 1 to [`TOKEN_MAX_LEN`] visible ASCII characters.
fn token_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match header_str(headers, name)? {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > TOKEN_MAX_LEN => Err(ApiError::InvalidHeader(
            format!("{name} must be 1 to {TOKEN_MAX_LEN} characters"),
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// `If-Match: "3"` (or `3`, or `W/"3"`) pins the revision the command expects; `*` pins none.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(raw) = header_str(headers, "If-Match")? else {
        return Ok(None);
    };
    if raw == "*" {
        return Ok(None);
    }
    let tag = raw.strip_prefix("W/").unwrap_or(raw);
    let digits = match tag.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"'),
        None => Some(tag),
    };
    digits
        .filter(|d| {
            (1..=REVISION_MAX_DIGITS).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|d| d.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::InvalidHeader(format!(
                "If-Match must be a revision number such as \"3\" (from the ETag or `revision`), not '{}'",
                raw.chars().take(40).collect::<String>()
            ))
        })
}

/// How the HTTP parser and [`header_str`] see a header value: optional spaces or tabs around it.
fn header_pattern(core: &str) -> String {
    format!("^[\\t ]*{core}[\\t ]*$")
}

/// The documented form of an `Idempotency-Key` or `X-Correlation-Id`, as [`token_header`]
/// enforces it: 1 to [`TOKEN_MAX_LEN`] visible ASCII characters (inner spaces allowed).
pub fn token_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(header_pattern(&format!(
            "[!-~]([\\t !-~]{{0,{}}}[!-~])?",
            TOKEN_MAX_LEN - 2
        ))))
        .build()
}

/// The documented form of `If-Match`, as [`if_match`] enforces it.
pub fn if_match_schema() -> Object {
    let revision = format!("[0-9]{{1,{REVISION_MAX_DIGITS}}}");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(header_pattern(&format!(
            "(\\*|(W/)?(\"{revision}\"|{revision}))"
        ))))
        .examples(["\"3\""])
        .build()
}

/// The correlation id a request carries through the command and back to the caller.
#[derive(Debug, Clone)]
struct CorrelationId(String);

/// The caller's `X-Correlation-Id` if it is valid, otherwise one derived from the
/// `Idempotency-Key` (so a retry gets the same one) or a new one.
fn choose_correlation_id(headers: &HeaderMap) -> String {
    token_header(headers, CORRELATION_HEADER)
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            let key = token_header(headers, IDEMPOTENCY_HEADER).ok().flatten();
            service::default_correlation_id(key.as_deref())
        })
}

/// Middleware: chooses each request's correlation id before routing and echoes it on every
/// response, errors of any kind included. A response that already names one (a replay, which
/// carries the original request's) keeps it.
///
/// # Errors
/// An error of the inner service, passed on with the header added to its response.
pub async fn echo_correlation_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = choose_correlation_id(req.headers());
    tracing::Span::current().record(service_kit::telemetry::CORRELATION_FIELD, id.as_str());
    req.extensions_mut().insert(CorrelationId(id.clone()));
    match next.call(req).await {
        Ok(mut response) => {
            echo(response.headers_mut(), &id);
            Ok(response)
        }
        Err(e) => {
            let mut response = e.error_response();
            echo(response.headers_mut(), &id);
            Err(InternalError::from_response(e, response).into())
        }
    }
}

/// Middleware: takes each command (`POST`) from its caller's token bucket, the principal's
/// subject or, without one, the client's address; over the limit, the command is answered
/// `429 rate_limited` with `Retry-After` and never reaches the store. Health, readiness and the
/// OpenAPI document are not limited. Wrapped inside the authentication middleware, so that the
/// principal is known.
///
/// # Errors
/// [`ApiError::RateLimited`]; an error of the inner service.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::POST {
        if let Some(limiter) = req.app_data::<web::Data<RateLimiter>>() {
            let subject = req
                .extensions()
                .get::<Principal>()
                .map(|p| p.subject.clone());
            let caller = Caller::of(subject.as_deref(), req.peer_addr());
            limiter
                .admit(&caller)
                .map_err(|limited| ApiError::RateLimited {
                    retry_after_secs: limited.retry_after_secs(),
                })?;
        }
    }
    next.call(req).await
}

fn echo(headers: &mut HeaderMap, id: &str) {
    if headers.contains_key(CORRELATION_HEADER) {
        return;
    }
    if let (Ok(name), Ok(value)) = (
        HeaderName::try_from(CORRELATION_HEADER),
        HeaderValue::from_str(id),
    ) {
        headers.insert(name, value);
    }
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
    // A compressed body would read as malformed JSON: say what is wrong instead.
    if let Some(encoding) = header_str(req.headers(), "Content-Encoding")?
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    {
        return Err(ApiError::UnsupportedEncoding(encoding.to_owned()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match service_kit::http_body::timed_out(&e) {
            Some(timeout) => ApiError::BodyTimeout(timeout),
            None => ApiError::InvalidBody(format!("could not read the body: {e}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let content_type = header_str(req.headers(), "Content-Type")?;
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

/// The authenticated caller, as the authentication middleware left it in the request's
/// extensions; none when authentication is disabled.
pub fn principal(req: &HttpRequest) -> Option<Principal> {
    req.extensions().get::<Principal>().cloned()
}

fn context(
    req: &HttpRequest,
    endpoint: &str,
    body: &serde_json::Value,
) -> Result<CommandContext, ApiError> {
    let headers = req.headers();
    let idempotency_key = token_header(headers, IDEMPOTENCY_HEADER)?;
    // An invalid caller id is refused here; the response still echoes the one chosen instead.
    token_header(headers, CORRELATION_HEADER)?;
    let correlation_id = match req.extensions().get::<CorrelationId>() {
        Some(CorrelationId(id)) => id.clone(),
        None => choose_correlation_id(headers),
    };
    Ok(CommandContext {
        if_match: if_match(headers)?,
        request_hash: idempotency_key
            .as_ref()
            .map(|_| request_hash(endpoint, body)),
        idempotency_key,
        correlation_id,
        causation_id: None,
        principal: principal(req),
    })
}

/// The response to a command; `collection` is where a created instance lives (`None` for an
/// action on an existing one).
fn respond(executed: Executed, collection: Option<&str>) -> HttpResponse {
    let Executed { outcome, replayed } = executed;
    let mut response = match collection {
        Some(collection) => {
            let mut r = HttpResponse::Created();
            r.insert_header((header::LOCATION, format!("{collection}/{}", outcome.id)));
            r
        }
        None => HttpResponse::Ok(),
    };
    response.insert_header((header::ETAG, format!("\"{}\"", outcome.revision)));
    response.insert_header((CORRELATION_HEADER, outcome.correlation_id.clone()));
    if replayed {
        response.insert_header((REPLAYED_HEADER, "true"));
    }
    response.json(outcome)
}

/// Counts a command's outcome: `ok`, or the problem's code.
fn counted<W: WorkflowApi>(
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => service_kit::metrics::intern(e.code()),
    };
    crate::metrics::METRICS
        .commands
        .get_or_create(&CommandLabels {
            workflow: W::NAME,
            outcome,
        })
        .inc();
    result
}

/// `POST <collection>`: creates an instance of `W`; `endpoint` names the request in its hash.
pub async fn handle_create<W: WorkflowApi, B: CreateBody<W>>(
    app: web::Data<AppState>,
    req: HttpRequest,
    endpoint: &str,
    scope: Scope,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    counted::<W>(create::<W, B>(app, req, endpoint, scope, payload).await)
}

/// `POST <collection>/{id}/<action>`: one command on an existing instance of `W`.
pub async fn handle_action<W: WorkflowApi, B: CommandBody<W>>(
    app: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    action: &str,
    scope: Scope,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    counted::<W>(act::<W, B>(app, req, id, action, scope, payload).await)
}

async fn create<W: WorkflowApi, B: CreateBody<W>>(
    app: web::Data<AppState>,
    req: HttpRequest,
    endpoint: &str,
    scope: Scope,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    crate::auth::require(&req, scope)?;
    let body = read_body(&req, payload, app.config.body_limit_bytes).await?;
    let (request, value) = parse_json::<B>(&body)?;
    let ctx = context(&req, endpoint, &value)?;
    let fallback =
        service::instance_id_for::<W>(ctx.idempotency_key.as_deref(), ctx.principal.as_ref());
    let (id, command) = request
        .into_command(fallback)
        .map_err(ApiError::Validation)?;
    // On the request's span, so that its logs (a server error's) name the instance.
    tracing::Span::current().record(INSTANCE_FIELD, tracing::field::display(&id));
    let executed = service::execute(app.store.as_ref(), id, command, &ctx).await?;
    Ok(respond(executed, Some(W::COLLECTION)))
}

async fn act<W: WorkflowApi, B: CommandBody<W>>(
    app: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    action: &str,
    scope: Scope,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    crate::auth::require(&req, scope)?;
    tracing::Span::current().record(INSTANCE_FIELD, id.as_str());
    let id =
        W::parse_id(&id).map_err(|e| ApiError::NotFound(format!("no such {}: {e}", W::NAME)))?;
    let body = read_body(&req, payload, app.config.body_limit_bytes).await?;
    let (request, value) = parse_json::<B>(&body)?;
    let ctx = context(&req, action, &value)?;
    let command = request.into_command(id).map_err(ApiError::Validation)?;
    let executed = service::execute(app.store.as_ref(), id, command, &ctx).await?;
    Ok(respond(executed, None))
}

//! Who may read what. Every request's bearer token is checked once, on the way in
//! ([`authenticate`]); a websocket's caller comes from its `connection_init` payload
//! (`{"Authorization": "Bearer <token>"}`) or, failing that, from the upgrade request's header.
//! Each root field names the scope it needs with [`Needs`]; a customer's reads are narrowed to
//! their own orders and returns in the SQL of the read-model queries ([`visible`]).

use crate::db::workflow::Visible;
use crate::error::QueryError;
use crate::startup::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use async_graphql::{Context, ErrorExtensions, Guard};
use event_store::Principal;
use service_kit::auth::{http, AuthError, Authenticator, Caller, Scope};
use std::sync::Arc;

/// Checks the request's bearer token and keeps the outcome; a valid caller is also put in the
/// request's extensions as an [`event_store::Principal`] (and a [`Caller`]).
///
/// # Errors
/// An error of the inner service.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(app) = req.app_data::<web::Data<AppState>>() {
        if let Some(caller) = http::check(&app.auth, &req).await {
            req.extensions_mut().insert(Principal {
                subject: caller.subject.clone(),
                role: caller.role_name().to_owned(),
                client: caller.client,
            });
        }
    }
    next.call(req).await
}

/// A root field's guard: the caller's role must have the scope.
pub struct Needs(pub Scope);

impl Guard for Needs {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        caller(ctx)?
            .require(self.0)
            .map_err(|e| QueryError::from(Arc::new(e)).extend())
    }
}

/// The caller of the request (or of the websocket) being answered.
fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Caller, async_graphql::Error> {
    ctx.data_opt::<Caller>()
        .ok_or_else(|| QueryError::from(Arc::new(AuthError::Missing)).extend())
}

/// What the caller may see of the read models: a customer only their own orders and returns.
///
/// # Errors
/// No caller (a request that was not authenticated).
pub fn visible(ctx: &Context<'_>) -> Result<Visible, QueryError> {
    let caller = ctx
        .data_opt::<Caller>()
        .ok_or_else(|| QueryError::from(Arc::new(AuthError::Missing)))?;
    Ok(caller
        .customer_id
        .clone()
        .map_or(Visible::All, Visible::Customer))
}

/// The caller of a websocket: from `connection_init`'s `Authorization` (or `authorization`)
/// entry when it has one, else from the upgrade request.
///
/// # Errors
/// No token in either place, or one that does not verify.
pub async fn websocket_caller(
    auth: &Authenticator,
    upgrade: Result<Caller, Arc<AuthError>>,
    payload: &serde_json::Value,
) -> Result<Caller, Arc<AuthError>> {
    let header = ["Authorization", "authorization"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(serde_json::Value::as_str));
    match header {
        Some(value) => auth
            .authenticate(Some(value))
            .await
            .and_then(|caller| caller.ok_or(AuthError::Missing))
            .map_err(Arc::new),
        None => upgrade,
    }
}

/// The answer to a request refused before any field: 401 (`UNAUTHENTICATED`, with
/// `WWW-Authenticate: Bearer`) or 403 (`FORBIDDEN`).
pub fn refusal(e: Arc<AuthError>) -> HttpResponse {
    let error = QueryError::from(e);
    let status = match error {
        QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut response = crate::http::error_response(status, error.code(), &error.to_string());
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

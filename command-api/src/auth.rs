//! Who may send which command. Every request's bearer token is checked once, on the way in
//! ([`authenticate`]); each route names the scope it needs where
//! [`crate::routes::command_routes!`] declares it, and its handler asks [`require`] before
//! reading the body, so a refused request writes nothing. No token or a bad one is 401, a role
//! without the scope 403, both as problem+json. Routes that need no scope (health, the OpenAPI
//! document) never ask.

use crate::error::ApiError;
use crate::startup::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use event_store::Principal;
use service_kit::auth::{http, Caller, Scope};
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
            req.extensions_mut().insert(principal(&caller));
        }
    }
    next.call(req).await
}

/// The principal recorded for what `caller` does.
pub fn principal(caller: &Caller) -> Principal {
    Principal {
        subject: caller.subject.clone(),
        role: caller.role_name().to_owned(),
        client: caller.client.clone(),
    }
}

/// The request's caller, when it may use `scope`.
///
/// # Errors
/// [`ApiError::Unauthenticated`] without a valid token, [`ApiError::Forbidden`] when the
/// caller's role lacks `scope`.
pub fn require(req: &HttpRequest, scope: Scope) -> Result<Caller, ApiError> {
    let caller = http::caller(req)?;
    caller.require(scope).map_err(Arc::new)?;
    Ok(caller)
}

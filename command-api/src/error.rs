//! The API's one error type. Every error renders as RFC 9457 `application/problem+json` with a
//! stable `code`; unexpected ones are logged once with their cause and shown as a bare 500.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use domain::{DomainError, ErrorKind};
use event_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field: where it is (e.g. `lines[2].quantity`) and what is wrong.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`, `illegal_transition`.
    pub code: String,
    /// Per-field messages, for `validation_failed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{} field(s) are invalid", .0.len())]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    InvalidHeader(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Domain(DomainError),
    #[error("the order is at {actual}, not at revision {expected} given in If-Match; nothing was written")]
    PreconditionFailed { expected: u64, actual: String },
    #[error("the order changed concurrently {0} times while this command was decided; retry")]
    Contention(u32),
    #[error("Idempotency-Key '{0}' was already used for a different request on this order")]
    IdempotencyKeyReused(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Validation(_) => "validation_failed",
            Self::InvalidHeader(_) => "invalid_header",
            Self::NotFound(_) => "not_found",
            Self::Domain(e) => e.code(),
            Self::PreconditionFailed { .. } => "precondition_failed",
            Self::Contention(_) => "concurrent_modification",
            Self::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Unavailable(_) => "event_store_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "Malformed JSON",
            Self::InvalidBody(_) => "Invalid request body",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::PayloadTooLarge(_) => "Request body too large",
            Self::Validation(_) => "Validation failed",
            Self::InvalidHeader(_) => "Invalid header",
            Self::NotFound(_) => "Not found",
            Self::Domain(e) => match e.kind() {
                ErrorKind::NotFound => "Order not found",
                ErrorKind::Conflict => "Not allowed in the order's current state",
                ErrorKind::Invalid => "Command contradicts the order",
            },
            Self::PreconditionFailed { .. } => "Revision mismatch",
            Self::Contention(_) => "Concurrent modification",
            Self::IdempotencyKeyReused(_) => "Idempotency key reused",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::Unavailable(_) => "Event store unavailable",
            Self::Internal(_) => "Internal server error",
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self::Domain(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(msg) => Self::Unavailable(msg),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::InvalidBody(_) | Self::InvalidHeader(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) | Self::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Domain(e) => match e.kind() {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::Contention(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            Self::Internal(cause) => {
                tracing::error!(cause = %cause, "unexpected error");
                "an unexpected error occurred; it has been logged".to_owned()
            }
            Self::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "event store unavailable");
                "the event store cannot be reached; retry later".to_owned()
            }
            other => other.to_string(),
        };
        let code = self.code();
        let problem = Problem {
            kind: format!("https://milestone.dev/problems/{}", code.replace('_', "-")),
            title: self.title().to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            errors: match self {
                Self::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if matches!(self, Self::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

//! The API's one error type. Every error renders as RFC 9457 `application/problem+json` with a
//! stable `code`; unexpected ones are logged once with their cause and shown as a bare 500.

use crate::workflow::{Refusal, RefusalKind, WorkflowApi};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use domain::DecodeError;
use event_store::StoreError;
use serde::Serialize;
use service_kit::auth::AuthError;
use std::sync::Arc;
use utoipa::ToSchema;

/// Why a stored event of a workflow instance cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableEvent {
    /// The store could not decode it (data or metadata another tool wrote).
    #[error("the stored event is malformed: {0}")]
    Malformed(String),
    /// The domain does not understand it.
    #[error(transparent)]
    Decode(DecodeError),
}

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
    /// The body came compressed (`Content-Encoding`), which the API does not take.
    #[error("request body is {0}-encoded (Content-Encoding); send it uncompressed")]
    UnsupportedEncoding(String),
    /// The body did not arrive in full in time ([`service_kit::http_body::BODY_TIMEOUT`]).
    #[error("the request body did not arrive in full within {} s; nothing was written", .0.as_secs())]
    BodyTimeout(std::time::Duration),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{} field(s) are invalid", .0.len())]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    InvalidHeader(String),
    #[error("{0}")]
    NotFound(String),
    /// The instance's stream was deleted from the event store (KurrentDB): it takes no more
    /// commands, and retrying cannot change that.
    #[error("{0} was deleted from the event store; it takes no more commands")]
    StreamDeleted(String),
    /// The workflow refused the command; built by [`ApiError::refused`].
    #[error("{source}")]
    Refused {
        code: &'static str,
        kind: RefusalKind,
        /// The workflow's title for refusals of this kind.
        title: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the {subject} is at {actual}, not at revision {expected} given in If-Match; nothing was written")]
    PreconditionFailed {
        subject: &'static str,
        expected: u64,
        actual: String,
    },
    #[error(
        "the {subject} changed concurrently {attempts} times while this command was decided; retry"
    )]
    Contention {
        subject: &'static str,
        attempts: u32,
    },
    #[error("Idempotency-Key '{key}' was already used for a different request on this {subject}")]
    IdempotencyKeyReused { subject: &'static str, key: String },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// An event in an instance's stream cannot be decoded (written by another tool, or by a
    /// version of the service that is not deployed): no command can be decided on the instance
    /// until an operator repairs or upcasts it. Nothing was written.
    #[error("{subject} {instance} cannot be read at revision {revision}")]
    HistoryUnreadable {
        subject: &'static str,
        code: &'static str,
        instance: String,
        stream: String,
        revision: u64,
        #[source]
        source: Box<UnreadableEvent>,
    },
    /// A record of the idempotency bookkeeping cannot be read back.
    #[error("idempotency record {stream} cannot be read at revision {revision}")]
    KeyRecordUnreadable {
        stream: String,
        revision: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The refusal an earlier request with the same idempotency key was given, as it was
    /// rendered then.
    #[error("the refusal given to an earlier request with this idempotency key")]
    Replayed {
        status: StatusCode,
        code: String,
        /// The original problem+json body, byte for byte.
        problem: String,
    },
    /// The caller sent more requests than its rate limit allows; it may retry after
    /// `retry_after_secs`. Nothing was done.
    #[error("too many requests: retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// No bearer token, or one that does not verify.
    #[error("{0}")]
    Unauthenticated(#[source] Arc<AuthError>),
    /// A valid caller whose role does not allow the command.
    #[error("{0}")]
    Forbidden(#[source] Arc<AuthError>),
    #[error("internal error")]
    Internal(String),
}

impl From<Arc<AuthError>> for ApiError {
    fn from(e: Arc<AuthError>) -> Self {
        if e.is_forbidden() {
            Self::Forbidden(e)
        } else {
            Self::Unauthenticated(e)
        }
    }
}

impl ApiError {
    /// The answer to a command workflow `W` refused.
    pub fn refused<W: WorkflowApi>(refusal: W::Error) -> Self {
        Self::Refused {
            code: refusal.code(),
            kind: refusal.kind(),
            title: W::refusal_title(refusal.kind()),
            source: Box::new(refusal),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::UnsupportedMediaType | Self::UnsupportedEncoding(_) => "unsupported_media_type",
            Self::BodyTimeout(_) => "request_timeout",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Validation(_) => "validation_failed",
            Self::InvalidHeader(_) => "invalid_header",
            Self::NotFound(_) => "not_found",
            Self::StreamDeleted(_) => "stream_deleted",
            Self::Refused { code, .. } => code,
            Self::PreconditionFailed { .. } => "precondition_failed",
            Self::Contention { .. } => "concurrent_modification",
            Self::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Unavailable(_) => "event_store_unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::HistoryUnreadable { code, .. } => code,
            Self::Replayed { code, .. } => code,
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::KeyRecordUnreadable { .. } | Self::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> String {
        match self {
            Self::MalformedJson(_) => "Malformed JSON",
            Self::InvalidBody(_) => "Invalid request body",
            Self::UnsupportedMediaType | Self::UnsupportedEncoding(_) => "Unsupported media type",
            Self::BodyTimeout(_) => "Request body timed out",
            Self::PayloadTooLarge(_) => "Request body too large",
            Self::Validation(_) => "Validation failed",
            Self::InvalidHeader(_) => "Invalid header",
            Self::NotFound(_) => "Not found",
            Self::StreamDeleted(_) => "Deleted",
            Self::Refused { title, .. } => title,
            Self::PreconditionFailed { .. } => "Revision mismatch",
            Self::Contention { .. } => "Concurrent modification",
            Self::IdempotencyKeyReused { .. } => "Idempotency key reused",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::Unavailable(_) => "Event store unavailable",
            Self::RateLimited { .. } => "Too many requests",
            Self::HistoryUnreadable { subject, .. } => {
                return format!("{} history unreadable", capitalized(subject))
            }
            Self::Replayed { .. } => "Replayed refusal",
            Self::Unauthenticated(_) => "Unauthenticated",
            Self::Forbidden(_) => "Forbidden",
            Self::KeyRecordUnreadable { .. } | Self::Internal(_) => "Internal server error",
        }
        .to_owned()
    }

    /// What the client is told; causes the client cannot act on stay in the log.
    fn detail(&self) -> String {
        match self {
            Self::KeyRecordUnreadable { .. } | Self::Internal(_) => {
                "an unexpected error occurred; it has been logged".to_owned()
            }
            Self::Unavailable(_) => "the event store cannot be reached; retry later".to_owned(),
            Self::HistoryUnreadable {
                subject,
                instance,
                revision,
                ..
            } => format!(
                "contact an operator: {subject} {instance} cannot be read at revision {revision}, \
                 so no command can be decided on it until the event is repaired; nothing was written"
            ),
            other => other.to_string(),
        }
    }

    /// The RFC 9457 body this error is answered with. A replayed refusal is its stored body.
    pub fn problem_body(&self) -> String {
        if let Self::Replayed { problem, .. } = self {
            return problem.clone();
        }
        let code = self.code();
        let problem = Problem {
            kind: format!("https://milestone.dev/problems/{}", code.replace('_', "-")),
            title: self.title(),
            status: self.status_code().as_u16(),
            detail: self.detail(),
            code: code.to_owned(),
            errors: match self {
                Self::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
        };
        serde_json::to_string(&problem).unwrap_or_default()
    }
}

/// `subject` with its first letter in upper case.
fn capitalized(subject: &str) -> String {
    let mut chars = subject.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(msg) => Self::Unavailable(msg),
            StoreError::StreamDeleted(stream) => Self::StreamDeleted(stream),
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
            Self::UnsupportedMediaType | Self::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) | Self::IdempotencyKeyReused { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::StreamDeleted(_) => StatusCode::GONE,
            Self::Refused { kind, .. } => match kind {
                RefusalKind::NotFound => StatusCode::NOT_FOUND,
                RefusalKind::Conflict => StatusCode::CONFLICT,
                RefusalKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::Contention { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::HistoryUnreadable { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Replayed { status, .. } => *status,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::KeyRecordUnreadable { .. } | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => tracing::error!(cause = %cause, "unexpected error"),
            Self::KeyRecordUnreadable {
                stream, revision, ..
            } => tracing::error!(
                stream,
                revision,
                cause = %service_kit::error_chain(self),
                "unexpected error"
            ),
            Self::Unavailable(cause) => tracing::warn!(cause = %cause, "event store unavailable"),
            Self::HistoryUnreadable {
                subject,
                stream,
                revision,
                ..
            } => tracing::error!(
                subject,
                stream,
                revision,
                cause = %service_kit::error_chain(self),
                "a stream holds an event that cannot be decoded"
            ),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        match self {
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            Self::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Replayed { .. } => {
                response.insert_header((crate::http::REPLAYED_HEADER, "true"));
            }
            Self::Unauthenticated(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.body(self.problem_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_stream_is_410_stream_deleted_not_a_race_to_retry() {
        let e = ApiError::from(StoreError::StreamDeleted("order-1".to_owned()));
        assert_eq!(e.status_code(), StatusCode::GONE);
        assert_eq!(e.code(), "stream_deleted");
        assert!(!StoreError::StreamDeleted("order-1".to_owned()).is_conflict());
    }
}

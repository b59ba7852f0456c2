//! What a query can fail with, each with a stable `extensions.code`.

use crate::db::DbError;
use async_graphql::{ErrorExtensionValues, ErrorExtensions, ServerError};
use service_kit::auth::AuthError;
use std::sync::Arc;

/// A query's failure. The message is for people; clients branch on [`QueryError::code`].
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// An argument the API cannot use, named by its path (e.g. `filter.placedFrom`).
    #[error("{argument} {problem}")]
    BadArgument {
        argument: &'static str,
        problem: &'static str,
    },
    #[error("'{0}' is not an order id (a UUID)")]
    NotAnOrderId(String),
    #[error("'{name}' is not a projection; there are: {known}")]
    UnknownProjection { name: String, known: String },
    #[error("first must be at least 1")]
    PageSizeTooSmall,
    #[error("first must be at most {max}")]
    PageSizeTooLarge { max: i32 },
    #[error("the query is nested {depth} deep, more than the limit of {max}")]
    TooDeep { depth: usize, max: usize },
    #[error("the query's complexity is {complexity}, more than the limit of {max}; ask for fewer or smaller pages")]
    TooComplex { complexity: usize, max: usize },
    #[error("the read models are unavailable; retry later")]
    ReadModelUnavailable(#[source] Arc<DbError>),
    #[error("the read models hold data this API cannot read")]
    ReadModelInvalid(#[source] Arc<DbError>),
    #[error("internal error")]
    Internal(#[source] Arc<DbError>),
    #[error("'{0}' is not a consistency token; pass the token of a command response or of an update, e.g. 812-3")]
    BadToken(String),
    #[error("at most {max} subscriptions per connection")]
    TooManySubscriptions { max: usize },
    #[error("the subscriber fell too far behind; subscribe again from the token in extensions.resumeFrom")]
    SubscriberTooSlow { resume_from: Option<String> },
    #[error(
        "{0} is not served inside a subscription's updates; query it, with the update's token"
    )]
    NotInSubscription(&'static str),
    #[error("{0} is not parked: no projection holds dead-lettered events of it")]
    NotParked(uuid::Uuid),
    #[error("the parked events still cannot be applied: {0}")]
    StillFailing(#[source] projector::ProjectorError),
    #[error("the retry could not be carried out; retry later")]
    RepairFailed(#[source] projector::ProjectorError),
    #[error("subscriptions are served over a websocket on /graphql (graphql-transport-ws or graphql-ws)")]
    SubscriptionNeedsWebsocket,
    /// No bearer token, or one that does not verify.
    #[error("{0}")]
    Unauthenticated(#[source] Arc<AuthError>),
    /// A valid caller whose role does not allow the field.
    #[error("{0}")]
    Forbidden(#[source] Arc<AuthError>),
}

impl From<Arc<AuthError>> for QueryError {
    fn from(e: Arc<AuthError>) -> Self {
        if e.is_forbidden() {
            Self::Forbidden(e)
        } else {
            Self::Unauthenticated(e)
        }
    }
}

impl QueryError {
    /// The stable `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadArgument { .. }
            | Self::NotAnOrderId(_)
            | Self::UnknownProjection { .. }
            | Self::PageSizeTooSmall => "BAD_USER_INPUT",
            Self::PageSizeTooLarge { .. } => "PAGE_SIZE_TOO_LARGE",
            Self::TooDeep { .. } => "QUERY_TOO_DEEP",
            Self::TooComplex { .. } => "QUERY_TOO_COMPLEX",
            Self::ReadModelUnavailable(_) => "READ_MODEL_UNAVAILABLE",
            Self::ReadModelInvalid(_) => "READ_MODEL_INVALID",
            Self::Internal(_) => "INTERNAL",
            Self::BadToken(_) => "INVALID_CONSISTENCY_TOKEN",
            Self::TooManySubscriptions { .. } => "TOO_MANY_SUBSCRIPTIONS",
            Self::SubscriberTooSlow { .. } => "SUBSCRIBER_TOO_SLOW",
            Self::NotInSubscription(_) => "NOT_IN_SUBSCRIPTION",
            Self::SubscriptionNeedsWebsocket => "SUBSCRIPTION_NEEDS_WEBSOCKET",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotParked(_) => "NOT_PARKED",
            Self::StillFailing(_) => "STILL_FAILING",
            Self::RepairFailed(_) => "REPAIR_FAILED",
        }
    }

    /// The error as a response entry outside any field (a request-level refusal).
    pub fn into_server_error(self) -> ServerError {
        let mut error = ServerError::new(self.to_string(), None);
        error.extensions = Some(extension_values(self.code()));
        error
    }
}

/// Extensions holding only `code`.
pub fn extension_values(code: &str) -> ErrorExtensionValues {
    let mut values = ErrorExtensionValues::default();
    values.set("code", code);
    values
}

impl From<DbError> for QueryError {
    fn from(e: DbError) -> Self {
        Self::from(Arc::new(e))
    }
}

impl From<Arc<DbError>> for QueryError {
    /// Logs the failure with its causes: the response carries only its code.
    fn from(e: Arc<DbError>) -> Self {
        let chain = error_chain(e.as_ref());
        if e.is_unavailable() {
            tracing::warn!(cause = %chain, "read models unavailable");
            Self::ReadModelUnavailable(e)
        } else if e.is_invalid_data() {
            tracing::error!(cause = %chain, "read model holds unreadable data");
            Self::ReadModelInvalid(e)
        } else {
            tracing::error!(cause = %chain, "read-model query failed");
            Self::Internal(e)
        }
    }
}

impl From<projector::ProjectorError> for QueryError {
    /// A retry's failure; one the operator cannot act on is logged with its causes.
    fn from(e: projector::ProjectorError) -> Self {
        match e {
            projector::ProjectorError::NotParked(id) => Self::NotParked(id),
            e @ projector::ProjectorError::StillFailing { .. } => Self::StillFailing(e),
            e => {
                tracing::error!(cause = %error_chain(&e), "retrying a parked instance failed");
                Self::RepairFailed(e)
            }
        }
    }
}

impl From<crate::live::LiveError> for QueryError {
    fn from(e: crate::live::LiveError) -> Self {
        match e {
            crate::live::LiveError::TooSlow { resume_from } => {
                Self::SubscriberTooSlow { resume_from }
            }
            crate::live::LiveError::Read(e) => Self::from(e),
        }
    }
}

impl ErrorExtensions for QueryError {
    fn extend(&self) -> async_graphql::Error {
        let code = self.code();
        let resume_from = match self {
            Self::SubscriberTooSlow { resume_from } => Some(resume_from.clone()),
            _ => None,
        };
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| {
            e.set("code", code);
            if let Some(token) = resume_from {
                e.set("resumeFrom", token);
            }
        })
    }
}

pub use service_kit::error_chain;

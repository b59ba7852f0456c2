//! What a query can fail with, each with a stable `extensions.code`.

use crate::db::DbError;
use async_graphql::{ErrorExtensionValues, ErrorExtensions, ServerError};
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
    #[error("Query is nested too deep.")]
    TooDeep,
    #[error("Query is too complex.")]
    TooComplex,
    #[error("the read models are unavailable; retry later")]
    ReadModelUnavailable(#[source] Arc<DbError>),
    #[error("the read models hold data this API cannot read")]
    ReadModelInvalid(#[source] Arc<DbError>),
    #[error("internal error")]
    Internal(#[source] Arc<DbError>),
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
            Self::TooDeep => "QUERY_TOO_DEEP",
            Self::TooComplex => "QUERY_TOO_COMPLEX",
            Self::ReadModelUnavailable(_) => "READ_MODEL_UNAVAILABLE",
            Self::ReadModelInvalid(_) => "READ_MODEL_INVALID",
            Self::Internal(_) => "INTERNAL",
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

impl ErrorExtensions for QueryError {
    fn extend(&self) -> async_graphql::Error {
        let code = self.code();
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| e.set("code", code))
    }
}

/// `error: cause: cause's cause...`, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

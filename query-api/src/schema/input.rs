//! Arguments checked before they reach the database: each refusal names its argument.

use crate::error::QueryError;
use async_graphql::ID;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The earliest moment PostgreSQL stores (4714-11-24 BC); the latest is beyond what chrono
/// represents.
const EARLIEST_STORABLE_SECS: i64 = -210_866_803_200;

/// A moment the read models can be asked about.
pub(super) fn storable(at: &DateTime<Utc>) -> bool {
    at.timestamp() >= EARLIEST_STORABLE_SECS
}

/// A moment given as `argument`, refused when the read models cannot hold it.
pub(super) fn moment(
    argument: &'static str,
    at: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, QueryError> {
    match at {
        Some(t) if !storable(&t) => Err(QueryError::BadArgument {
            argument,
            problem: "is before the earliest supported moment (4714-11-24 BC)",
        }),
        other => Ok(other),
    }
}

/// Text given as `argument`, refused when it holds a character PostgreSQL cannot store.
pub(super) fn text(
    argument: &'static str,
    value: Option<String>,
) -> Result<Option<String>, QueryError> {
    match value {
        Some(v) if v.contains('\0') => Err(QueryError::BadArgument {
            argument,
            problem: "must not contain a NUL character",
        }),
        other => Ok(other),
    }
}

/// An order id.
pub(super) fn order_id(id: &ID) -> Result<Uuid, QueryError> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| QueryError::NotAnOrderId(id.as_str().chars().take(40).collect()))
}

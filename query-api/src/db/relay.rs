//! The relays' bookkeeping, kept by the relay in the read-model database: each relay's
//! checkpoint, messages published and dead letters.

use super::{column, DbError};
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;

/// One relay's row.
#[derive(Debug, Clone)]
pub struct RelayRow {
    pub name: String,
    pub stream_prefix: String,
    /// The log position of the last event whose messages JetStream acknowledged.
    pub checkpoint: Option<String>,
    pub messages_published: i64,
    pub dead_letters: i64,
    pub updated_at: DateTime<Utc>,
}

/// Every relay that has run against this database, by name; none before the first has.
pub async fn relays(client: &ClientWrapper) -> Result<Vec<RelayRow>, DbError> {
    let exists = client
        .query_one(
            "select to_regclass('relay_checkpoints') is not null as exists",
            &[],
        )
        .await?;
    if !column::<bool>(&exists, "exists")? {
        return Ok(Vec::new());
    }
    let stmt = client
        .prepare_cached(
            "select relay, stream_prefix, position, messages_published, dead_letters, updated_at
             from relay_checkpoints order by relay",
        )
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(RelayRow {
                name: column(r, "relay")?,
                stream_prefix: column(r, "stream_prefix")?,
                checkpoint: column(r, "position")?,
                messages_published: column(r, "messages_published")?,
                dead_letters: column(r, "dead_letters")?,
                updated_at: column(r, "updated_at")?,
            })
        })
        .collect()
}

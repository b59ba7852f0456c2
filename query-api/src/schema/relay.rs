//! `relayStatus`: where each relay publishing to NATS JetStream stands.

use super::read_models;
use crate::auth::Needs;
use crate::db::relay as db;
use crate::error::{error_chain, QueryError};
use crate::log::EventLog;
use async_graphql::{Context, Object, ResultExt, SimpleObject};
use chrono::{DateTime, Utc};
use service_kit::auth::Scope;

/// Where a relay stands.
#[derive(Debug, Clone, SimpleObject)]
pub struct RelayStatus {
    /// The relay's name, e.g. `relay-order`.
    pub name: String,
    /// The log position of the last event whose messages JetStream acknowledged.
    pub checkpoint: Option<String>,
    pub messages_published: i64,
    /// Messages JetStream refused for good (published to `milestone.relay.dead-letter.<relay>`).
    pub dead_letters: i64,
    pub updated_at: DateTime<Utc>,
    /// Events in the log not yet published (null while the event store cannot be reached).
    pub lag_events: Option<i64>,
    /// Age of the oldest event not yet published, in seconds (0 when caught up).
    pub lag_seconds: Option<f64>,
}

#[derive(Default)]
pub struct RelayQueries;

#[Object]
impl RelayQueries {
    /// Every relay that has run: its checkpoint, lag and dead letters.
    #[graphql(guard = "Needs(Scope::ReadOperations)")]
    async fn relay_status(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RelayStatus>> {
        let rows = async { Ok::<_, QueryError>(db::relays(read_models(ctx).await?).await?) }
            .await
            .extend()?;
        let log = ctx.data_unchecked::<EventLog>();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let checkpoint = row.checkpoint.as_deref().and_then(|p| p.parse().ok());
            let lag = log
                .lag_of(&row.stream_prefix, checkpoint)
                .await
                .inspect_err(
                    |e| tracing::warn!(cause = %error_chain(e), "cannot measure the relay's lag"),
                )
                .ok();
            out.push(RelayStatus {
                name: row.name,
                checkpoint: row.checkpoint,
                messages_published: row.messages_published,
                dead_letters: row.dead_letters,
                updated_at: row.updated_at,
                lag_events: lag.map(|(events, _)| events),
                lag_seconds: lag.map(|(_, seconds)| seconds),
            });
        }
        Ok(out)
    }
}

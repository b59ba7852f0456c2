//! The relay's tables in the read-model database: one checkpoint row per stream of work
//! (`relay_checkpoints`, moved only under the lease's fencing token) and the dead letters.

use event_store::Position;
use service_kit::lease::fenced;
use tokio_postgres::GenericClient;

/// The relay's migrations, applied in order and recorded in `relay_migrations`.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_relay",
    "create table relay_checkpoints (
        relay text primary key,
        stream_prefix text not null,
        backend text,
        position text,
        messages_published bigint not null default 0,
        dead_letters bigint not null default 0,
        updated_at timestamptz not null default now()
    );
    create table relay_dead_letters (
        id bigserial primary key,
        relay text not null,
        event_id uuid not null,
        stream_id text not null,
        revision bigint not null,
        subject text not null,
        message_id text not null,
        reason text not null,
        recorded_at timestamptz not null default now()
    );",
)];

/// A message JetStream refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub event_id: uuid::Uuid,
    pub stream_id: String,
    pub revision: u64,
    pub subject: String,
    pub message_id: String,
    pub reason: String,
}

/// Creates the relay's checkpoint row if it is missing; `stream_prefix` names the streams it
/// follows (so that its lag can be measured).
pub async fn ensure_checkpoint(
    client: &impl GenericClient,
    relay: &str,
    stream_prefix: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "insert into relay_checkpoints (relay, stream_prefix) values ($1, $2) on conflict do nothing",
            &[&relay, &stream_prefix],
        )
        .await
        .map(|_| ())
}

/// The checkpoint and the backend it was written for.
pub async fn load_checkpoint(
    client: &impl GenericClient,
    relay: &str,
) -> Result<(Option<String>, Option<String>), tokio_postgres::Error> {
    let row = client
        .query_one(
            "select backend, position from relay_checkpoints where relay = $1",
            &[&relay],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Moves the checkpoint to `position` and records the batch's counts and dead letters, all in
/// one transaction, only while `token` is the lease's. False (nothing written) when it is not.
pub async fn advance(
    client: &mut deadpool_postgres::Object,
    relay: &str,
    token: i64,
    backend: &str,
    position: Position,
    published: i64,
    dead_letters: &[DeadLetter],
) -> Result<bool, tokio_postgres::Error> {
    let sql = fenced(
        "update relay_checkpoints set backend = $3, position = $4,
            messages_published = messages_published + $5, dead_letters = dead_letters + $6,
            updated_at = now()
         where relay = $1",
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &relay,
        &token,
        &backend,
        &position.to_string(),
        &published,
        &(dead_letters.len() as i64),
    ];
    if dead_letters.is_empty() {
        // The usual batch: one statement, one round trip.
        let stmt = client.prepare_cached(&sql).await?;
        return Ok(client.execute(&stmt, &params).await? == 1);
    }
    let tx = client.transaction().await?;
    if tx.execute(&sql, &params).await? != 1 {
        return Ok(false);
    }
    for d in dead_letters {
        tx.execute(
            "insert into relay_dead_letters (relay, event_id, stream_id, revision, subject, message_id, reason)
             values ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &relay,
                &d.event_id,
                &d.stream_id,
                &(d.revision as i64),
                &d.subject,
                &d.message_id,
                &d.reason,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

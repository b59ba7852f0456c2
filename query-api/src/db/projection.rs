//! The projection's bookkeeping: its checkpoint, dead letters and parked streams.

use super::{column, DbError};
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use event_store::Position;
use projector::Descriptor;
use std::collections::HashMap;
use tokio_postgres::Row;

fn position(row: &Row) -> Result<Option<Position>, DbError> {
    let commit: Option<i64> = column(row, "position_commit")?;
    let prepare: Option<i64> = column(row, "position_prepare")?;
    Ok(commit
        .zip(prepare)
        .map(|(c, p)| Position::new(c as u64, p as u64)))
}

/// A projection's checkpoint and how many times it was rebuilt (a rebuild moves it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub rebuilds: i64,
    pub position: Option<Position>,
}

/// The checkpoints of `projections`, in one statement; a projection that has none yet has the
/// default. A projection run as partitions stands where its slowest partition does
/// (`projection_progress`).
#[tracing::instrument(name = "read_model.checkpoints", skip_all)]
pub async fn load_checkpoints(
    client: &ClientWrapper,
    projections: &[&str],
) -> Result<HashMap<String, Checkpoint>, DbError> {
    let stmt = client
        .prepare_cached(
            "select projection, position_commit, position_prepare, rebuilds
               from projection_progress where projection = any($1)",
        )
        .await?;
    client
        .query(&stmt, &[&projections])
        .await?
        .iter()
        .map(|row| {
            Ok((
                column(row, "projection")?,
                Checkpoint {
                    rebuilds: column(row, "rebuilds")?,
                    position: position(row)?,
                },
            ))
        })
        .collect()
}

/// Where a projection stands, as its own tables say.
#[derive(Debug, Clone, Default)]
pub struct ProjectionRow {
    /// The log position of the last applied event.
    pub checkpoint: Option<Position>,
    pub events_applied: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub dead_letters: i64,
    pub parked_streams: i64,
}

/// The projection's checkpoint and troubles; across its partitions when it runs as several
/// (the slowest partition's checkpoint, the events all of them applied).
#[tracing::instrument(name = "read_model.projection_status", skip_all, fields(projection = %projection))]
pub async fn projection_status(
    client: &ClientWrapper,
    projection: &str,
) -> Result<ProjectionRow, DbError> {
    let stmt = client
        .prepare_cached(
            "select position_commit, position_prepare, events_applied, updated_at
             from projection_progress where projection = $1",
        )
        .await?;
    let mut status = match client.query_opt(&stmt, &[&projection]).await? {
        Some(r) => ProjectionRow {
            checkpoint: position(&r)?,
            events_applied: column(&r, "events_applied")?,
            updated_at: column(&r, "updated_at")?,
            ..ProjectionRow::default()
        },
        None => ProjectionRow::default(),
    };
    let stmt = client
        .prepare_cached(
            "select (select count(*) from projection_dead_letters where projection = $1) as dead_letters,
                    (select count(*) from projection_parked_streams where projection = $1) as parked_streams",
        )
        .await?;
    let counts = client.query_one(&stmt, &[&projection]).await?;
    status.dead_letters = column(&counts, "dead_letters")?;
    status.parked_streams = column(&counts, "parked_streams")?;
    Ok(status)
}

/// The instances whose event at `position` a projection dead-lettered: it parked them, so their
/// rows stop before that event.
#[tracing::instrument(name = "read_model.parked_at", skip_all, fields(position = %position))]
pub async fn parked_at(client: &ClientWrapper, position: Position) -> Result<Vec<String>, DbError> {
    let stmt = client
        .prepare_cached(
            "select distinct stream_id from projection_dead_letters where position = $1 order by stream_id",
        )
        .await?;
    client
        .query(&stmt, &[&position.to_string()])
        .await?
        .iter()
        .map(|r| {
            let stream: String = column(r, "stream_id")?;
            Ok(Descriptor::following(&stream)
                .map_or_else(|| stream.clone(), |(_, id)| id.to_owned()))
        })
        .collect()
}

/// An instance a projection parked, as its own tables say.
#[derive(Debug, Clone)]
pub struct ParkedRow {
    /// The instance's id (its stream's name without the projection's prefix).
    pub id: String,
    /// Why its first dead-lettered event could not be applied.
    pub reason: String,
    pub parked_at: DateTime<Utc>,
    /// Its events kept apart, waiting for a retry.
    pub dead_letters: i64,
}

/// The instances `projection` parked, the longest parked first, at most `limit`.
pub async fn parked_instances(
    client: &ClientWrapper,
    projection: &str,
    limit: i64,
) -> Result<Vec<ParkedRow>, DbError> {
    let stmt = client
        .prepare_cached(
            "select p.stream_id, p.reason, p.parked_at,
                    (select count(*) from projection_dead_letters d
                      where d.projection = p.projection and d.stream_id = p.stream_id) as dead_letters
               from projection_parked_streams p
              where p.projection = $1
              order by p.parked_at, p.stream_id
              limit $2",
        )
        .await?;
    client
        .query(&stmt, &[&projection, &limit])
        .await?
        .iter()
        .map(|r| {
            let stream: String = column(r, "stream_id")?;
            Ok(ParkedRow {
                id: Descriptor::following(&stream)
                    .map_or_else(|| stream.clone(), |(_, id)| id.to_owned()),
                reason: column(r, "reason")?,
                parked_at: column(r, "parked_at")?,
                dead_letters: column(r, "dead_letters")?,
            })
        })
        .collect()
}

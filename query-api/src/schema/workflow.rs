//! What every workflow's queries share, over [`crate::db::workflow`]: timelines through a
//! DataLoader, a page of a filtered list, the stalled instances and the counts per status. Each
//! workflow's module keeps its own GraphQL types and filters.

use super::paging::{decode_cursor, encode_cursor, page_size, PageInfo};
use super::workflow_read_models;
use crate::db::workflow::{self as db, ReadModels, TimelineRecord, Visible};
use crate::db::{DbError, Snapshot};
use crate::error::QueryError;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::Context;
use domain::Label;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use uuid::Uuid;

/// Loads the timelines of every instance of `W` in a response with one query, from its
/// snapshot.
pub struct TimelineLoader<W> {
    /// The request's snapshot the timelines are read through.
    snapshot: Arc<Snapshot>,
    /// What the caller may see.
    visible: Visible,
    /// Whose timeline table: each workflow's loader is a type of its own in a request's data.
    workflow: PhantomData<fn() -> W>,
}

impl<W> TimelineLoader<W> {
    pub(super) fn new(snapshot: Arc<Snapshot>, visible: Visible) -> Self {
        Self {
            snapshot,
            visible,
            workflow: PhantomData,
        }
    }
}

impl<W: ReadModels> Loader<Uuid> for TimelineLoader<W> {
    type Value = Vec<TimelineRecord>;
    type Error = Arc<DbError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let client = self.snapshot.client_for::<W>().await.map_err(Arc::new)?;
        db::timelines::<W>(client, keys, &self.visible)
            .await
            .map_err(Arc::new)
    }
}

/// The timeline of the instance `id` through the request's DataLoader (batched with the
/// others).
pub(super) async fn load_timeline<W: ReadModels>(
    ctx: &Context<'_>,
    id: Uuid,
) -> Result<Vec<TimelineRecord>, QueryError> {
    let loader = ctx
        .data_opt::<DataLoader<TimelineLoader<W>>>()
        .ok_or(QueryError::NotInSubscription("timeline"))?;
    Ok(loader.load_one(id).await?.unwrap_or_default())
}

/// A page of `W`'s instances, newest first: each with its cursor, and where the page ends.
///
/// # Errors
/// A bad `first` or `after`, a bad filter (checked by `filter`, after them), or a failed read.
pub(super) async fn page<W: ReadModels>(
    ctx: &Context<'_>,
    filter: impl FnOnce() -> Result<W::Filter, QueryError>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<(Vec<(String, W::Record)>, PageInfo), QueryError> {
    let limit = page_size(ctx, first)?;
    let after = after.as_deref().map(decode_cursor).transpose()?;
    let filter = filter()?;
    let visible = crate::auth::visible(ctx)?;
    let client = workflow_read_models::<W>(ctx).await?;
    let mut rows = db::list::<W>(client, &filter, &visible, after, limit + 1).await?;
    let has_next_page = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let items: Vec<(String, W::Record)> = rows
        .into_iter()
        .map(|r| {
            let (at, id) = W::position(&r);
            (encode_cursor(at, id), r)
        })
        .collect();
    let end_cursor = items.last().map(|(cursor, _)| cursor.clone());
    Ok((
        items,
        PageInfo {
            has_next_page,
            end_cursor,
        },
    ))
}

/// At most `first` of `W`'s instances past their deadline, the longest overdue first.
///
/// # Errors
/// A bad `first`, or a failed read.
pub(super) async fn stalled<W: ReadModels>(
    ctx: &Context<'_>,
    first: Option<i32>,
) -> Result<Vec<W::Record>, QueryError> {
    let limit = page_size(ctx, first)?;
    Ok(db::stalled::<W>(workflow_read_models::<W>(ctx).await?, limit).await?)
}

/// How many of `W`'s instances are in each status, every status listed (kept by the projector,
/// not counted on read).
///
/// # Errors
/// A failed read.
pub(super) async fn status_counts<W: ReadModels>(
    ctx: &Context<'_>,
) -> Result<Vec<(W::Status, i64)>, QueryError> {
    let counts = db::status_counts::<W>(workflow_read_models::<W>(ctx).await?).await?;
    Ok(<W::Status as Label>::ALL
        .iter()
        .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
        .collect())
}

//! Paging: `first`/`after` arguments, opaque cursors, the page-size cap and what a page costs
//! in the complexity limit.

use crate::error::QueryError;
use async_graphql::{Context, SimpleObject};
use base64::Engine;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};
use uuid::Uuid;

/// The page-size cap, in the schema's data.
pub(super) struct PageCap(pub i32);

/// `first` when a query leaves it out.
const DEFAULT_PAGE_SIZE: i32 = 20;

/// The page-size cap as the complexity hooks see it. They are plain functions that cannot
/// reach the schema's data, so [`record_cap`] keeps it here (the largest of the schemas built
/// in this process, so a page never costs less than any of their caps).
static PAGE_COST_CAP: AtomicUsize = AtomicUsize::new(0);

/// The most one field can cost: far above any useful limit, yet the sum over every field a
/// request can hold stays far from overflowing.
const MAX_FIELD_COST: usize = u32::MAX as usize;

/// Records a schema's page-size cap for [`page_cost`].
pub(super) fn record_cap(max_page_size: i32) {
    PAGE_COST_CAP.fetch_max(
        usize::try_from(max_page_size).unwrap_or(0),
        Ordering::Relaxed,
    );
}

/// What a page of `first` items costs in the complexity limit: `first` times one item. A
/// `first` outside 1..=cap costs a full page: it is refused when resolved, so it must not let
/// its siblings through as cheaper than they are, nor overflow.
pub(super) fn page_cost(first: Option<i32>, item: usize) -> usize {
    let cap = PAGE_COST_CAP.load(Ordering::Relaxed);
    let items = usize::try_from(first.unwrap_or(DEFAULT_PAGE_SIZE))
        .ok()
        .filter(|n| (1..=cap).contains(n))
        .unwrap_or(cap);
    items.saturating_mul(item).min(MAX_FIELD_COST)
}

/// How many items a page of `first` holds.
///
/// # Errors
/// Below 1, or above the cap.
pub(super) fn page_size(ctx: &Context<'_>, first: Option<i32>) -> Result<i64, QueryError> {
    let max = ctx.data_unchecked::<PageCap>().0;
    match first.unwrap_or(DEFAULT_PAGE_SIZE) {
        n if n < 1 => Err(QueryError::PageSizeTooSmall),
        n if n > max => Err(QueryError::PageSizeTooLarge { max }),
        n => Ok(i64::from(n)),
    }
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// The cursor of an item at (`at`, `id`) in a newest-first list.
pub(super) fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", at.timestamp_micros()))
}

/// The position an `after` cursor stands for.
///
/// # Errors
/// Not a cursor this API handed out.
pub(super) fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), QueryError> {
    parse_cursor(cursor).ok_or(QueryError::BadArgument {
        argument: "after",
        problem: "is not a cursor from this API",
    })
}

fn parse_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (micros, id) = text.split_once('|')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?).filter(super::input::storable)?,
        Uuid::parse_str(id).ok()?,
    ))
}

//! What every workflow's subscriptions share, over [`crate::live`]: the process's live updates
//! and the connection's budget of subscriptions (both in the websocket's connection data), the
//! `after` token, and the mapping of updates and their end into GraphQL items.

use crate::error::QueryError;
use crate::live::{Live, LiveError};
use async_graphql::{Context, ErrorExtensions};
use event_store::Position;
use futures::{Stream, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many subscriptions one websocket may hold open.
pub struct SubscriptionBudget {
    open: Arc<AtomicUsize>,
    max: usize,
}

impl SubscriptionBudget {
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::default(),
            max,
        }
    }

    /// A place for one more subscription, or `None` when every one is taken.
    fn take(&self) -> Option<Seat> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Seat(Arc::clone(&self.open)))
    }
}

/// One subscription's place in its connection's budget, given back when the subscription ends.
pub struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The live updates and a seat for one more subscription on this connection.
///
/// # Errors
/// The connection's subscriptions are all taken, or the request did not come over a websocket.
pub(super) fn start<'a>(ctx: &Context<'a>) -> Result<(&'a Live, Seat), QueryError> {
    let (Some(live), Some(budget)) = (ctx.data_opt::<Live>(), ctx.data_opt::<SubscriptionBudget>())
    else {
        return Err(QueryError::SubscriptionNeedsWebsocket);
    };
    let seat = budget
        .take()
        .ok_or(QueryError::TooManySubscriptions { max: budget.max })?;
    Ok((live, seat))
}

/// The `after` argument: the consistency token of the last state the client saw.
///
/// # Errors
/// When it is not a log position.
pub(super) fn after(token: Option<String>) -> Result<Option<Position>, QueryError> {
    token
        .map(|t| t.trim().parse().map_err(|_| QueryError::BadToken(t)))
        .transpose()
}

/// The subscription's items as GraphQL sees them: each update made into `U`, the end (falling
/// too far behind, a failed read) an error with its code.
pub(super) fn items<T, U>(
    updates: impl Stream<Item = Result<T, LiveError>> + Send + 'static,
    into: impl Fn(T) -> U + Send + Sync + 'static,
) -> impl Stream<Item = async_graphql::Result<U>> + Send + 'static {
    updates.map(move |update| update.map(&into).map_err(|e| QueryError::from(e).extend()))
}

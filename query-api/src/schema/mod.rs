//! The GraphQL schema, split by area and merged: [`orders`] (the order workflow's queries),
//! [`returns`] (the returns workflow's queries), [`workflow`] (what every workflow's queries
//! share: timelines, paging of a filtered list, stalled instances, counts),
//! [`projection`] (projection status, parked instances and their repair), [`relay`] (relay status), [`paging`] (cursors, `first`/`after`, the page cap),
//! [`input`] (argument checks) and [`limits`] (depth and complexity). Errors are
//! [`crate::error::QueryError`]s with a stable `extensions.code`. Built once; each request
//! reads through its own snapshot.

mod input;
mod limits;
pub mod live;
mod order;
pub mod orders;
mod paging;
pub mod projection;
pub mod relay;
pub mod returns;
pub mod workflow;

use crate::config::Config;
use crate::db::orders::Orders;
use crate::db::returns::Returns;
use crate::db::workflow::Visible;
use crate::db::Snapshot;
use crate::error::QueryError;
use crate::log::EventLog;
use crate::repair::Repairs;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, MergedObject, MergedSubscription, Schema};
use deadpool_postgres::ClientWrapper;
use service_kit::auth::Caller;
use std::sync::Arc;

pub use orders::{Order, OrderStatus};
pub use projection::{ProjectionStatus, PROJECTION};
pub use returns::{Return, ReturnLoader, ReturnStatus};
pub use workflow::TimelineLoader;

pub type MilestoneSchema = Schema<Query, Mutation, Subscription>;

// Every query, by area.
#[derive(MergedObject, Default)]
pub struct Query(
    orders::OrderQueries,
    returns::ReturnQueries,
    projection::ProjectionQueries,
    relay::RelayQueries,
);

// Every mutation, by area: the API only reads, but for repairs.
#[derive(MergedObject, Default)]
pub struct Mutation(projection::ProjectionMutations);

// Every subscription, by area: served over a websocket on `/graphql`.
#[derive(MergedSubscription, Default)]
pub struct Subscription(orders::OrderSubscriptions, returns::ReturnSubscriptions);

/// Builds the schema with its limits. Each request brings its own data: see [`for_request`].
pub fn build_schema(config: &Config) -> MilestoneSchema {
    paging::record_cap(config.max_page_size);
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(paging::PageCap(config.max_page_size))
    .data(Repairs::new(config.projector.clone()))
    .data(EventLog::new(config.event_store_url.expose()))
    .extension(limits::QueryLimits {
        max_depth: config.max_depth,
        max_complexity: config.max_complexity,
    })
    .extension(order::FieldOrder)
    .finish()
}

/// Gives a request what its resolvers read through: its caller, its snapshot of the read
/// models, and the DataLoaders batching timelines and return cases out of it (only what the
/// caller may see).
pub fn for_request(
    request: async_graphql::Request,
    caller: Caller,
    snapshot: &Arc<Snapshot>,
) -> async_graphql::Request {
    let visible = caller
        .customer_id
        .clone()
        .map_or(Visible::All, Visible::Customer);
    request
        .data(caller)
        .data(Arc::clone(snapshot))
        .data(DataLoader::new(
            TimelineLoader::<Orders>::new(Arc::clone(snapshot), visible.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            ReturnLoader(Arc::clone(snapshot), visible.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            TimelineLoader::<Returns>::new(Arc::clone(snapshot), visible),
            tokio::spawn,
        ))
}

/// The request's snapshot of the read models, its transaction begun on first use.
///
/// # Errors
/// A failed read, or a field of a subscription's update (which has no snapshot).
async fn read_models<'a>(ctx: &Context<'a>) -> Result<&'a ClientWrapper, QueryError> {
    Ok(snapshot(ctx)?.client().await?)
}

/// The request's snapshot, holding a share lock on `W`'s read models (see [`Snapshot`]).
///
/// # Errors
/// As [`read_models`].
async fn workflow_read_models<'a, W: crate::db::workflow::ReadModels>(
    ctx: &Context<'a>,
) -> Result<&'a ClientWrapper, QueryError> {
    Ok(snapshot(ctx)?.client_for::<W>().await?)
}

fn snapshot<'a>(ctx: &Context<'a>) -> Result<&'a Arc<Snapshot>, QueryError> {
    ctx.data_opt::<Arc<Snapshot>>()
        .ok_or(QueryError::NotInSubscription(
            "a field that reads the read models",
        ))
}

//! The GraphQL schema, split by area and merged: [`orders`] (the order workflow's queries),
//! [`returns`] (the returns workflow's queries), [`workflow`] (what every workflow's queries
//! share: timelines, paging of a filtered list, stalled instances, counts),
//! [`projection`] (projection status), [`relay`] (relay status), [`paging`] (cursors, `first`/`after`, the page cap),
//! [`input`] (argument checks) and [`limits`] (depth and complexity). Errors are
//! [`crate::error::QueryError`]s with a stable `extensions.code`. Built once; each request
//! reads through its own snapshot.

mod input;
mod limits;
pub mod orders;
mod paging;
pub mod projection;
pub mod relay;
pub mod returns;
pub mod workflow;

use crate::config::Config;
use crate::db::orders::Orders;
use crate::db::returns::Returns;
use crate::db::{DbError, Snapshot};
use crate::log::EventLog;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, EmptyMutation, EmptySubscription, MergedObject, Schema};
use deadpool_postgres::ClientWrapper;
use std::sync::Arc;

pub use orders::{Order, OrderStatus};
pub use projection::{ProjectionStatus, PROJECTION};
pub use returns::{Return, ReturnLoader, ReturnStatus};
pub use workflow::TimelineLoader;

pub type MilestoneSchema = Schema<Query, EmptyMutation, EmptySubscription>;

// Every query, by area.
#[derive(MergedObject, Default)]
pub struct Query(
    orders::OrderQueries,
    returns::ReturnQueries,
    projection::ProjectionQueries,
    relay::RelayQueries,
);

/// Builds the schema with its limits. Each request brings its own data: see [`for_request`].
pub fn build_schema(config: &Config) -> MilestoneSchema {
    paging::record_cap(config.max_page_size);
    Schema::build(Query::default(), EmptyMutation, EmptySubscription)
        .data(paging::PageCap(config.max_page_size))
        .data(EventLog::new(config.event_store_url.expose()))
        .extension(limits::QueryLimits {
            max_depth: config.max_depth,
            max_complexity: config.max_complexity,
        })
        .finish()
}

/// Gives a request what its resolvers read through: its snapshot of the read models, and the
/// DataLoaders batching timelines and return cases out of it.
pub fn for_request(
    request: async_graphql::Request,
    snapshot: &Arc<Snapshot>,
) -> async_graphql::Request {
    request
        .data(Arc::clone(snapshot))
        .data(DataLoader::new(
            TimelineLoader::<Orders>::new(Arc::clone(snapshot)),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            ReturnLoader(Arc::clone(snapshot)),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            TimelineLoader::<Returns>::new(Arc::clone(snapshot)),
            tokio::spawn,
        ))
}

/// The request's snapshot of the read models, its transaction begun on first use.
async fn read_models<'a>(ctx: &Context<'a>) -> Result<&'a ClientWrapper, DbError> {
    ctx.data_unchecked::<Arc<Snapshot>>().client().await
}

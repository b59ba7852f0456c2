//! The returns workflow's queries: `return`, `returns`, `stalledReturns` and
//! `returnStatusCounts`, plus `Order.return`, over the `return_status`, `return_timeline` and
//! `return_status_counts` read models. Return cases go through a DataLoader, so a page of
//! orders reads their returns in one query; timelines, paging, stalled returns and counts are
//! [`super::workflow`]'s, shared with every workflow.

use super::input;
use super::live as subscribing;
use super::paging::{page_cost, page_size, PageInfo};
use super::workflow::{self as shared, load_timeline};
use crate::auth::Needs;
use crate::db::returns::{self as db, ReturnMilestones, ReturnRecord, Returns};
use crate::db::workflow::{records_by_ids, ReadModels, TimelineRecord, Visible};
use crate::db::{DbError, Snapshot};
use crate::error::QueryError;
use crate::live;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{
    Context, Enum, InputObject, Object, ResultExt, SimpleObject, Subscription, ID,
};
use chrono::{DateTime, Utc};
use futures::Stream;
use service_kit::auth::Scope;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

// The domain's return status (`domain::ReturnStatus`) as a GraphQL enum.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::ReturnStatus", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum ReturnStatus {
    Requested,
    Approved,
    Received,
    Refunded,
    Rejected,
    Cancelled,
}

// What a return waits for next (`domain::ReturnAction`).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::ReturnAction", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum ReturnAction {
    DecideReturn,
    ReceiveItems,
    IssueRefund,
    ShipItemsBack,
}

// What a return owes once cancelled (`domain::ReturnCompensation`).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(
    remote = "domain::ReturnCompensation",
    rename_items = "SCREAMING_SNAKE_CASE"
)]
pub enum ReturnCompensation {
    ShipItemsBack,
}

/// One line of a return.
#[derive(SimpleObject, Clone)]
pub struct ReturnLine {
    pub sku: String,
    /// Units asked to be returned.
    pub quantity: i32,
    /// Minor units (cents) of the return's currency, the order's unit price.
    pub unit_price_minor: i64,
    /// What returning the line refunds if accepted, in minor units.
    pub refund_minor: i64,
    /// Units accepted at inspection; null until the items are received.
    pub accepted_quantity: Option<i32>,
    /// Units refused at inspection; null until the items are received.
    pub refused_quantity: Option<i32>,
}

/// Loads the return cases of every order in a response with one query, from its snapshot:
/// only those the caller may see.
pub struct ReturnLoader(pub(super) Arc<Snapshot>, pub(super) Visible);

impl Loader<Uuid> for ReturnLoader {
    type Value = ReturnRecord;
    type Error = Arc<DbError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let client = self.0.client_for::<Returns>().await.map_err(Arc::new)?;
        let records = records_by_ids::<Returns>(client, keys, &self.1)
            .await
            .map_err(Arc::new)?;
        Ok(records.into_iter().map(|r| (r.order_id, r)).collect())
    }
}

/// The return case of the order `order_id` through the request's DataLoader, or `None` when
/// the projection has seen none.
pub(super) async fn of_order(
    ctx: &Context<'_>,
    order_id: Uuid,
) -> Result<Option<Return>, QueryError> {
    let loader = ctx
        .data_opt::<DataLoader<ReturnLoader>>()
        .ok_or(QueryError::NotInSubscription("return"))?;
    Ok(loader.load_one(order_id).await?.map(Return))
}

/// A return case as the projection last saw it: one per order, named by its order's id.
pub struct Return(pub ReturnRecord);

#[Object]
impl Return {
    /// The id of the order the items come from (a return case is named by it).
    async fn order_id(&self) -> ID {
        ID(self.0.order_id.to_string())
    }
    async fn status(&self) -> ReturnStatus {
        self.0.status.into()
    }
    /// ISO 4217 code of every amount of the return.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// Why the customer returns the items.
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    async fn lines(&self) -> Vec<ReturnLine> {
        let quantity = |l: &serde_json::Value, k: &str| l[k].as_i64().map(|q| q as i32);
        self.0
            .lines
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .map(|l| {
                        let units = l["quantity"].as_i64().unwrap_or_default();
                        let price = l["unit_price_minor"].as_i64().unwrap_or_default();
                        ReturnLine {
                            sku: l["sku"].as_str().unwrap_or_default().to_owned(),
                            quantity: units as i32,
                            unit_price_minor: price,
                            refund_minor: units * price,
                            accepted_quantity: quantity(l, "accepted_quantity"),
                            refused_quantity: quantity(l, "refused_quantity"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    async fn line_count(&self) -> i32 {
        self.0.line_count
    }
    /// What the return refunds if every requested line is accepted, in minor units of
    /// `currency`.
    async fn refund_due_minor(&self) -> i64 {
        self.0.refund_due_minor
    }
    /// What the lines accepted at inspection refund, in minor units of `currency`; null until
    /// the items are received.
    async fn refund_accepted_minor(&self) -> Option<i64> {
        self.0.refund_accepted_minor
    }
    /// What has been refunded, in minor units of `currency`.
    async fn refunded_minor(&self) -> i64 {
        self.0.refunded_minor
    }
    /// The payment service's id of the refund, once issued.
    async fn refund_id(&self) -> Option<&str> {
        self.0.refund_id.as_deref()
    }
    /// The return merchandise authorization number, once approved.
    async fn rma_number(&self) -> Option<&str> {
        self.0.rma_number.as_deref()
    }
    /// The event type of the latest milestone, e.g. `ReturnApproved`.
    async fn last_milestone(&self) -> &str {
        &self.0.progress.last_milestone
    }
    async fn last_milestone_at(&self) -> DateTime<Utc> {
        self.0.progress.last_milestone_at
    }
    /// What the workflow waits for next.
    async fn pending_actions(&self) -> Vec<ReturnAction> {
        self.0
            .progress
            .pending_actions
            .iter()
            .map(|&a| a.into())
            .collect()
    }
    /// Why the return did not go through (rejected or cancelled).
    async fn failure_reason(&self) -> Option<&str> {
        self.0.progress.failure_reason.as_deref()
    }
    /// Compensations owed and not yet done.
    async fn compensations_owed(&self) -> Vec<ReturnCompensation> {
        self.0
            .progress
            .compensations_owed
            .iter()
            .map(|&c| c.into())
            .collect()
    }
    async fn compensations_done(&self) -> Vec<ReturnCompensation> {
        self.0
            .progress
            .compensations_done
            .iter()
            .map(|&c| c.into())
            .collect()
    }
    async fn milestones(&self) -> &ReturnMilestones {
        &self.0.milestones
    }
    /// When the step the return waits for is due; null when it waits for nothing.
    async fn deadline_at(&self) -> Option<DateTime<Utc>> {
        self.0.progress.deadline_at
    }
    /// The deadline has passed.
    async fn overdue(&self) -> bool {
        self.0.progress.overdue
    }
    async fn escalated(&self) -> bool {
        self.0.progress.escalation_count > 0
    }
    async fn escalation_count(&self) -> i32 {
        self.0.progress.escalation_count
    }
    async fn escalation_reason(&self) -> Option<&str> {
        self.0.progress.escalation_reason.as_deref()
    }
    /// Reminders recorded for the return's most reminded pending action since it became
    /// pending (its work request was sent this many times more than once).
    async fn reminder_attempts(&self) -> i32 {
        self.0.progress.reminder_attempts
    }
    /// When the last reminder was recorded; null before any.
    async fn last_reminder_at(&self) -> Option<DateTime<Utc>> {
        self.0.progress.last_reminder_at
    }
    /// When the reconciler next chases the return: its next reminder, or its escalation once
    /// the reminders went unanswered; null when it waits for nothing or its current step was
    /// escalated.
    async fn next_reminder_at(&self) -> Option<DateTime<Utc>> {
        self.0.progress.next_reminder_at
    }
    async fn correlation_id(&self) -> Option<&str> {
        self.0.progress.correlation_id.as_deref()
    }
    /// The return stream's revision the read model reflects.
    async fn revision(&self) -> i64 {
        self.0.progress.stream_revision
    }
    /// The log position of the last applied event.
    async fn last_position(&self) -> &str {
        &self.0.progress.last_position
    }
    /// Every event of the return, oldest first.
    #[graphql(complexity = "child_complexity.saturating_mul(10)")]
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TimelineRecord>> {
        load_timeline::<Returns>(ctx, self.0.order_id)
            .await
            .extend()
    }
}

#[derive(InputObject, Default)]
pub struct ReturnFilter {
    pub status: Option<ReturnStatus>,
    /// Requested at or after.
    pub requested_from: Option<DateTime<Utc>>,
    /// Requested before.
    pub requested_to: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct ReturnEdge {
    pub cursor: String,
    pub node: Return,
}

/// A page of return cases, newest first (Relay connection).
#[derive(SimpleObject)]
pub struct ReturnConnection {
    pub edges: Vec<ReturnEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct ReturnStatusCount {
    pub status: ReturnStatus,
    pub returns: i64,
}

/// The filter of a list of return cases, checked.
fn read_filter(filter: Option<ReturnFilter>) -> Result<db::ReturnFilter, QueryError> {
    let filter = filter.unwrap_or_default();
    Ok(db::ReturnFilter {
        status: filter.status.map(domain::ReturnStatus::from),
        requested_from: input::moment("filter.requestedFrom", filter.requested_from)?,
        requested_to: input::moment("filter.requestedTo", filter.requested_to)?,
    })
}

/// Queries about return cases.
#[derive(Default)]
pub struct ReturnQueries;

impl ReturnQueries {
    async fn page_of_returns(
        ctx: &Context<'_>,
        filter: Option<ReturnFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ReturnConnection, QueryError> {
        let (items, page_info) =
            shared::page::<Returns>(ctx, || read_filter(filter), first, after).await?;
        Ok(ReturnConnection {
            edges: items
                .into_iter()
                .map(|(cursor, r)| ReturnEdge {
                    cursor,
                    node: Return(r),
                })
                .collect(),
            page_info,
        })
    }
}

#[Object]
impl ReturnQueries {
    /// The return case of an order, or null when the projection has seen none.
    #[graphql(guard = "Needs(Scope::Read)", name = "return")]
    async fn return_of(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> async_graphql::Result<Option<Return>> {
        async { of_order(ctx, input::order_id(&order_id)?).await }
            .await
            .extend()
    }

    /// Return cases, newest request first, filtered; `first` at most the page-size cap,
    /// `after` a cursor from a previous page.
    #[graphql(
        guard = "Needs(Scope::Read)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn returns(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReturnFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ReturnConnection> {
        Self::page_of_returns(ctx, filter, first, after)
            .await
            .extend()
    }

    /// Return cases past their deadline, the longest overdue first.
    #[graphql(
        guard = "Needs(Scope::ReadOperations)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn stalled_returns(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Return>> {
        let rows = shared::stalled::<Returns>(ctx, first).await.extend()?;
        Ok(rows.into_iter().map(Return).collect())
    }

    /// How many return cases are in each status (kept by the projector, not counted on read).
    #[graphql(guard = "Needs(Scope::ReadOperations)")]
    async fn return_status_counts(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<ReturnStatusCount>> {
        let counts = shared::status_counts::<Returns>(ctx).await.extend()?;
        Ok(counts
            .into_iter()
            .map(|(status, returns)| ReturnStatusCount {
                status: status.into(),
                returns,
            })
            .collect())
    }
}

/// A return case's update: every event applied since the previous update (or since `after`),
/// oldest first, and the return case as they left it.
#[derive(SimpleObject)]
pub struct ReturnUpdate {
    /// The log position of the last event here: pass it as `after` to resume from here.
    pub token: String,
    #[graphql(name = "return")]
    pub return_case: Return,
    /// Each event once, in the return case's own order; several when one batch applied
    /// several.
    pub events: Vec<TimelineRecord>,
}

/// A return case of a list that changed.
#[derive(SimpleObject)]
pub struct ReturnChange {
    /// The log position of the return case's last applied event: pass it as `after` to
    /// resume.
    pub token: String,
    #[graphql(name = "return")]
    pub return_case: Return,
}

/// Subscriptions to return cases, over a websocket on `/graphql`.
#[derive(Default)]
pub struct ReturnSubscriptions;

#[Subscription]
impl ReturnSubscriptions {
    /// Every change of one order's return case: with `after` (a consistency token), first
    /// every event after it, then each new one; without, from now on.
    #[graphql(guard = "Needs(Scope::Read)")]
    async fn return_updated(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ReturnUpdate>>> {
        let (live, seat) = subscribing::start(ctx).extend()?;
        let id = input::order_id(&order_id).extend()?;
        let after = subscribing::after(after).extend()?;
        let visible = crate::auth::visible(ctx).extend()?;
        let updates = live::instance_updates::<Returns, _>(live, seat, id, visible, after);
        Ok(subscribing::items(updates, |u| ReturnUpdate {
            token: u.token().to_owned(),
            return_case: Return(u.record),
            events: u.events,
        }))
    }

    /// Each return case matching `filter` (the filter of `returns`) whose last applied event
    /// moves past the subscriber's position, in log order: with `after`, first those past it.
    #[graphql(guard = "Needs(Scope::Read)")]
    async fn returns_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReturnFilter>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ReturnChange>>> {
        let (live, seat) = subscribing::start(ctx).extend()?;
        let filter = read_filter(filter).extend()?;
        let after = subscribing::after(after).extend()?;
        let visible = crate::auth::visible(ctx).extend()?;
        let changes = live::list_changes::<Returns, _>(live, seat, filter, visible, after);
        Ok(subscribing::items(changes, |record| ReturnChange {
            token: Returns::progress(&record).2.to_owned(),
            return_case: Return(record),
        }))
    }

    /// How many return cases are in each status: now, then whenever a count changes.
    #[graphql(guard = "Needs(Scope::ReadOperations)")]
    async fn return_status_counts_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Vec<ReturnStatusCount>>>>
    {
        let (live, seat) = subscribing::start(ctx).extend()?;
        let counts = live::status_counts::<Returns, _>(live, seat);
        Ok(subscribing::items(counts, |counts| {
            counts
                .into_iter()
                .map(|(status, returns)| ReturnStatusCount {
                    status: status.into(),
                    returns,
                })
                .collect()
        }))
    }

    /// Return cases past their deadline, the longest overdue first: now, then whenever the
    /// list or one of them changes.
    #[graphql(guard = "Needs(Scope::ReadOperations)")]
    async fn stalled_returns_changed(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Vec<Return>>>> {
        let (live, seat) = subscribing::start(ctx).extend()?;
        let limit = page_size(ctx, first).extend()?;
        let stalled = live::stalled::<Returns, _>(live, seat, limit);
        Ok(subscribing::items(stalled, |rows| {
            rows.into_iter().map(Return).collect()
        }))
    }
}

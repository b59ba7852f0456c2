//! The order workflow's queries: `order`, `orderTimeline`, `orders`, `stalledOrders` and
//! `statusCounts`, over the `order_status`, `order_timeline` and `order_status_counts` read
//! models; timelines, paging, stalled orders and counts are [`super::workflow`]'s, shared with
//! every workflow.

use super::input;
use super::live as subscribing;
use super::paging::{page_cost, page_size, PageInfo};
use super::returns::Return;
use super::workflow::{self as shared, load_timeline};
use super::workflow_read_models;
use crate::auth::Needs;
use crate::db::orders::{self as db, Milestones, OrderRecord, Orders};
use crate::db::workflow::{record_by_id, ReadModels, TimelineRecord};
use crate::error::QueryError;
use crate::live;
use async_graphql::{
    Context, Enum, InputObject, Object, ResultExt, SimpleObject, Subscription, ID,
};
use chrono::{DateTime, Utc};
use domain::Label;
use futures::Stream;
use service_kit::auth::Scope;

// The domain's order status (`domain::Status`) as a GraphQL enum.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::Status", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Placed,
    Accepted,
    InFulfillment,
    Shipped,
    Delivered,
    Rejected,
    Cancelled,
}

/// One line of an order.
#[derive(SimpleObject, Clone)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    /// Minor units (cents) of the order's currency.
    pub unit_price_minor: i64,
    pub total_minor: i64,
}

#[derive(SimpleObject, Clone)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// The wire forms of `labels`.
fn wire<L: Label>(labels: &[L]) -> Vec<&'static str> {
    labels.iter().map(Label::as_str).collect()
}

/// An order's status as the projection last saw it.
pub struct Order(pub OrderRecord);

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.order_id.to_string())
    }
    async fn status(&self) -> OrderStatus {
        self.0.status.into()
    }
    async fn customer_id(&self) -> &str {
        &self.0.customer_id
    }
    /// ISO 4217 code.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// Minor units (cents).
    async fn total_minor(&self) -> i64 {
        self.0.total_minor
    }
    async fn lines(&self) -> Vec<OrderLine> {
        self.0
            .lines
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .map(|l| {
                        let quantity = l["quantity"].as_i64().unwrap_or_default();
                        let price = l["unit_price_minor"].as_i64().unwrap_or_default();
                        OrderLine {
                            sku: l["sku"].as_str().unwrap_or_default().to_owned(),
                            quantity: quantity as i32,
                            unit_price_minor: price,
                            total_minor: quantity * price,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    async fn shipping_address(&self) -> ShippingAddress {
        let a = &self.0.shipping_address;
        let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
        ShippingAddress {
            name: text("name"),
            line1: text("line1"),
            line2: a["line2"].as_str().map(str::to_owned),
            city: text("city"),
            postal_code: text("postal_code"),
            country: text("country"),
        }
    }
    /// The event type of the latest milestone, e.g. `OrderShipped`.
    async fn last_milestone(&self) -> &str {
        &self.0.progress.last_milestone
    }
    async fn last_milestone_at(&self) -> DateTime<Utc> {
        self.0.progress.last_milestone_at
    }
    /// What the workflow waits for next: AUTHORIZE_PAYMENT, RESERVE_INVENTORY,
    /// START_FULFILLMENT, SHIP, CONFIRM_DELIVERY, VOID_PAYMENT, RELEASE_INVENTORY.
    async fn pending_actions(&self) -> Vec<&'static str> {
        wire(&self.0.progress.pending_actions)
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.progress.failure_reason.as_deref()
    }
    /// Compensations owed and not yet done: VOID_PAYMENT, RELEASE_INVENTORY.
    async fn compensations_owed(&self) -> Vec<&'static str> {
        wire(&self.0.progress.compensations_owed)
    }
    async fn compensations_done(&self) -> Vec<&'static str> {
        wire(&self.0.progress.compensations_done)
    }
    async fn payment_id(&self) -> Option<&str> {
        self.0.payment_id.as_deref()
    }
    async fn reservation_id(&self) -> Option<&str> {
        self.0.reservation_id.as_deref()
    }
    async fn carrier(&self) -> Option<&str> {
        self.0.carrier.as_deref()
    }
    async fn tracking_number(&self) -> Option<&str> {
        self.0.tracking_number.as_deref()
    }
    async fn milestones(&self) -> &Milestones {
        &self.0.milestones
    }
    /// When the step the order waits for is due; null when it waits for nothing.
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
    /// Reminders recorded for the order's most reminded pending action since it became
    /// pending (its work request was sent this many times more than once).
    async fn reminder_attempts(&self) -> i32 {
        self.0.progress.reminder_attempts
    }
    /// When the last reminder was recorded; null before any.
    async fn last_reminder_at(&self) -> Option<DateTime<Utc>> {
        self.0.progress.last_reminder_at
    }
    /// When the reconciler next chases the order: its next reminder, or its escalation once
    /// the reminders went unanswered; null when it waits for nothing or its current step was
    /// escalated.
    async fn next_reminder_at(&self) -> Option<DateTime<Utc>> {
        self.0.progress.next_reminder_at
    }
    async fn correlation_id(&self) -> Option<&str> {
        self.0.progress.correlation_id.as_deref()
    }
    /// The order stream's revision the read model reflects.
    async fn revision(&self) -> i64 {
        self.0.progress.stream_revision
    }
    /// The log position of the last applied event.
    async fn last_position(&self) -> &str {
        &self.0.progress.last_position
    }
    /// Every event of the order, oldest first.
    #[graphql(complexity = "child_complexity.saturating_mul(10)")]
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TimelineRecord>> {
        load_timeline::<Orders>(ctx, self.0.order_id).await.extend()
    }
    /// The order's return case; null when none was requested.
    #[graphql(name = "return")]
    async fn return_case(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Return>> {
        super::returns::of_order(ctx, self.0.order_id)
            .await
            .extend()
    }
}

#[derive(InputObject, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<String>,
    /// Placed at or after.
    pub placed_from: Option<DateTime<Utc>>,
    /// Placed before.
    pub placed_to: Option<DateTime<Utc>>,
    /// Only orders whose deadline has passed (true) or has not (false).
    pub overdue: Option<bool>,
}

#[derive(SimpleObject)]
pub struct OrderEdge {
    pub cursor: String,
    pub node: Order,
}

/// A page of orders, newest first (Relay connection).
#[derive(SimpleObject)]
pub struct OrderConnection {
    pub edges: Vec<OrderEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct StatusCount {
    pub status: OrderStatus,
    pub orders: i64,
}

/// The filter of a list of orders, checked.
fn read_filter(filter: Option<OrderFilter>) -> Result<db::OrderFilter, QueryError> {
    let filter = filter.unwrap_or_default();
    Ok(db::OrderFilter {
        status: filter.status.map(domain::Status::from),
        customer_id: input::text("filter.customerId", filter.customer_id)?,
        placed_from: input::moment("filter.placedFrom", filter.placed_from)?,
        placed_to: input::moment("filter.placedTo", filter.placed_to)?,
        overdue: filter.overdue,
    })
}

/// Queries about orders.
#[derive(Default)]
pub struct OrderQueries;

impl OrderQueries {
    async fn page_of_orders(
        ctx: &Context<'_>,
        filter: Option<OrderFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<OrderConnection, QueryError> {
        let (items, page_info) =
            shared::page::<Orders>(ctx, || read_filter(filter), first, after).await?;
        Ok(OrderConnection {
            edges: items
                .into_iter()
                .map(|(cursor, r)| OrderEdge {
                    cursor,
                    node: Order(r),
                })
                .collect(),
            page_info,
        })
    }
}

#[Object]
impl OrderQueries {
    /// One order, or null when the projection has not seen it.
    #[graphql(guard = "Needs(Scope::Read)")]
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        async {
            let id = input::order_id(&id)?;
            Ok::<_, QueryError>(
                record_by_id::<Orders>(
                    workflow_read_models::<Orders>(ctx).await?,
                    id,
                    &crate::auth::visible(ctx)?,
                )
                .await?
                .map(Order),
            )
        }
        .await
        .extend()
    }

    /// An order's events, oldest first.
    #[graphql(guard = "Needs(Scope::Read)")]
    async fn order_timeline(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Vec<TimelineRecord>> {
        async { load_timeline::<Orders>(ctx, input::order_id(&id)?).await }
            .await
            .extend()
    }

    /// Orders, newest first, filtered; `first` at most the page-size cap, `after` a cursor from
    /// a previous page.
    #[graphql(
        guard = "Needs(Scope::Read)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        Self::page_of_orders(ctx, filter, first, after)
            .await
            .extend()
    }

    /// Orders past their deadline, the longest overdue first.
    #[graphql(
        guard = "Needs(Scope::ReadOperations)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn stalled_orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Order>> {
        let rows = shared::stalled::<Orders>(ctx, first).await.extend()?;
        Ok(rows.into_iter().map(Order).collect())
    }

    /// How many orders are in each status (kept by the projector, not counted on read).
    #[graphql(guard = "Needs(Scope::ReadOperations)")]
    async fn status_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StatusCount>> {
        let counts = shared::status_counts::<Orders>(ctx).await.extend()?;
        Ok(counts
            .into_iter()
            .map(|(status, orders)| StatusCount {
                status: status.into(),
                orders,
            })
            .collect())
    }
}

/// An order's update: every event applied since the previous update (or since `after`), oldest
/// first, and the order as they left it.
#[derive(SimpleObject)]
pub struct OrderUpdate {
    /// The log position of the last event here: pass it as `after` to resume from here.
    pub token: String,
    pub order: Order,
    /// Each event once, in the order's own order; several when one batch applied several.
    pub events: Vec<TimelineRecord>,
}

/// An order of a list that changed.
#[derive(SimpleObject)]
pub struct OrderChange {
    /// The log position of the order's last applied event: pass it as `after` to resume.
    pub token: String,
    pub order: Order,
}

/// Subscriptions to orders, over a websocket on `/graphql`.
#[derive(Default)]
pub struct OrderSubscriptions;

#[Subscription]
impl OrderSubscriptions {
    /// Every change of one order: with `after` (a consistency token, e.g. a command's or an
    /// update's), first every event after it, then each new one; without, from now on.
    #[graphql(guard = "Needs(Scope::Read)")]
    async fn order_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderUpdate>>> {
        let (live, seat) = subscribing::start(ctx).extend()?;
        let id = input::order_id(&id).extend()?;
        let after = subscribing::after(after).extend()?;
        let visible = crate::auth::visible(ctx).extend()?;
        let updates = live::instance_updates::<Orders, _>(live, seat, id, visible, after);
        Ok(subscribing::items(updates, |u| OrderUpdate {
            token: u.token().to_owned(),
            order: Order(u.record),
            events: u.events,
        }))
    }

    /// Each order matching `filter` (the filter of `orders`) whose last applied event moves
    /// past the subscriber's position, in log order: with `after`, first those past it.
    #[graphql(guard = "Needs(Scope::Read)")]
    async fn orders_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilter>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderChange>>> {
        let (live, seat) = subscribing::start(ctx).extend()?;
        let filter = read_filter(filter).extend()?;
        let after = subscribing::after(after).extend()?;
        let visible = crate::auth::visible(ctx).extend()?;
        let changes = live::list_changes::<Orders, _>(live, seat, filter, visible, after);
        Ok(subscribing::items(changes, |record| OrderChange {
            token: Orders::progress(&record).2.to_owned(),
            order: Order(record),
        }))
    }

    /// How many orders are in each status: now, then whenever a count changes.
    #[graphql(guard = "Needs(Scope::ReadOperations)")]
    async fn status_counts_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Vec<StatusCount>>>> {
        let (live, seat) = subscribing::start(ctx).extend()?;
        let counts = live::status_counts::<Orders, _>(live, seat);
        Ok(subscribing::items(counts, |counts| {
            counts
                .into_iter()
                .map(|(status, orders)| StatusCount {
                    status: status.into(),
                    orders,
                })
                .collect()
        }))
    }

    /// Orders past their deadline, the longest overdue first: now, then whenever the list or
    /// one of them changes.
    #[graphql(guard = "Needs(Scope::ReadOperations)")]
    async fn stalled_orders_changed(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Vec<Order>>>> {
        let (live, seat) = subscribing::start(ctx).extend()?;
        let limit = page_size(ctx, first).extend()?;
        let stalled = live::stalled::<Orders, _>(live, seat, limit);
        Ok(subscribing::items(stalled, |rows| {
            rows.into_iter().map(Order).collect()
        }))
    }
}

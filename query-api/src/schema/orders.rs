//! The order workflow's queries: `order`, `orderTimeline`, `orders`, `stalledOrders` and
//! `statusCounts`, over the `order_status`, `order_timeline` and `order_status_counts` read
//! models; timelines go through a DataLoader.

use super::input;
use super::paging::{decode_cursor, encode_cursor, page_cost, page_size, PageInfo};
use super::read_models;
use super::returns::Return;
use crate::db::orders::{self as db, Milestones, OrderRecord, TimelineRecord};
use crate::db::{DbError, Snapshot};
use crate::error::QueryError;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, InputObject, Object, ResultExt, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::Label;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

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

/// Loads the timelines of every order in a response with one query, from its snapshot.
pub struct TimelineLoader(pub(super) Arc<Snapshot>);

impl Loader<Uuid> for TimelineLoader {
    type Value = Vec<TimelineRecord>;
    type Error = Arc<DbError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let client = self.0.client().await.map_err(Arc::new)?;
        db::timelines(client, keys).await.map_err(Arc::new)
    }
}

/// An order's timeline through the request's DataLoader (batched with the others).
async fn load_timeline(ctx: &Context<'_>, id: Uuid) -> Result<Vec<TimelineRecord>, QueryError> {
    let loader = ctx.data_unchecked::<DataLoader<TimelineLoader>>();
    Ok(loader.load_one(id).await?.unwrap_or_default())
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
        &self.0.last_milestone
    }
    async fn last_milestone_at(&self) -> DateTime<Utc> {
        self.0.last_milestone_at
    }
    /// What the workflow waits for next: AUTHORIZE_PAYMENT, RESERVE_INVENTORY,
    /// START_FULFILLMENT, SHIP, CONFIRM_DELIVERY, VOID_PAYMENT, RELEASE_INVENTORY.
    async fn pending_actions(&self) -> Vec<&'static str> {
        wire(&self.0.pending_actions)
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    /// Compensations owed and not yet done: VOID_PAYMENT, RELEASE_INVENTORY.
    async fn compensations_owed(&self) -> Vec<&'static str> {
        wire(&self.0.compensations_owed)
    }
    async fn compensations_done(&self) -> Vec<&'static str> {
        wire(&self.0.compensations_done)
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
        self.0.deadline_at
    }
    /// The deadline has passed.
    async fn overdue(&self) -> bool {
        self.0.overdue
    }
    async fn escalated(&self) -> bool {
        self.0.escalation_count > 0
    }
    async fn escalation_count(&self) -> i32 {
        self.0.escalation_count
    }
    async fn escalation_reason(&self) -> Option<&str> {
        self.0.escalation_reason.as_deref()
    }
    async fn correlation_id(&self) -> Option<&str> {
        self.0.correlation_id.as_deref()
    }
    /// The order stream's revision the read model reflects.
    async fn revision(&self) -> i64 {
        self.0.stream_revision
    }
    /// The log position of the last applied event.
    async fn last_position(&self) -> &str {
        &self.0.last_position
    }
    /// Every event of the order, oldest first.
    #[graphql(complexity = "child_complexity.saturating_mul(10)")]
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TimelineRecord>> {
        load_timeline(ctx, self.0.order_id).await.extend()
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
        let limit = page_size(ctx, first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let filter = filter.unwrap_or_default();
        let query = db::OrderQuery {
            status: filter.status.map(domain::Status::from),
            customer_id: input::text("filter.customerId", filter.customer_id)?,
            placed_from: input::moment("filter.placedFrom", filter.placed_from)?,
            placed_to: input::moment("filter.placedTo", filter.placed_to)?,
            overdue: filter.overdue,
            after,
            limit: limit + 1,
        };
        let mut rows = db::list_orders(read_models(ctx).await?, &query).await?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let edges: Vec<OrderEdge> = rows
            .into_iter()
            .map(|r| OrderEdge {
                cursor: encode_cursor(r.placed_at(), r.order_id),
                node: Order(r),
            })
            .collect();
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(OrderConnection {
            edges,
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }
}

#[Object]
impl OrderQueries {
    /// One order, or null when the projection has not seen it.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        async {
            let id = input::order_id(&id)?;
            Ok::<_, QueryError>(
                db::order_by_id(read_models(ctx).await?, id)
                    .await?
                    .map(Order),
            )
        }
        .await
        .extend()
    }

    /// An order's events, oldest first.
    async fn order_timeline(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Vec<TimelineRecord>> {
        async { load_timeline(ctx, input::order_id(&id)?).await }
            .await
            .extend()
    }

    /// Orders, newest first, filtered; `first` at most the page-size cap, `after` a cursor from
    /// a previous page.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
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
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn stalled_orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Order>> {
        async {
            let limit = page_size(ctx, first)?;
            let rows = db::stalled_orders(read_models(ctx).await?, limit).await?;
            Ok::<_, QueryError>(rows.into_iter().map(Order).collect())
        }
        .await
        .extend()
    }

    /// How many orders are in each status (kept by the projector, not counted on read).
    async fn status_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StatusCount>> {
        async {
            let counts = db::status_counts(read_models(ctx).await?).await?;
            Ok::<_, QueryError>(
                <domain::Status as Label>::ALL
                    .iter()
                    .map(|s| StatusCount {
                        status: (*s).into(),
                        orders: counts.get(s).copied().unwrap_or(0),
                    })
                    .collect(),
            )
        }
        .await
        .extend()
    }
}

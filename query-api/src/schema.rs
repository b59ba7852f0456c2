//! The GraphQL schema: types over the read models, resolvers split by area and merged, a
//! DataLoader for timelines. Built once from a pool.

use crate::config::Config;
use crate::db::{self, DbError, OrderRecord, ProjectionRecord, TimelineRecord};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, ErrorExtensions, InputObject, MergedObject,
    Object, Schema, SimpleObject, ID,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub type MilestoneSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema with its limits and data.
pub fn build_schema(pool: Pool, config: &Config) -> MilestoneSchema {
    Schema::build(Query::default(), EmptyMutation, EmptySubscription)
        .data(DataLoader::new(TimelineLoader(pool.clone()), tokio::spawn))
        .data(Limits {
            max_page_size: config.max_page_size,
        })
        .data(pool)
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity)
        .finish()
}

struct Limits {
    max_page_size: i32,
}

/// A GraphQL error with a stable `extensions.code`.
fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

fn db_error(e: DbError) -> async_graphql::Error {
    {
        match e {
            DbError::Unavailable(m) => {
                tracing::warn!(cause = %m, "read models unavailable");
                coded(
                    "READ_MODEL_UNAVAILABLE",
                    "the read models are unavailable; retry later",
                )
            }
            DbError::Query(m) => {
                tracing::error!(cause = %m, "read-model query failed");
                coded("INTERNAL", "internal error")
            }
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Placed,
    Accepted,
    InFulfillment,
    Shipped,
    Delivered,
    Rejected,
    Cancelled,
}

impl OrderStatus {
    const ALL: [OrderStatus; 7] = [
        Self::Placed,
        Self::Accepted,
        Self::InFulfillment,
        Self::Shipped,
        Self::Delivered,
        Self::Rejected,
        Self::Cancelled,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "PLACED",
            Self::Accepted => "ACCEPTED",
            Self::InFulfillment => "IN_FULFILLMENT",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
        }
    }

    fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .unwrap_or(Self::Placed)
    }
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

/// When each milestone happened (null until it did).
#[derive(SimpleObject, Clone)]
pub struct Milestones {
    pub placed_at: DateTime<Utc>,
    pub payment_authorized_at: Option<DateTime<Utc>>,
    pub inventory_reserved_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub fulfillment_started_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub payment_voided_at: Option<DateTime<Utc>>,
    pub inventory_released_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
}

/// Loads the timelines of every order in a response with one query.
pub struct TimelineLoader(Pool);

impl Loader<Uuid> for TimelineLoader {
    type Value = Vec<TimelineRecord>;
    type Error = Arc<DbError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        db::timelines(&self.0, keys).await.map_err(Arc::new)
    }
}

/// An order's timeline through the request's DataLoader (batched with the others).
async fn load_timeline(ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Vec<TimelineRecord>> {
    let loader = ctx.data_unchecked::<DataLoader<TimelineLoader>>();
    let entries = loader.load_one(id).await.map_err(|e| {
        db_error(Arc::try_unwrap(e).unwrap_or_else(|e| DbError::Query(e.to_string())))
    })?;
    Ok(entries.unwrap_or_default())
}

/// An order's status as the projection last saw it.
pub struct Order(pub OrderRecord);

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.order_id.to_string())
    }
    async fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.0.status)
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
    async fn pending_actions(&self) -> &[String] {
        &self.0.pending_actions
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    /// Compensations owed and not yet done: VOID_PAYMENT, RELEASE_INVENTORY.
    async fn compensations_owed(&self) -> &[String] {
        &self.0.compensations_owed
    }
    async fn compensations_done(&self) -> &[String] {
        &self.0.compensations_done
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
    async fn milestones(&self) -> Milestones {
        let m = &self.0.milestones;
        Milestones {
            placed_at: self.0.placed_at(),
            payment_authorized_at: m[1],
            inventory_reserved_at: m[2],
            accepted_at: m[3],
            rejected_at: m[4],
            fulfillment_started_at: m[5],
            shipped_at: m[6],
            delivered_at: m[7],
            cancelled_at: m[8],
            payment_voided_at: m[9],
            inventory_released_at: m[10],
            escalated_at: m[11],
        }
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
    #[graphql(complexity = "10 * child_complexity")]
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TimelineRecord>> {
        load_timeline(ctx, self.0.order_id).await
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

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// A page of orders, newest first (Relay connection).
#[derive(SimpleObject)]
pub struct OrderConnection {
    pub edges: Vec<OrderEdge>,
    pub page_info: PageInfo,
}

fn encode_cursor(r: &OrderRecord) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        r.placed_at().timestamp_micros(),
        r.order_id
    ))
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (micros, id) = text.split_once('|')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        Uuid::parse_str(id).ok()?,
    ))
}

fn parse_id(id: &ID) -> async_graphql::Result<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| {
        coded(
            "BAD_USER_INPUT",
            format!(
                "'{}' is not an order id (a UUID)",
                id.as_str().chars().take(40).collect::<String>()
            ),
        )
    })
}

fn page_size(ctx: &Context<'_>, first: Option<i32>) -> async_graphql::Result<i64> {
    let max = ctx.data_unchecked::<Limits>().max_page_size;
    match first.unwrap_or(20) {
        n if n < 1 => Err(coded("BAD_USER_INPUT", "first must be at least 1")),
        n if n > max => Err(coded(
            "PAGE_SIZE_TOO_LARGE",
            format!("first must be at most {max}"),
        )),
        n => Ok(i64::from(n)),
    }
}

/// Queries about orders.
#[derive(Default)]
pub struct OrderQueries;

#[Object]
impl OrderQueries {
    /// One order, or null when the projection has not seen it.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        let id = parse_id(&id)?;
        Ok(db::order_by_id(ctx.data_unchecked::<Pool>(), id)
            .await
            .map_err(db_error)?
            .map(Order))
    }

    /// An order's events, oldest first.
    async fn order_timeline(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Vec<TimelineRecord>> {
        load_timeline(ctx, parse_id(&id)?).await
    }

    /// Orders, newest first, filtered; `first` at most the page-size cap, `after` a cursor from
    /// a previous page.
    #[graphql(complexity = "first.unwrap_or(20) as usize * child_complexity")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        let limit = page_size(ctx, first)?;
        let after =
            match after {
                Some(c) => Some(decode_cursor(&c).ok_or_else(|| {
                    coded("BAD_USER_INPUT", "after is not a cursor from this API")
                })?),
                None => None,
            };
        let filter = filter.unwrap_or_default();
        let query = db::OrderQuery {
            status: filter.status.map(|s| s.as_str().to_owned()),
            customer_id: filter.customer_id,
            placed_from: filter.placed_from,
            placed_to: filter.placed_to,
            overdue: filter.overdue,
            after,
            limit: limit + 1,
        };
        let mut rows = db::list_orders(ctx.data_unchecked::<Pool>(), &query)
            .await
            .map_err(db_error)?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let edges: Vec<OrderEdge> = rows
            .into_iter()
            .map(|r| OrderEdge {
                cursor: encode_cursor(&r),
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

    /// Orders past their deadline, the longest overdue first.
    #[graphql(complexity = "first.unwrap_or(20) as usize * child_complexity")]
    async fn stalled_orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Order>> {
        let limit = page_size(ctx, first)?;
        Ok(db::stalled_orders(ctx.data_unchecked::<Pool>(), limit)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(Order)
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct StatusCount {
    pub status: OrderStatus,
    pub orders: i64,
}

/// Dashboards and operations.
#[derive(Default)]
pub struct StatusQueries;

#[Object]
impl StatusQueries {
    /// How many orders are in each status (kept by the projector, not counted on read).
    async fn status_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StatusCount>> {
        let counts = db::status_counts(ctx.data_unchecked::<Pool>())
            .await
            .map_err(db_error)?;
        Ok(OrderStatus::ALL
            .into_iter()
            .map(|s| StatusCount {
                status: s,
                orders: counts.get(s.as_str()).copied().unwrap_or(0),
            })
            .collect())
    }

    async fn projection_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ProjectionRecord> {
        db::projection_status(ctx.data_unchecked::<Pool>(), "order_status")
            .await
            .map_err(db_error)
    }
}

#[derive(MergedObject, Default)]
pub struct Query(OrderQueries, StatusQueries);

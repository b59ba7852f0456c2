//! The GraphQL schema: types over the read models, resolvers split by area and merged, a
//! DataLoader for timelines. Built once; each request reads through its own snapshot.

use crate::config::Config;
use crate::db::{self, DbError, OrderRecord, ProjectionRecord, Snapshot, TimelineRecord};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, ErrorExtensions, InputObject, MergedObject,
    Object, Schema, SimpleObject, ID,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use uuid::Uuid;

pub type MilestoneSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema with its limits. Each request brings its own data: see [`for_request`].
pub fn build_schema(config: &Config) -> MilestoneSchema {
    PAGE_COST_CAP.fetch_max(
        usize::try_from(config.max_page_size).unwrap_or(0),
        Ordering::Relaxed,
    );
    Schema::build(Query::default(), EmptyMutation, EmptySubscription)
        .data(Limits {
            max_page_size: config.max_page_size,
        })
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity)
        .finish()
}

/// Gives a request what its resolvers read through: its snapshot of the read models, and the
/// DataLoader batching timelines out of it.
pub fn for_request(
    request: async_graphql::Request,
    snapshot: &Arc<Snapshot>,
) -> async_graphql::Request {
    request.data(Arc::clone(snapshot)).data(DataLoader::new(
        TimelineLoader(Arc::clone(snapshot)),
        tokio::spawn,
    ))
}

/// The request's snapshot of the read models, its transaction begun on first use.
async fn read_models<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a ClientWrapper> {
    ctx.data_unchecked::<Arc<Snapshot>>()
        .client()
        .await
        .map_err(db_error)
}

struct Limits {
    max_page_size: i32,
}

/// `first` when a query leaves it out.
const DEFAULT_PAGE_SIZE: i32 = 20;

/// The page-size cap as the complexity hooks see it. They are plain functions that cannot
/// reach the schema's data, so [`build_schema`] records its cap here (the largest of the
/// schemas built in this process, so a page never costs less than any of their caps).
static PAGE_COST_CAP: AtomicUsize = AtomicUsize::new(0);

/// The most one field can cost: far above any useful limit, yet the sum over every field a
/// request can hold stays far from overflowing.
const MAX_FIELD_COST: usize = u32::MAX as usize;

/// What a page of `first` items costs in the complexity limit: `first` times one item. A
/// `first` outside 1..=cap costs a full page: it is refused when resolved, so it must not let
/// its siblings through as cheaper than they are, nor overflow.
fn page_cost(first: Option<i32>, item: usize) -> usize {
    let cap = PAGE_COST_CAP.load(Ordering::Relaxed);
    let items = usize::try_from(first.unwrap_or(DEFAULT_PAGE_SIZE))
        .ok()
        .filter(|n| (1..=cap).contains(n))
        .unwrap_or(cap);
    items.saturating_mul(item).min(MAX_FIELD_COST)
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

/// Loads the timelines of every order in a response with one query, from its snapshot.
pub struct TimelineLoader(Arc<Snapshot>);

impl Loader<Uuid> for TimelineLoader {
    type Value = Vec<TimelineRecord>;
    type Error = Arc<DbError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let client = self.0.client().await.map_err(Arc::new)?;
        db::timelines(client, keys).await.map_err(Arc::new)
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
    #[graphql(complexity = "child_complexity.saturating_mul(10)")]
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
        DateTime::from_timestamp_micros(micros.parse().ok()?).filter(storable)?,
        Uuid::parse_str(id).ok()?,
    ))
}

/// The earliest moment PostgreSQL stores (4714-11-24 BC); the latest is beyond what chrono
/// represents.
const EARLIEST_STORABLE_SECS: i64 = -210_866_803_200;

/// A moment the read models can be asked about.
fn storable(at: &DateTime<Utc>) -> bool {
    at.timestamp() >= EARLIEST_STORABLE_SECS
}

fn bad_argument(argument: &str, problem: &str) -> async_graphql::Error {
    coded("BAD_USER_INPUT", format!("{argument} {problem}"))
}

/// A moment given as `argument`, refused when the read models cannot hold it.
fn moment(
    argument: &str,
    at: Option<DateTime<Utc>>,
) -> async_graphql::Result<Option<DateTime<Utc>>> {
    match at {
        Some(t) if !storable(&t) => Err(bad_argument(
            argument,
            "is before the earliest supported moment (4714-11-24 BC)",
        )),
        other => Ok(other),
    }
}

/// Text given as `argument`, refused when it holds a character PostgreSQL cannot store.
fn text(argument: &str, value: Option<String>) -> async_graphql::Result<Option<String>> {
    match value {
        Some(v) if v.contains('\0') => {
            Err(bad_argument(argument, "must not contain a NUL character"))
        }
        other => Ok(other),
    }
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
    match first.unwrap_or(DEFAULT_PAGE_SIZE) {
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
        Ok(db::order_by_id(read_models(ctx).await?, id)
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
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        let limit = page_size(ctx, first)?;
        let after = match after {
            Some(c) => Some(
                decode_cursor(&c)
                    .ok_or_else(|| bad_argument("after", "is not a cursor from this API"))?,
            ),
            None => None,
        };
        let filter = filter.unwrap_or_default();
        let query = db::OrderQuery {
            status: filter.status.map(|s| s.as_str().to_owned()),
            customer_id: text("filter.customerId", filter.customer_id)?,
            placed_from: moment("filter.placedFrom", filter.placed_from)?,
            placed_to: moment("filter.placedTo", filter.placed_to)?,
            overdue: filter.overdue,
            after,
            limit: limit + 1,
        };
        let mut rows = db::list_orders(read_models(ctx).await?, &query)
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
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn stalled_orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Order>> {
        let limit = page_size(ctx, first)?;
        Ok(db::stalled_orders(read_models(ctx).await?, limit)
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
        let counts = db::status_counts(read_models(ctx).await?)
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
        db::projection_status(read_models(ctx).await?, crate::consistency::PROJECTION)
            .await
            .map_err(db_error)
    }
}

#[derive(MergedObject, Default)]
pub struct Query(OrderQueries, StatusQueries);

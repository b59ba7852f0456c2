//! The order workflow's read models: `order_status` (one row per order), `order_timeline` (one
//! row per event) and `order_status_counts`, read through [`super::workflow`]. Here: their
//! names, an order's row and the filters of a list of orders. Every column is selected by name
//! and read by name.

use super::workflow::{Conditions, Progress, ReadModels};
use super::{column, label, DbError};
use chrono::{DateTime, Utc};
use domain::{Compensation, PendingAction, Status};
use tokio_postgres::Row;
use uuid::Uuid;

/// The order workflow's read models.
pub enum Orders {}

impl ReadModels for Orders {
    const STATUS_TABLE: &'static str = "order_status";
    const COLUMNS: &'static [(&'static str, &'static str)] = projector::ORDER_STATUS_COLUMNS;
    const NOT_SERVED: &'static [&'static str] = &[
        "line_count",
        "last_position_commit",
        "last_position_prepare",
        "state",
        "state_version",
    ];
    const SERVED_AS: &'static [(&'static str, &'static str)] =
        &[("order_id", "id"), ("stream_revision", "revision")];
    const ID_COLUMN: &'static str = "order_id";
    const LISTED_BY: &'static str = "placed_at";
    const TIMELINE_TABLE: &'static str = "order_timeline";
    const COUNTS_TABLE: &'static str = "order_status_counts";
    const COUNT_COLUMN: &'static str = "orders";
    const PROJECTION: &'static str = projector::PROJECTION;
    const STATUS_KIND: &'static str = "order status";

    type Status = Status;
    type Record = OrderRecord;
    type Filter = OrderFilter;

    fn record(row: &Row) -> Result<OrderRecord, DbError> {
        OrderRecord::from_row(row)
    }

    fn position(record: &OrderRecord) -> (DateTime<Utc>, Uuid) {
        (record.placed_at(), record.order_id)
    }

    fn progress(record: &OrderRecord) -> (Uuid, i64, &str) {
        let p = &record.progress;
        (record.order_id, p.stream_revision, &p.last_position)
    }

    fn conditions(filter: &OrderFilter, conditions: &mut Conditions) {
        if let Some(s) = filter.status {
            conditions.compare("status", "=", s.as_str());
        }
        if let Some(c) = &filter.customer_id {
            conditions.compare("customer_id", "=", c.clone());
        }
        if let Some(from) = filter.placed_from {
            conditions.compare("placed_at", ">=", from);
        }
        if let Some(to) = filter.placed_to {
            conditions.compare("placed_at", "<", to);
        }
        match filter.overdue {
            Some(true) => conditions.push("deadline_at < now()"),
            Some(false) => conditions.push("(deadline_at is null or deadline_at >= now())"),
            None => {}
        }
    }

    fn owned_by(row: &str, customer: &str) -> String {
        format!("{row}.customer_id = {customer}")
    }
}

/// Filters of `orders`.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<Status>,
    pub customer_id: Option<String>,
    pub placed_from: Option<DateTime<Utc>>,
    pub placed_to: Option<DateTime<Utc>>,
    pub overdue: Option<bool>,
}

// Read from the `*_at` columns of `order_status`.
/// When each milestone happened (null until it did).
#[derive(Debug, Clone, PartialEq, async_graphql::SimpleObject)]
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

impl Milestones {
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            placed_at: column(r, "placed_at")?,
            payment_authorized_at: column(r, "payment_authorized_at")?,
            inventory_reserved_at: column(r, "inventory_reserved_at")?,
            accepted_at: column(r, "accepted_at")?,
            rejected_at: column(r, "rejected_at")?,
            fulfillment_started_at: column(r, "fulfillment_started_at")?,
            shipped_at: column(r, "shipped_at")?,
            delivered_at: column(r, "delivered_at")?,
            cancelled_at: column(r, "cancelled_at")?,
            payment_voided_at: column(r, "payment_voided_at")?,
            inventory_released_at: column(r, "inventory_released_at")?,
            escalated_at: column(r, "escalated_at")?,
        })
    }
}

/// One order as stored in `order_status`, its labels parsed into the domain's types.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub order_id: Uuid,
    pub status: Status,
    pub customer_id: String,
    pub currency: String,
    pub total_minor: i64,
    pub lines: serde_json::Value,
    pub shipping_address: serde_json::Value,
    /// Where the order stands in its workflow.
    pub progress: Progress<PendingAction, Compensation>,
    pub payment_id: Option<String>,
    pub reservation_id: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub milestones: Milestones,
}

impl OrderRecord {
    /// Reads a row selected with [`super::workflow::select_list`].
    ///
    /// # Errors
    /// A column missing or of another type, or a label the domain does not know.
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            order_id: column(r, "order_id")?,
            status: label(r, "status", "order status")?,
            customer_id: column(r, "customer_id")?,
            currency: column(r, "currency")?,
            total_minor: column(r, "total_minor")?,
            lines: column(r, "lines")?,
            shipping_address: column(r, "shipping_address")?,
            progress: Progress::from_row(r, "pending action", "compensation")?,
            payment_id: column(r, "payment_id")?,
            reservation_id: column(r, "reservation_id")?,
            carrier: column(r, "carrier")?,
            tracking_number: column(r, "tracking_number")?,
            milestones: Milestones::from_row(r)?,
        })
    }

    pub fn placed_at(&self) -> DateTime<Utc> {
        self.milestones.placed_at
    }
}

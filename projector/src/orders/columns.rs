//! `order_status`, defined once: the column list below makes the row type, the select list,
//! the read of each column by its name and the bind of each column by its name.

use crate::status_table::status_columns;
use chrono::{DateTime, Utc};
use domain::Order;
use uuid::Uuid;

/// The version of the aggregate's serde form stored in `order_status.state`. Raise it when
/// `domain::Order`'s serde form changes: rows of another version are refused (their orders
/// parked) instead of misread, until a rebuild rewrites them.
pub const ORDER_STATE_VERSION: i32 = 1;

status_columns! {
    /// A row of `order_status`; field names are the column names.
    row OrderRow, columns ORDER_STATUS_COLUMNS,
    tables("order_status", "order_timeline", "order_status_counts" counting "orders"),
    working
    /// The parsed `state`, kept while a batch works on the row so that each event does not
    /// parse and serialise it again; sealing the batch writes it back.
    order: Option<Order>;
    order_id: Uuid = "uuid",
    status: String = "text",
    customer_id: String = "text",
    currency: String = "text",
    total_minor: i64 = "bigint",
    line_count: i32 = "integer",
    lines: serde_json::Value = "jsonb",
    shipping_address: serde_json::Value = "jsonb",
    last_milestone: String = "text",
    last_milestone_at: DateTime<Utc> = "timestamptz",
    pending_actions: Vec<String> = "text[]",
    failure_reason: Option<String> = "text",
    compensations_owed: Vec<String> = "text[]",
    compensations_done: Vec<String> = "text[]",
    payment_id: Option<String> = "text",
    reservation_id: Option<String> = "text",
    carrier: Option<String> = "text",
    tracking_number: Option<String> = "text",
    placed_at: DateTime<Utc> = "timestamptz",
    payment_authorized_at: Option<DateTime<Utc>> = "timestamptz",
    inventory_reserved_at: Option<DateTime<Utc>> = "timestamptz",
    accepted_at: Option<DateTime<Utc>> = "timestamptz",
    rejected_at: Option<DateTime<Utc>> = "timestamptz",
    fulfillment_started_at: Option<DateTime<Utc>> = "timestamptz",
    shipped_at: Option<DateTime<Utc>> = "timestamptz",
    delivered_at: Option<DateTime<Utc>> = "timestamptz",
    cancelled_at: Option<DateTime<Utc>> = "timestamptz",
    payment_voided_at: Option<DateTime<Utc>> = "timestamptz",
    inventory_released_at: Option<DateTime<Utc>> = "timestamptz",
    escalated_at: Option<DateTime<Utc>> = "timestamptz",
    escalation_count: i32 = "integer",
    escalation_reason: Option<String> = "text",
    correlation_id: Option<String> = "text",
    deadline_at: Option<DateTime<Utc>> = "timestamptz",
    stream_revision: i64 = "bigint",
    last_position: String = "text",
    last_position_commit: i64 = "bigint",
    last_position_prepare: i64 = "bigint",
    state: String = "text",
    /// The serde form `state` was written in ([`ORDER_STATE_VERSION`] for rows this projector
    /// writes).
    state_version: i32 = "integer",
}

//! `return_status`, defined once: the column list below makes the row type, the select list,
//! the read of each column by its name and the bind of each column by its name.

use crate::status_table::status_columns;
use chrono::{DateTime, Utc};
use domain::ReturnState;
use uuid::Uuid;

/// The version of the return case's serde form stored in `return_status.state`. Raise it when
/// `domain::ReturnCase`'s serde form changes: rows of another version are refused (their
/// returns parked) instead of misread, until a rebuild rewrites them.
pub const RETURN_STATE_VERSION: i32 = 1;

status_columns! {
    /// A row of `return_status`; field names are the column names.
    row ReturnRow, columns RETURN_STATUS_COLUMNS,
    tables("return_status", "return_timeline", "return_status_counts" counting "returns"),
    working
    /// The parsed `state`, kept while a batch works on the row so that each event does not
    /// parse and serialise it again; sealing the batch writes it back.
    case: Option<ReturnState>;
    order_id: Uuid = "uuid",
    status: String = "text",
    currency: String = "text",
    reason: String = "text",
    /// Each requested line: `sku`, `quantity`, `unit_price_minor`, and `accepted_quantity` /
    /// `refused_quantity` once inspected (null before).
    lines: serde_json::Value = "jsonb",
    line_count: i32 = "integer",
    /// What the requested lines refund.
    refund_due_minor: i64 = "bigint",
    /// What the accepted lines refund, once the items are received.
    refund_accepted_minor: Option<i64> = "bigint",
    refunded_minor: i64 = "bigint",
    refund_id: Option<String> = "text",
    rma_number: Option<String> = "text",
    last_milestone: String = "text",
    last_milestone_at: DateTime<Utc> = "timestamptz",
    pending_actions: Vec<String> = "text[]",
    failure_reason: Option<String> = "text",
    compensations_owed: Vec<String> = "text[]",
    compensations_done: Vec<String> = "text[]",
    requested_at: DateTime<Utc> = "timestamptz",
    approved_at: Option<DateTime<Utc>> = "timestamptz",
    rejected_at: Option<DateTime<Utc>> = "timestamptz",
    received_at: Option<DateTime<Utc>> = "timestamptz",
    refunded_at: Option<DateTime<Utc>> = "timestamptz",
    cancelled_at: Option<DateTime<Utc>> = "timestamptz",
    shipped_back_at: Option<DateTime<Utc>> = "timestamptz",
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
    /// The serde form `state` was written in ([`RETURN_STATE_VERSION`] for rows this projector
    /// writes).
    state_version: i32 = "integer",
}

//! The returns workflow's read models: `return_status` (one row per return case, keyed by its
//! order's id), `return_timeline` (one row per event) and `return_status_counts`, read through
//! [`super::workflow`]. Here: their names, a return case's row and the filters of a list of
//! return cases. Every column is selected by name and read by name.

use super::workflow::{Conditions, Progress, ReadModels};
use super::{column, label, DbError};
use chrono::{DateTime, Utc};
use domain::{ReturnAction, ReturnCompensation, ReturnStatus};
use tokio_postgres::Row;
use uuid::Uuid;

/// The returns workflow's read models; a return case is named by its order's id.
pub enum Returns {}

impl ReadModels for Returns {
    const STATUS_TABLE: &'static str = "return_status";
    const COLUMNS: &'static [(&'static str, &'static str)] = projector::RETURN_STATUS_COLUMNS;
    const NOT_SERVED: &'static [&'static str] = &[
        "last_position_commit",
        "last_position_prepare",
        "state",
        "state_version",
    ];
    const SERVED_AS: &'static [(&'static str, &'static str)] = &[("stream_revision", "revision")];
    const ID_COLUMN: &'static str = "order_id";
    const LISTED_BY: &'static str = "requested_at";
    const TIMELINE_TABLE: &'static str = "return_timeline";
    const COUNTS_TABLE: &'static str = "return_status_counts";
    const COUNT_COLUMN: &'static str = "returns";
    const PROJECTION: &'static str = <projector::ReturnProjection as projector::Projection>::NAME;
    const STATUS_KIND: &'static str = "return status";

    type Status = ReturnStatus;
    type Record = ReturnRecord;
    type Filter = ReturnFilter;

    fn record(row: &Row) -> Result<ReturnRecord, DbError> {
        ReturnRecord::from_row(row)
    }

    fn position(record: &ReturnRecord) -> (DateTime<Utc>, Uuid) {
        (record.requested_at(), record.order_id)
    }

    fn progress(record: &ReturnRecord) -> (Uuid, i64, &str) {
        let p = &record.progress;
        (record.order_id, p.stream_revision, &p.last_position)
    }

    fn conditions(filter: &ReturnFilter, conditions: &mut Conditions) {
        if let Some(s) = filter.status {
            conditions.compare("status", "=", s.as_str());
        }
        if let Some(from) = filter.requested_from {
            conditions.compare("requested_at", ">=", from);
        }
        if let Some(to) = filter.requested_to {
            conditions.compare("requested_at", "<", to);
        }
    }

    /// A return is its order's customer's.
    fn owned_by(row: &str, customer: &str) -> String {
        format!(
            "exists (select 1 from {orders} o where o.order_id = {row}.order_id \
             and o.customer_id = {customer})",
            orders = <super::orders::Orders as ReadModels>::STATUS_TABLE,
        )
    }
}

/// Filters of `returns`.
#[derive(Debug, Default, Clone)]
pub struct ReturnFilter {
    pub status: Option<ReturnStatus>,
    pub requested_from: Option<DateTime<Utc>>,
    pub requested_to: Option<DateTime<Utc>>,
}

// Read from the `*_at` columns of `return_status`.
/// When each milestone of a return happened (null until it did).
#[derive(Debug, Clone, PartialEq, async_graphql::SimpleObject)]
#[graphql(name = "ReturnMilestones")]
pub struct ReturnMilestones {
    pub requested_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When items that arrived after cancellation were shipped back to the customer.
    pub shipped_back_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
}

impl ReturnMilestones {
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            requested_at: column(r, "requested_at")?,
            approved_at: column(r, "approved_at")?,
            rejected_at: column(r, "rejected_at")?,
            received_at: column(r, "received_at")?,
            refunded_at: column(r, "refunded_at")?,
            cancelled_at: column(r, "cancelled_at")?,
            shipped_back_at: column(r, "shipped_back_at")?,
            escalated_at: column(r, "escalated_at")?,
        })
    }
}

/// One return case as stored in `return_status`, its labels parsed into the domain's types.
#[derive(Debug, Clone)]
pub struct ReturnRecord {
    pub order_id: Uuid,
    pub status: ReturnStatus,
    pub currency: String,
    pub reason: String,
    pub lines: serde_json::Value,
    pub line_count: i32,
    pub refund_due_minor: i64,
    pub refund_accepted_minor: Option<i64>,
    pub refunded_minor: i64,
    pub refund_id: Option<String>,
    pub rma_number: Option<String>,
    /// Where the return stands in its workflow.
    pub progress: Progress<ReturnAction, ReturnCompensation>,
    pub milestones: ReturnMilestones,
}

impl ReturnRecord {
    /// Reads a row selected with [`super::workflow::select_list`].
    ///
    /// # Errors
    /// A column missing or of another type, or a label the domain does not know.
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            order_id: column(r, "order_id")?,
            status: label(r, "status", "return status")?,
            currency: column(r, "currency")?,
            reason: column(r, "reason")?,
            lines: column(r, "lines")?,
            line_count: column(r, "line_count")?,
            refund_due_minor: column(r, "refund_due_minor")?,
            refund_accepted_minor: column(r, "refund_accepted_minor")?,
            refunded_minor: column(r, "refunded_minor")?,
            refund_id: column(r, "refund_id")?,
            rma_number: column(r, "rma_number")?,
            progress: Progress::from_row(r, "return action", "return compensation")?,
            milestones: ReturnMilestones::from_row(r)?,
        })
    }

    pub fn requested_at(&self) -> DateTime<Utc> {
        self.milestones.requested_at
    }
}

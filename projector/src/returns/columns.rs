//! `return_status`, defined once: the column list below makes the row type, the select list,
//! the read of each column by its name and the bind of each column by its name.

use chrono::{DateTime, Utc};
use domain::ReturnState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The version of the return case's serde form stored in `return_status.state`. Raise it when
/// `domain::ReturnCase`'s serde form changes: rows of another version are refused (their
/// returns parked) instead of misread, until a rebuild rewrites them.
pub const RETURN_STATE_VERSION: i32 = 1;

macro_rules! return_status {
    ($( $(#[$doc:meta])* $column:ident: $ty:ty = $sql:literal, )*) => {
        /// A row of `return_status`; field names are the column names.
        #[derive(Debug, Clone, PartialEq)]
        pub struct ReturnRow {
            $( $(#[$doc])* pub $column: $ty, )*
            /// The parsed `state`, kept while a batch works on the row so that each event does
            /// not parse and serialise it again; sealing the batch writes it back.
            pub case: Option<ReturnState>,
        }

        /// `return_status`'s columns with their SQL types, in the order the projector selects
        /// and binds them; readers select these names.
        pub const RETURN_STATUS_COLUMNS: &[(&str, &str)] = &[$( (stringify!($column), $sql), )*];

        /// A row selected with [`RETURN_STATUS_COLUMNS`]; each column is found by its name, at
        /// compile time (a name that is not in the list fails the build).
        pub(crate) fn return_row(r: &tokio_postgres::Row) -> Result<ReturnRow, tokio_postgres::Error> {
            Ok(ReturnRow {
                $( $column: r.try_get(const { column_index(stringify!($column)) })?, )*
                case: None,
            })
        }

        /// Each column of `rows` as one array parameter, in [`RETURN_STATUS_COLUMNS`]' order:
        /// the same list names the column and picks the field.
        pub(crate) fn bind_columns<'a>(rows: &[&'a ReturnRow]) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
            vec![$(
                Box::new(rows.iter().map(|r| Bind::bind(&r.$column)).collect::<Vec<_>>())
                    as Box<dyn ToSql + Sync + Send + 'a>,
            )*]
        }
    };
}

return_status! {
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

/// Where `name` stands in [`RETURN_STATUS_COLUMNS`]; evaluated at compile time.
const fn column_index(name: &str) -> usize {
    let mut i = 0;
    while i < RETURN_STATUS_COLUMNS.len() {
        let candidate = RETURN_STATUS_COLUMNS[i].0.as_bytes();
        let wanted = name.as_bytes();
        if candidate.len() == wanted.len() {
            let mut j = 0;
            while j < wanted.len() && candidate[j] == wanted[j] {
                j += 1;
            }
            if j == wanted.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a column of return_status");
}

/// How a field travels as one element of its column's array parameter: borrowed where it can
/// be; a `text[]` column as an array literal (`{A,B}`, cast in SQL) so that `unnest` stays
/// one-dimensional.
trait Bind {
    type Param<'a>: ToSql + Sync
    where
        Self: 'a;
    fn bind(&self) -> Self::Param<'_>;
}

macro_rules! bind_copied {
    ($($t:ty),*) => {$(
        impl Bind for $t {
            type Param<'a> = $t;
            fn bind(&self) -> $t {
                *self
            }
        }
    )*};
}
bind_copied!(
    Uuid,
    i32,
    i64,
    Option<i64>,
    DateTime<Utc>,
    Option<DateTime<Utc>>
);

impl Bind for String {
    type Param<'a> = &'a str;
    fn bind(&self) -> &str {
        self
    }
}

impl Bind for Option<String> {
    type Param<'a> = Option<&'a str>;
    fn bind(&self) -> Option<&str> {
        self.as_deref()
    }
}

impl Bind for serde_json::Value {
    type Param<'a> = &'a serde_json::Value;
    fn bind(&self) -> &serde_json::Value {
        self
    }
}

/// The elements are simple identifiers (actions, compensations): no quoting needed.
impl Bind for Vec<String> {
    type Param<'a> = String;
    fn bind(&self) -> String {
        format!("{{{}}}", self.join(","))
    }
}

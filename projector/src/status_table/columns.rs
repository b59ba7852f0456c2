//! A status table's column list, defined once: [`status_columns!`] makes from it the row type,
//! the list of names and SQL types readers select, the read of each column by its name and
//! the bind of each column by its name.

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Defines a status table's row from its column list: the row type (each column a field, plus
/// the working field a batch keeps the parsed state in), the public list of columns with their
/// SQL types, and its [`crate::status_table::StatusRow`] implementation. The first column is the
/// key; `status`, `stream_revision`, `last_position`, `last_position_commit`,
/// `last_position_prepare` and `correlation_id` are expected among the columns. Every status
/// table also gets the follow-up columns (`reminder_attempts`, `last_reminder_at`,
/// `next_reminder_at`), appended here once for every workflow and kept by
/// [`crate::status_table::follow_up`].
macro_rules! status_columns {
    (
        $(#[$row_doc:meta])*
        row $row:ident, columns $columns:ident,
        tables($table:literal, $timeline:literal, $counts:literal counting $count_column:literal),
        working $(#[$working_doc:meta])* $working:ident: $working_ty:ty;
        $key:ident: $key_ty:ty = $key_sql:literal,
        $( $(#[$doc:meta])* $column:ident: $ty:ty = $sql:literal, )*
    ) => {
        $crate::status_table::status_columns! {
            @row
            $(#[$row_doc])*
            row $row, columns $columns,
            tables($table, $timeline, $counts counting $count_column),
            working $(#[$working_doc])* $working: $working_ty;
            $key: $key_ty = $key_sql,
            $( $(#[$doc])* $column: $ty = $sql, )*
            /// Reminders recorded for the most reminded pending action since it became pending.
            reminder_attempts: i32 = "integer",
            /// When the last reminder was recorded.
            last_reminder_at: Option<chrono::DateTime<chrono::Utc>> = "timestamptz",
            /// When the reconciler next chases the instance: its next reminder, or its
            /// escalation once the reminders went unanswered; none when nothing is awaited or the
            /// current step was already escalated.
            next_reminder_at: Option<chrono::DateTime<chrono::Utc>> = "timestamptz",
        }
    };
    (
        @row
        $(#[$row_doc:meta])*
        row $row:ident, columns $columns:ident,
        tables($table:literal, $timeline:literal, $counts:literal counting $count_column:literal),
        working $(#[$working_doc:meta])* $working:ident: $working_ty:ty;
        $key:ident: $key_ty:ty = $key_sql:literal,
        $( $(#[$doc:meta])* $column:ident: $ty:ty = $sql:literal, )*
    ) => {
        $(#[$row_doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $row {
            pub $key: $key_ty,
            $( $(#[$doc])* pub $column: $ty, )*
            $(#[$working_doc])*
            pub $working: $working_ty,
        }

        #[doc = concat!("`", $table, "`'s columns with their SQL types, in the order the ")]
        #[doc = "projector selects and binds them; readers select these names."]
        pub const $columns: &[(&str, &str)] =
            &[(stringify!($key), $key_sql), $( (stringify!($column), $sql), )*];

        impl $crate::status_table::StatusRow for $row {
            const TABLE: &'static str = $table;
            const TIMELINE: &'static str = $timeline;
            const COUNTS: &'static str = $counts;
            const COUNT_COLUMN: &'static str = $count_column;
            const TABLES: &'static [&'static str] = &[$table, $timeline, $counts];
            const COLUMNS: &'static [(&'static str, &'static str)] = $columns;

            fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
                use $crate::status_table::column_index;
                Ok(Self {
                    $key: r.try_get(const { column_index($columns, stringify!($key)) })?,
                    $( $column: r.try_get(const { column_index($columns, stringify!($column)) })?, )*
                    $working: None,
                })
            }

            fn bind_columns<'a>(
                rows: &[&'a Self],
            ) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send + 'a>> {
                use $crate::status_table::Bind;
                vec![
                    Box::new(rows.iter().map(|r| r.$key.bind()).collect::<Vec<_>>())
                        as Box<dyn tokio_postgres::types::ToSql + Sync + Send + 'a>,
                    $(
                        Box::new(rows.iter().map(|r| r.$column.bind()).collect::<Vec<_>>())
                            as Box<dyn tokio_postgres::types::ToSql + Sync + Send + 'a>,
                    )*
                ]
            }

            fn copy_values(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
                vec![&self.$key as _, $( &self.$column as _, )*]
            }

            fn statements() -> &'static $crate::status_table::Statements {
                static SQL: std::sync::OnceLock<$crate::status_table::Statements> =
                    std::sync::OnceLock::new();
                SQL.get_or_init(|| $crate::status_table::Statements::new($table, $columns))
            }

            fn id(&self) -> uuid::Uuid {
                self.$key
            }

            fn status(&self) -> &str {
                &self.status
            }

            fn stream_revision(&self) -> i64 {
                self.stream_revision
            }

            fn follow_up_columns(&mut self) -> $crate::status_table::FollowUpColumns<'_> {
                $crate::status_table::FollowUpColumns {
                    reminder_attempts: &mut self.reminder_attempts,
                    last_reminder_at: &mut self.last_reminder_at,
                    next_reminder_at: &mut self.next_reminder_at,
                }
            }

            fn record(&mut self, revision: i64, event: &event_store::RecordedEvent, position: &str) {
                self.stream_revision = revision;
                self.last_position = position.to_owned();
                self.last_position_commit = event.position.commit as i64;
                self.last_position_prepare = event.position.prepare as i64;
                if self.correlation_id.is_none() {
                    self.correlation_id.clone_from(&event.metadata.correlation_id);
                }
            }
        }
    };
}
pub(crate) use status_columns;

/// Where `name` stands in `columns`; evaluated at compile time (a name that is not in the list
/// fails the build).
pub(crate) const fn column_index(columns: &[(&str, &str)], name: &str) -> usize {
    let mut i = 0;
    while i < columns.len() {
        let candidate = columns[i].0.as_bytes();
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
    panic!("not a column of the status table");
}

/// How a field travels as one element of its column's array parameter: borrowed where it can
/// be; a `text[]` column as an array literal (`{A,B}`, cast in SQL) so that `unnest` stays
/// one-dimensional.
pub(crate) trait Bind {
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

/// The elements are simple identifiers (statuses, actions, compensations): no quoting needed.
impl Bind for Vec<String> {
    type Param<'a> = String;
    fn bind(&self) -> String {
        format!("{{{}}}", self.join(","))
    }
}

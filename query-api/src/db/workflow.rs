//! What every workflow's read models share, read once for all of them: a status table (one row
//! per instance, its columns the projector's exported list), a timeline table (one row per
//! event) and a counts table (how many instances are in each status). A workflow names its
//! tables, columns and filters by implementing [`ReadModels`]; the reads here do the rest.

use super::{column, label, labels, DbError};
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use event_store::Position;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

/// A workflow's read models (not the domain's `Workflow`: the tables its projection fills) and
/// how their rows are read.
pub trait ReadModels: Send + Sync + 'static {
    /// The status table, e.g. `order_status`.
    const STATUS_TABLE: &'static str;
    /// The status table's columns as the projector exports them (name, SQL type).
    const COLUMNS: &'static [(&'static str, &'static str)];
    /// Columns of [`Self::COLUMNS`] the projector keeps for its own use; every other one is
    /// served.
    const NOT_SERVED: &'static [&'static str];
    /// Served columns whose GraphQL field is not the column's camelCase name.
    const SERVED_AS: &'static [(&'static str, &'static str)];
    /// The column naming an instance, in the status and the timeline table alike.
    const ID_COLUMN: &'static str;
    /// The moment lists go by, newest first (then [`Self::ID_COLUMN`], for a stable order).
    const LISTED_BY: &'static str;
    /// The timeline table, e.g. `order_timeline`.
    const TIMELINE_TABLE: &'static str;
    /// The counts table, e.g. `order_status_counts`.
    const COUNTS_TABLE: &'static str;
    /// The column of [`Self::COUNTS_TABLE`] holding how many instances are in a status.
    const COUNT_COLUMN: &'static str;
    /// What a status is called when the read model holds one the domain does not know.
    const STATUS_KIND: &'static str;
    /// The projection that fills these tables, as its notifications name it.
    const PROJECTION: &'static str;

    /// The domain's status of an instance.
    type Status: domain::Label;
    /// One row of the status table, read.
    type Record: Send + Sync + 'static;
    /// The filters of a list of instances.
    type Filter;

    /// Reads a row selected with [`select_list`].
    ///
    /// # Errors
    /// A column missing or of another type, or a label the domain does not know.
    fn record(row: &Row) -> Result<Self::Record, DbError>;

    /// Where `record` stands in a list: its [`Self::LISTED_BY`] moment and its id.
    fn position(record: &Self::Record) -> (DateTime<Utc>, Uuid);

    /// Adds the conditions `filter` sets to `conditions`.
    fn conditions(filter: &Self::Filter, conditions: &mut Conditions);

    /// The SQL condition that the row `row` of the status table (an alias or the table's name)
    /// belongs to the customer bound at `customer` (a placeholder).
    fn owned_by(row: &str, customer: &str) -> String;

    /// The instance's id, the stream revision `record` reflects and the log position of its
    /// last applied event.
    fn progress(record: &Self::Record) -> (Uuid, i64, &str);
}

/// Where an instance stands in its workflow: the columns every workflow's status table has, its
/// labels (`A`, what it waits for; `C`, what it owes) parsed into the domain's types.
#[derive(Debug, Clone)]
pub struct Progress<A, C> {
    pub last_milestone: String,
    pub last_milestone_at: DateTime<Utc>,
    pub pending_actions: Vec<A>,
    pub failure_reason: Option<String>,
    pub compensations_owed: Vec<C>,
    pub compensations_done: Vec<C>,
    pub escalation_count: i32,
    pub escalation_reason: Option<String>,
    /// Reminders recorded for the most reminded pending action.
    pub reminder_attempts: i32,
    pub last_reminder_at: Option<DateTime<Utc>>,
    /// When the reconciler next chases the instance (a reminder, or its escalation).
    pub next_reminder_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<String>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub stream_revision: i64,
    pub last_position: String,
    pub overdue: bool,
}

impl<A: domain::Label, C: domain::Label> Progress<A, C> {
    /// Reads a row selected with [`select_list`]; `action` and `compensation` name what `A`
    /// and `C` are when the row holds one the domain does not know.
    ///
    /// # Errors
    /// A column missing or of another type, or a label the domain does not know.
    pub fn from_row(
        r: &Row,
        action: &'static str,
        compensation: &'static str,
    ) -> Result<Self, DbError> {
        Ok(Self {
            last_milestone: column(r, "last_milestone")?,
            last_milestone_at: column(r, "last_milestone_at")?,
            pending_actions: labels(r, "pending_actions", action)?,
            failure_reason: column(r, "failure_reason")?,
            compensations_owed: labels(r, "compensations_owed", compensation)?,
            compensations_done: labels(r, "compensations_done", compensation)?,
            escalation_count: column(r, "escalation_count")?,
            escalation_reason: column(r, "escalation_reason")?,
            reminder_attempts: column(r, "reminder_attempts")?,
            last_reminder_at: column(r, "last_reminder_at")?,
            next_reminder_at: column(r, "next_reminder_at")?,
            correlation_id: column(r, "correlation_id")?,
            deadline_at: column(r, "deadline_at")?,
            stream_revision: column(r, "stream_revision")?,
            last_position: column(r, "last_position")?,
            overdue: column(r, "overdue")?,
        })
    }
}

/// Computed with each instance: whether its deadline has passed.
const COMPUTED: &str = "coalesce(deadline_at < now(), false) as overdue";

/// The served columns of `W`'s status table, in the projector's order.
pub fn served_columns<W: ReadModels>() -> impl Iterator<Item = &'static str> {
    W::COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !W::NOT_SERVED.contains(name))
}

/// The select list of every query of `W`'s status table: the served columns and the computed
/// ones; [`ReadModels::record`] reads each by its name.
pub fn select_list<W: ReadModels>() -> String {
    served_columns::<W>()
        .chain(std::iter::once(COMPUTED))
        .collect::<Vec<_>>()
        .join(", ")
}

fn records<W: ReadModels>(rows: &[Row]) -> Result<Vec<W::Record>, DbError> {
    rows.iter().map(W::record).collect()
}

/// The instance `id`, or `None` when the projection has not seen it (or it is not `visible`).
#[tracing::instrument(name = "read_model.by_id", skip_all, fields(table = W::STATUS_TABLE, id = %id))]
pub async fn record_by_id<W: ReadModels>(
    client: &ClientWrapper,
    id: Uuid,
    visible: &Visible,
) -> Result<Option<W::Record>, DbError> {
    let mut conditions = Conditions::default();
    conditions.compare(W::ID_COLUMN, "=", id);
    visible.restrict::<W>(W::STATUS_TABLE, &mut conditions);
    let stmt = client
        .prepare_cached(&format!(
            "select {} from {} {}",
            select_list::<W>(),
            W::STATUS_TABLE,
            conditions.filter()
        ))
        .await?;
    client
        .query_opt(&stmt, &conditions.params())
        .await?
        .as_ref()
        .map(W::record)
        .transpose()
}

/// The instances among `ids` in one query (a DataLoader's batch); the projection has not seen
/// those absent (or they are not `visible`).
#[tracing::instrument(name = "read_model.by_ids", skip_all, fields(table = W::STATUS_TABLE, ids = ids.len()))]
pub async fn records_by_ids<W: ReadModels>(
    client: &ClientWrapper,
    ids: &[Uuid],
    visible: &Visible,
) -> Result<Vec<W::Record>, DbError> {
    let mut conditions = Conditions::default();
    let ids = conditions.bind(ids.to_vec());
    conditions.push(format!("{} = any({ids})", W::ID_COLUMN));
    visible.restrict::<W>(W::STATUS_TABLE, &mut conditions);
    let stmt = client
        .prepare_cached(&format!(
            "select {} from {} {}",
            select_list::<W>(),
            W::STATUS_TABLE,
            conditions.filter()
        ))
        .await?;
    records::<W>(&client.query(&stmt, &conditions.params()).await?)
}

/// Whose instances a read may return: every one, or only one customer's (a customer's token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Visible {
    #[default]
    All,
    Customer(String),
}

impl Visible {
    /// The condition that the row `row` of `W`'s status table is visible, its customer bound
    /// in `conditions`; `None` when every row is.
    fn condition<W: ReadModels>(&self, row: &str, conditions: &mut Conditions) -> Option<String> {
        match self {
            Self::All => None,
            Self::Customer(customer) => {
                let customer = conditions.bind(customer.clone());
                Some(W::owned_by(row, &customer))
            }
        }
    }

    /// Adds to `conditions` that the row `row` of `W`'s status table is visible.
    fn restrict<W: ReadModels>(&self, row: &str, conditions: &mut Conditions) {
        if let Some(condition) = self.condition::<W>(row, conditions) {
            conditions.push(condition);
        }
    }
}

/// Conditions on the rows of a status table, each value bound as a parameter.
#[derive(Default)]
pub struct Conditions {
    /// The conditions, joined with `and`.
    sql: Vec<String>,
    /// The values bound, `$1` first.
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Conditions {
    /// Binds `value` as the next parameter; returns its placeholder (`$n`).
    pub fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    /// Adds a condition written in SQL.
    pub fn push(&mut self, condition: impl Into<String>) {
        self.sql.push(condition.into());
    }

    /// Adds `column <operator> value`, `value` bound as a parameter.
    pub fn compare(
        &mut self,
        column: &str,
        operator: &str,
        value: impl ToSql + Sync + Send + 'static,
    ) {
        let placeholder = self.bind(value);
        self.push(format!("{column} {operator} {placeholder}"));
    }

    fn filter(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("where {}", self.sql.join(" and "))
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// At most `limit` instances matching `filter`, newest first by ([`ReadModels::LISTED_BY`], id)
/// descending (a stable order for cursors), strictly after `after` when given; only those
/// `visible`.
#[tracing::instrument(name = "read_model.list", skip_all, fields(table = W::STATUS_TABLE, limit = limit))]
pub async fn list<W: ReadModels>(
    client: &ClientWrapper,
    filter: &W::Filter,
    visible: &Visible,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<W::Record>, DbError> {
    let mut conditions = Conditions::default();
    W::conditions(filter, &mut conditions);
    visible.restrict::<W>(W::STATUS_TABLE, &mut conditions);
    if let Some((at, id)) = after {
        let (a, b) = (conditions.bind(at), conditions.bind(id));
        conditions.push(format!("({}, {}) < ({a}, {b})", W::LISTED_BY, W::ID_COLUMN));
    }
    let limit = conditions.bind(limit);
    let sql = format!(
        "select {} from {} {} order by {} desc, {} desc limit {limit}",
        select_list::<W>(),
        W::STATUS_TABLE,
        conditions.filter(),
        W::LISTED_BY,
        W::ID_COLUMN
    );
    let stmt = client.prepare_cached(&sql).await?;
    records::<W>(&client.query(&stmt, &conditions.params()).await?)
}

/// At most `limit` instances matching `filter` whose last applied event lies after `after`
/// (from the first when `None`) and at or before `upto`, in the order of those events in the
/// log; only among `ids` when given, and only those `visible`.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(name = "read_model.changed_between", skip_all, fields(table = W::STATUS_TABLE, after = ?after, upto = %upto, limit = limit))]
pub async fn changed_between<W: ReadModels>(
    client: &ClientWrapper,
    filter: &W::Filter,
    visible: &Visible,
    after: Option<Position>,
    upto: Position,
    ids: Option<&[Uuid]>,
    limit: i64,
) -> Result<Vec<W::Record>, DbError> {
    let mut conditions = Conditions::default();
    W::conditions(filter, &mut conditions);
    visible.restrict::<W>(W::STATUS_TABLE, &mut conditions);
    let at = "(last_position_commit, last_position_prepare)";
    if let Some(after) = after {
        let (c, p) = (
            conditions.bind(log_i64(after.commit)),
            conditions.bind(log_i64(after.prepare)),
        );
        conditions.push(format!("{at} > ({c}, {p})"));
    }
    let (c, p) = (
        conditions.bind(log_i64(upto.commit)),
        conditions.bind(log_i64(upto.prepare)),
    );
    conditions.push(format!("{at} <= ({c}, {p})"));
    if let Some(ids) = ids {
        let ids = conditions.bind(ids.to_vec());
        conditions.push(format!("{} = any({ids})", W::ID_COLUMN));
    }
    let limit = conditions.bind(limit);
    let sql = format!(
        "select {} from {} {} order by last_position_commit, last_position_prepare limit {limit}",
        select_list::<W>(),
        W::STATUS_TABLE,
        conditions.filter(),
    );
    let stmt = client.prepare_cached(&sql).await?;
    records::<W>(&client.query(&stmt, &conditions.params()).await?)
}

/// A log position's part as the status tables keep it (`bigint`).
fn log_i64(part: u64) -> i64 {
    i64::try_from(part).unwrap_or(i64::MAX)
}

/// At most `limit` overdue instances, the longest overdue first.
#[tracing::instrument(name = "read_model.stalled", skip_all, fields(table = W::STATUS_TABLE, limit = limit))]
pub async fn stalled<W: ReadModels>(
    client: &ClientWrapper,
    limit: i64,
) -> Result<Vec<W::Record>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select {} from {} where deadline_at < now() order by deadline_at, {} limit $1",
            select_list::<W>(),
            W::STATUS_TABLE,
            W::ID_COLUMN
        ))
        .await?;
    records::<W>(&client.query(&stmt, &[&limit]).await?)
}

/// One event in an order's history.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
#[graphql(name = "TimelineEntry")]
pub struct TimelineRecord {
    pub revision: i64,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The event's log position (a consistency token).
    pub position: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// A short human summary.
    pub summary: String,
    /// Who caused the event; null when it was recorded without a principal (authentication
    /// disabled, or recorded before principals were).
    pub principal: Option<TimelinePrincipal>,
}

/// Who caused an event: the authenticated caller of its command, or a service acting on its
/// own (e.g. subject `reconciler`, role `service`).
#[derive(Debug, Clone, PartialEq, Eq, async_graphql::SimpleObject)]
#[graphql(name = "Principal")]
pub struct TimelinePrincipal {
    /// The user or service account.
    pub subject: String,
    /// The role whose scopes it acted with.
    pub role: String,
    /// The OAuth2 client its token was issued to, when it names one.
    pub client: Option<String>,
}

/// The columns of a timeline table, in the order [`TimelineRecord::from_row`] reads them by
/// name (every workflow's table has them).
const TIMELINE_COLUMNS: &str = "revision, event_type, occurred_at, recorded_at, position,
    correlation_id, causation_id, summary, principal_subject, principal_role, principal_client";

impl TimelineRecord {
    /// Reads a row of a timeline table (every workflow's has the same columns).
    fn from_row(r: &Row) -> Result<Self, DbError> {
        Ok(Self {
            revision: column(r, "revision")?,
            event_type: column(r, "event_type")?,
            occurred_at: column(r, "occurred_at")?,
            recorded_at: column(r, "recorded_at")?,
            position: column(r, "position")?,
            correlation_id: column(r, "correlation_id")?,
            causation_id: column(r, "causation_id")?,
            summary: column(r, "summary")?,
            principal: match column::<Option<String>>(r, "principal_subject")? {
                None => None,
                Some(subject) => Some(TimelinePrincipal {
                    subject,
                    role: column::<Option<String>>(r, "principal_role")?.unwrap_or_default(),
                    client: column(r, "principal_client")?,
                }),
            },
        })
    }
}

/// The timelines of the instances `ids` in one query (a DataLoader's batch), oldest event
/// first; an instance with no event (or not `visible`) has an empty one.
#[tracing::instrument(name = "read_model.timelines", skip_all, fields(table = W::STATUS_TABLE, ids = ids.len()))]
pub async fn timelines<W: ReadModels>(
    client: &ClientWrapper,
    ids: &[Uuid],
    visible: &Visible,
) -> Result<HashMap<Uuid, Vec<TimelineRecord>>, DbError> {
    let mut conditions = Conditions::default();
    let placeholder = conditions.bind(ids.to_vec());
    conditions.push(format!("t.{} = any({placeholder})", W::ID_COLUMN));
    if let Some(owned) = visible.condition::<W>("s", &mut conditions) {
        conditions.push(format!(
            "exists (select 1 from {status} s where s.{id} = t.{id} and {owned})",
            status = W::STATUS_TABLE,
            id = W::ID_COLUMN,
        ));
    }
    let stmt = client
        .prepare_cached(&format!(
            "select t.{id}, {TIMELINE_COLUMNS}
               from {} t {} order by t.{id}, revision",
            W::TIMELINE_TABLE,
            conditions.filter(),
            id = W::ID_COLUMN,
        ))
        .await?;
    let mut out: HashMap<Uuid, Vec<TimelineRecord>> =
        ids.iter().map(|id| (*id, Vec::new())).collect();
    for r in client.query(&stmt, &conditions.params()).await? {
        out.entry(column(&r, W::ID_COLUMN)?)
            .or_default()
            .push(TimelineRecord::from_row(&r)?);
    }
    Ok(out)
}

/// The events of the instance `id` after its revision `after` (every one when `None`), oldest
/// first.
#[tracing::instrument(name = "read_model.timeline", skip_all, fields(table = W::STATUS_TABLE, id = %id, after = ?after))]
pub async fn timeline_after<W: ReadModels>(
    client: &ClientWrapper,
    id: Uuid,
    after: Option<i64>,
) -> Result<Vec<TimelineRecord>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select {TIMELINE_COLUMNS}
               from {} where {} = $1 and revision > $2 order by revision",
            W::TIMELINE_TABLE,
            W::ID_COLUMN,
        ))
        .await?;
    client
        .query(&stmt, &[&id, &after.unwrap_or(-1)])
        .await?
        .iter()
        .map(TimelineRecord::from_row)
        .collect()
}

/// How many instances are in each status, as the projection keeps them.
#[tracing::instrument(name = "read_model.status_counts", skip_all, fields(table = W::COUNTS_TABLE))]
pub async fn status_counts<W: ReadModels>(
    client: &ClientWrapper,
) -> Result<HashMap<W::Status, i64>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "select status, {} from {}",
            W::COUNT_COLUMN,
            W::COUNTS_TABLE
        ))
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok((
                label(r, "status", W::STATUS_KIND)?,
                column(r, W::COUNT_COLUMN)?,
            ))
        })
        .collect()
}

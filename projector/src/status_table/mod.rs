//! What every per-workflow projection of the "one status row per instance, a timeline, counts
//! by status" shape shares: the column list that makes its row ([`status_columns!`]), its SQL
//! parameterised by table and column names ([`db`]), the batch it works on ([`StatusBatch`]),
//! the timeline row and the checks every event passes before the workflow looks at it
//! ([`apply_event`]). A workflow's projection keeps only its column list, how an event changes
//! its row, and its deadlines.

pub mod columns;
pub mod db;
pub mod follow_up;

pub(crate) use columns::{column_index, status_columns, Bind};
pub use db::Statements;
pub use follow_up::{FollowUpColumns, DEFAULT_REMINDER_SPACING};

use crate::projection::Projection;
use crate::ProjectorError;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use event_store::{Principal, RecordedEvent};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use uuid::Uuid;

/// A row of a status table, as [`status_columns!`] defines it.
pub trait StatusRow: Clone + Send + Sync + 'static {
    /// The status table: one row per instance.
    const TABLE: &'static str;
    /// The timeline table: one row per applied event.
    const TIMELINE: &'static str;
    /// The table of instances per status, and its count column.
    const COUNTS: &'static str;
    const COUNT_COLUMN: &'static str;
    /// The three tables, for a rebuild to empty.
    const TABLES: &'static [&'static str];
    /// The status table's columns with their SQL types; the first is the key.
    const COLUMNS: &'static [(&'static str, &'static str)];

    /// A row selected with [`StatusRow::COLUMNS`], each column found by its name.
    ///
    /// # Errors
    /// When a column does not read as its field's type.
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error>;
    /// The row's values, in [`StatusRow::COLUMNS`]' order, as binary `COPY` takes them.
    fn copy_values(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)>;
    /// Each column of `rows` as one array parameter, in [`StatusRow::COLUMNS`]' order.
    fn bind_columns<'a>(
        rows: &[&'a Self],
    ) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send + 'a>>;
    /// The table's statements, built once.
    fn statements() -> &'static Statements;
    /// The instance's id (the key).
    fn id(&self) -> Uuid;
    fn status(&self) -> &str;
    /// The revision of the last event applied to the row.
    fn stream_revision(&self) -> i64;
    /// The follow-up columns every status table has.
    fn follow_up_columns(&mut self) -> FollowUpColumns<'_>;
    /// Records `event` (at `revision`, its position as `position`) as the row's last applied
    /// one, and its correlation id if the row has none yet.
    fn record(&mut self, revision: i64, event: &RecordedEvent, position: &str);
}

/// A row of a timeline table.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub order_id: Uuid,
    pub revision: i64,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: String,
    pub event_id: Uuid,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub summary: String,
    /// Who caused the event, as its metadata records it.
    pub principal: Option<Principal>,
}

/// Why an event cannot be applied to an instance's row, whatever the workflow; the event is
/// dead-lettered with this text. `noun` names the instance (`order`, `return`).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("malformed {event_type} event: {reason}")]
    Malformed { event_type: String, reason: String },
    #[error("stream '{stream}' is not {a_noun} stream")]
    NotItsStream {
        stream: String,
        a_noun: &'static str,
    },
    #[error("revision out of range")]
    RevisionOutOfRange,
    #[error("revision gap: the read model is at revision {at}, this event is revision {revision}")]
    RevisionGap { at: i64, revision: i64 },
    #[error("the read model has no row for this {noun}, but this event is revision {revision}")]
    NoRow { noun: &'static str, revision: i64 },
    #[error(transparent)]
    Decode(#[from] domain::DecodeError),
    #[error("{event_type} cannot be {a_noun}'s first event; {first} must come first")]
    NotFirst {
        event_type: String,
        a_noun: &'static str,
        first: &'static str,
    },
    #[error("stored state of the {noun} does not load: {source}")]
    StateDoesNotLoad {
        noun: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "stored state of the {noun} is in version {stored} of its form, this projector reads \
         version {reads}: rebuild the projection (`projector rebuild`)"
    )]
    StateVersion {
        noun: &'static str,
        stored: i32,
        reads: i32,
    },
    #[error("the {noun} does not serialise")]
    Serialise {
        noun: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// How a workflow names its instances in the texts of [`ApplyError`], and its first event.
#[derive(Debug, Clone, Copy)]
pub struct Noun {
    /// `order`
    pub noun: &'static str,
    /// `an order`
    pub a_noun: &'static str,
    /// The event an instance's stream must start with (`OrderPlaced`).
    pub first: &'static str,
}

impl Noun {
    /// `event` cannot start an instance's stream.
    pub fn not_first(self, event: &RecordedEvent) -> ApplyError {
        ApplyError::NotFirst {
            event_type: event.event_type.clone(),
            a_noun: self.a_noun,
            first: self.first,
        }
    }

    /// Serialises a row's value, which always works for domain types.
    ///
    /// # Errors
    /// When `value` does not serialise.
    pub fn to_json<T: serde::Serialize>(self, value: &T) -> Result<serde_json::Value, ApplyError> {
        serde_json::to_value(value).map_err(|source| ApplyError::Serialise {
            noun: self.noun,
            source,
        })
    }

    /// As [`Noun::to_json`], as a string.
    ///
    /// # Errors
    /// When `value` does not serialise.
    pub fn to_json_string<T: serde::Serialize>(self, value: &T) -> Result<String, ApplyError> {
        serde_json::to_string(value).map_err(|source| ApplyError::Serialise {
            noun: self.noun,
            source,
        })
    }

    /// The stored state of a row (`state`, written in `version` of its form), parsed, when
    /// this projector reads that version (`current`).
    ///
    /// # Errors
    /// When the state is in another version or does not parse.
    pub fn stored_state<T: serde::de::DeserializeOwned>(
        self,
        state: &str,
        version: i32,
        current: i32,
    ) -> Result<T, ApplyError> {
        if version != current {
            return Err(ApplyError::StateVersion {
                noun: self.noun,
                stored: version,
                reads: current,
            });
        }
        serde_json::from_str(state).map_err(|source| ApplyError::StateDoesNotLoad {
            noun: self.noun,
            source,
        })
    }
}

/// What the workflow's part of applying an event gets: the instance, the event's revision and
/// when it happened.
#[derive(Debug, Clone, Copy)]
pub struct Applying {
    pub id: Uuid,
    pub revision: i64,
    pub at: DateTime<Utc>,
}

/// Applies one event to an instance's row in place (`None` before its first event) and returns
/// its timeline entry, or `None` when the event was applied before (its revision is not newer
/// than the row's). The checks every workflow shares come first (malformed event, stream,
/// revision); then `change` (the workflow's part) changes the row, leaving it in `slot`, and
/// returns the event's summary; then the row records the event's revision, position and
/// correlation id.
///
/// # Errors
/// Why the event cannot be applied; the row is then unchanged and the caller dead-letters the
/// event.
pub fn apply_event<R: StatusRow>(
    slot: &mut Option<R>,
    id: Option<Uuid>,
    event: &RecordedEvent,
    noun: Noun,
    change: impl FnOnce(&mut Option<R>, Applying) -> Result<String, ApplyError>,
) -> Result<Option<TimelineRow>, ApplyError> {
    if let Some(reason) = &event.malformed {
        return Err(ApplyError::Malformed {
            event_type: event.event_type.clone(),
            reason: reason.clone(),
        });
    }
    let id = id.ok_or_else(|| ApplyError::NotItsStream {
        stream: event.stream_id.clone(),
        a_noun: noun.a_noun,
    })?;
    let revision = i64::try_from(event.revision).map_err(|_| ApplyError::RevisionOutOfRange)?;
    if let Some(row) = slot.as_ref() {
        let at = row.stream_revision();
        if revision <= at {
            return Ok(None);
        }
        if revision != at + 1 {
            return Err(ApplyError::RevisionGap { at, revision });
        }
    } else if revision != 0 {
        return Err(ApplyError::NoRow {
            noun: noun.noun,
            revision,
        });
    }
    // When the event happened: the command's time if it carried one, else when it was stored.
    let at = event.metadata.occurred_at.unwrap_or(event.recorded_at);
    let summary = change(slot, Applying { id, revision, at })?;
    let position = event.position.to_string();
    if let Some(row) = slot.as_mut() {
        row.record(revision, event, &position);
    }
    Ok(Some(TimelineRow {
        order_id: id,
        revision,
        event_type: event.event_type.clone(),
        occurred_at: at,
        recorded_at: event.recorded_at,
        position,
        event_id: event.id,
        correlation_id: event.metadata.correlation_id.clone(),
        causation_id: event.metadata.causation_id.clone(),
        summary,
        principal: event.metadata.principal.clone(),
    }))
}

/// Labels (pending actions, compensations) as a `text[]` column keeps them: their wire form.
pub fn labels<L: domain::Label>(labels: &[L]) -> Vec<String> {
    labels.iter().map(|l| l.as_str().to_owned()).collect()
}

/// The instances a batch works on.
#[derive(Debug)]
pub struct StatusBatch<R> {
    rows: HashMap<Uuid, R>,
    /// Each loaded instance's status before the batch, for the counts.
    before: HashMap<Uuid, String>,
    /// The instances changed, in the order first changed.
    touched: Vec<Uuid>,
    touched_set: HashSet<Uuid>,
    timeline: Vec<TimelineRow>,
}

impl<R: StatusRow> StatusBatch<R> {
    /// Loads the rows of the instances `events` belong to, in one statement; those `carried`
    /// holds are copied from it instead.
    pub fn load<'a, P: Projection>(
        tx: &'a Transaction<'_>,
        events: &[RecordedEvent],
        carried: Option<&Self>,
    ) -> impl Future<Output = Result<Self, ProjectorError>> + Send + 'a {
        let mut ids: Vec<Uuid> = events
            .iter()
            .filter_map(|e| P::instance_of(&e.stream_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut known = HashMap::new();
        if let Some(carried) = carried {
            ids.retain(|id| match carried.rows.get(id) {
                Some(row) => {
                    known.insert(*id, row.clone());
                    false
                }
                None => true,
            });
        }
        async move {
            let mut rows = if ids.is_empty() {
                HashMap::new()
            } else {
                db::load_rows::<R>(tx, &ids).await?
            };
            rows.extend(known);
            let before = rows
                .iter()
                .map(|(id, r)| (*id, r.status().to_owned()))
                .collect();
            Ok(Self {
                rows,
                before,
                touched: Vec::new(),
                touched_set: HashSet::new(),
                timeline: Vec::new(),
            })
        }
    }

    /// Applies one event to the row of instance `id` with `apply`: `Ok(true)` when applied,
    /// `Ok(false)` when it had been applied before.
    ///
    /// # Errors
    /// `apply`'s; the batch is then as it was before the event.
    pub fn apply<E>(
        &mut self,
        id: Option<Uuid>,
        apply: impl FnOnce(&mut Option<R>) -> Result<Option<TimelineRow>, E>,
    ) -> Result<bool, E> {
        let mut slot = id.and_then(|id| self.rows.remove(&id));
        let result = apply(&mut slot);
        if let Some(row) = slot {
            let id = row.id();
            if matches!(result, Ok(Some(_))) && self.touched_set.insert(id) {
                self.touched.push(id);
            }
            self.rows.insert(id, row);
        }
        match result? {
            None => Ok(false),
            Some(entry) => {
                self.timeline.push(entry);
                Ok(true)
            }
        }
    }

    /// Finishes each changed row with `seal` and returns the changed instances' ids, in the
    /// order first changed.
    ///
    /// # Errors
    /// When a row cannot be finished.
    pub fn seal<E: std::error::Error + Send + Sync + 'static>(
        &mut self,
        mut seal: impl FnMut(&mut R) -> Result<(), E>,
    ) -> Result<Vec<Uuid>, ProjectorError> {
        for id in &self.touched {
            if let Some(row) = self.rows.get_mut(id) {
                seal(row).map_err(|e| ProjectorError::Seal(Box::new(e)))?;
            }
        }
        Ok(self.touched.clone())
    }

    /// Writes the changed rows, the timeline entries and the counts' changes, pipelined in one
    /// go for the three tables (each `COPY` waits for the server's go-ahead).
    pub fn write<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send + 'a {
        let changed: Vec<&R> = self
            .touched
            .iter()
            .filter_map(|id| self.rows.get(id))
            .collect();
        let deltas = status_deltas(&self.before, &changed);
        let (existing, new): (Vec<&R>, Vec<&R>) = changed
            .iter()
            .partition(|row| self.before.contains_key(&row.id()));
        async move {
            futures::try_join!(
                db::write_rows(tx, &new, &existing),
                db::insert_timeline::<R>(tx, &self.timeline),
                async { Ok(db::add_status_counts::<R>(tx, &deltas).await?) },
            )?;
            Ok(())
        }
    }
}

fn status_deltas<R: StatusRow>(
    before: &HashMap<Uuid, String>,
    after: &[&R],
) -> HashMap<String, i64> {
    let mut deltas: HashMap<String, i64> = HashMap::new();
    for row in after {
        let old = before.get(&row.id());
        if old.map(String::as_str) != Some(row.status()) {
            if let Some(old) = old {
                *deltas.entry(old.clone()).or_default() -= 1;
            }
            *deltas.entry(row.status().to_owned()).or_default() += 1;
        }
    }
    deltas
}

/// A projection of this shape: one status row per instance, its timeline and counts by status.
/// Implementing it makes a [`Projection`]; the workflow says only what is its own.
pub trait StatusProjection: Send + Sync + 'static {
    /// As [`Projection::NAME`].
    const NAME: &'static str;
    /// As [`Projection::STREAM_PREFIX`].
    const STREAM_PREFIX: &'static str;
    /// Its read models' migrations (the runtime applies its own tables first).
    const MIGRATIONS: &'static [(&'static str, &'static str)];
    /// As [`Projection::CHANGED_KEY`].
    const CHANGED_KEY: &'static str;
    /// Its row, made by [`status_columns!`].
    type Row: StatusRow;

    /// How one event changes the row of instance `id` (from the event's stream), usually
    /// through [`apply_event`].
    ///
    /// # Errors
    /// Why the event cannot be applied; the row is then unchanged.
    fn apply(
        &self,
        slot: &mut Option<Self::Row>,
        id: Option<Uuid>,
        event: &RecordedEvent,
    ) -> Result<Option<TimelineRow>, ApplyError>;

    /// Finishes a changed row before it is written (its working state back into its columns).
    ///
    /// # Errors
    /// When the row cannot be finished.
    fn seal(row: &mut Self::Row) -> Result<(), ApplyError>;
}

impl<T: StatusProjection> Projection for T {
    const NAME: &'static str = <T as StatusProjection>::NAME;
    const STREAM_PREFIX: &'static str = <T as StatusProjection>::STREAM_PREFIX;
    const MIGRATIONS: &'static [(&'static str, &'static str)] = <T as StatusProjection>::MIGRATIONS;
    const TABLES: &'static [&'static str] = T::Row::TABLES;
    const CHANGED_KEY: &'static str = <T as StatusProjection>::CHANGED_KEY;

    type Batch = StatusBatch<T::Row>;
    type Error = ApplyError;

    fn load<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        events: &'a [RecordedEvent],
        carried: Option<&'a Self::Batch>,
    ) -> impl Future<Output = Result<Self::Batch, ProjectorError>> + Send + 'a {
        StatusBatch::load::<Self>(tx, events, carried)
    }

    fn apply(&self, batch: &mut Self::Batch, event: &RecordedEvent) -> Result<bool, ApplyError> {
        let id = Self::instance_of(&event.stream_id);
        batch.apply(id, |slot| StatusProjection::apply(self, slot, id, event))
    }

    fn seal(&self, batch: &mut Self::Batch) -> Result<Vec<Uuid>, ProjectorError> {
        batch.seal(T::seal)
    }

    fn write<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        batch: &'a Self::Batch,
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send + 'a {
        batch.write(tx)
    }
}

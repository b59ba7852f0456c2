//! The workflows the command line knows, by name: each gives its stream prefix, how its stored
//! events decode (through [`EventContract`]) and how its state at a point reads as JSON (the
//! [`Workflow`] queries, plus what the workflow adds in [`CliView`]). Adding a workflow is one
//! line in [`WORKFLOWS`] and one [`CliView`] impl.

use crate::CliError;
use domain::{EventContract, Label, Workflow};
use event_store::RecordedEvent;
use serde_json::{json, Map, Value};

/// Every workflow the command line serves; the first is the default of `--workflow`.
pub const WORKFLOWS: &[CliWorkflow] = &[
    CliWorkflow::of::<domain::Orders>("orders"),
    CliWorkflow::of::<domain::Returns>("returns"),
];

/// What a workflow adds to the command line's view of its state.
pub trait CliView: Workflow {
    /// Fields beside the kernel's (status, pending actions, compensations) in `state --json`.
    fn extra(state: &Self::State) -> Map<String, Value>;
    /// The text lines `state` prints for [`CliView::extra`]'s fields: (label, value).
    fn extra_text(extra: &Value) -> Vec<(&'static str, String)>;
}

impl CliView for domain::Orders {
    fn extra(state: &domain::OrderState) -> Map<String, Value> {
        let order = state.order();
        let mut extra = Map::new();
        extra.insert("total_minor".into(), json!(order.map(|o| o.total_minor)));
        extra.insert("currency".into(), json!(order.map(|o| o.currency.code())));
        extra
    }
    fn extra_text(extra: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "total",
            format!(
                "{} {} (minor units)",
                extra["total_minor"],
                extra["currency"].as_str().unwrap_or("")
            ),
        )]
    }
}

impl CliView for domain::Returns {
    fn extra(state: &domain::ReturnState) -> Map<String, Value> {
        let case = state.case();
        let mut extra = Map::new();
        extra.insert(
            "refund_due_minor".into(),
            json!(case.map(|c| c.refund_due_minor)),
        );
        extra.insert(
            "refunded_minor".into(),
            json!(case.map(|c| c.refunded_minor())),
        );
        extra.insert("currency".into(), json!(case.map(|c| c.currency.code())));
        extra
    }
    fn extra_text(extra: &Value) -> Vec<(&'static str, String)> {
        let currency = extra["currency"].as_str().unwrap_or("");
        vec![
            (
                "refund due",
                format!("{} {currency} (minor units)", extra["refund_due_minor"]),
            ),
            (
                "refunded",
                format!("{} {currency} (minor units)", extra["refunded_minor"]),
            ),
        ]
    }
}

/// An event's current schema version and data when it is stored in an older version, `None`
/// when it already is current; or why it cannot be upcast.
pub type Upcast = Result<Option<(u32, Value)>, String>;

/// One registered workflow, its types erased.
#[derive(Clone, Copy)]
pub struct CliWorkflow {
    /// The name `--workflow` takes (`orders`).
    pub name: &'static str,
    /// What one instance is called in messages and JSON keys (`order`, `order_id`).
    pub instance: &'static str,
    pub stream_prefix: &'static str,
    decode_summary: fn(&RecordedEvent) -> Result<String, String>,
    upcast: fn(&RecordedEvent) -> Upcast,
    fold: fn(&[&RecordedEvent]) -> Result<Value, CliError>,
    extra_text: fn(&Value) -> Vec<(&'static str, String)>,
}

impl std::fmt::Debug for CliWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliWorkflow")
            .field("name", &self.name)
            .field("stream_prefix", &self.stream_prefix)
            .finish_non_exhaustive()
    }
}

impl CliWorkflow {
    /// Workflow `W` under the name `name`.
    pub const fn of<W: CliView>(name: &'static str) -> Self {
        Self {
            name,
            instance: W::NAME,
            stream_prefix: W::STREAM_PREFIX,
            decode_summary: summarise::<W>,
            upcast: upcast::<W>,
            fold: fold::<W>,
            extra_text: W::extra_text,
        }
    }

    /// The workflow named `name`.
    ///
    /// # Errors
    /// [`CliError::Usage`] naming the known workflows.
    pub fn named(name: &str) -> Result<Self, CliError> {
        WORKFLOWS
            .iter()
            .find(|w| w.name == name)
            .copied()
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "unknown workflow '{name}'; known workflows: {}",
                    names().join(", ")
                ))
            })
    }

    /// The workflow whose streams `stream_id` belongs to, if any.
    pub fn of_stream(stream_id: &str) -> Option<Self> {
        WORKFLOWS
            .iter()
            .find(|w| stream_id.starts_with(w.stream_prefix))
            .copied()
    }

    /// The stream of instance `id` (a UUID).
    ///
    /// # Errors
    /// [`CliError::Usage`] when `id` is not a UUID.
    pub fn stream(&self, id: &str) -> Result<String, CliError> {
        let id = uuid::Uuid::parse_str(id.trim()).map_err(|e| {
            CliError::Usage(format!("{} id '{id}' is not a UUID: {e}", self.instance))
        })?;
        Ok(format!("{}{id}", self.stream_prefix))
    }

    /// A readable one-line summary of a stored event; why it does not decode otherwise.
    pub fn summary(&self, e: &RecordedEvent) -> String {
        (self.decode_summary)(e).unwrap_or_else(|err| format!("(cannot decode: {err})"))
    }

    /// The event's type's current schema version and its data in that version's layout, when
    /// it is stored in an older version; `None` when it already is the current one.
    ///
    /// # Errors
    /// Why the stored data cannot be upcast.
    pub fn upcast(&self, e: &RecordedEvent) -> Upcast {
        (self.upcast)(e)
    }

    /// The state after `events` (oldest first, at least one) as JSON.
    ///
    /// # Errors
    /// An event that does not decode.
    pub fn fold(&self, events: &[&RecordedEvent]) -> Result<Value, CliError> {
        (self.fold)(events)
    }

    /// The text lines for the workflow's own fields of a [`CliWorkflow::fold`] view.
    pub fn extra_text(&self, view: &Value) -> Vec<(&'static str, String)> {
        (self.extra_text)(view)
    }
}

/// The names `--workflow` takes.
pub fn names() -> Vec<&'static str> {
    WORKFLOWS.iter().map(|w| w.name).collect()
}

fn decode<W: Workflow>(e: &RecordedEvent) -> Result<W::Event, String> {
    if let Some(reason) = &e.malformed {
        return Err(format!("malformed: {reason}"));
    }
    W::Event::decode(&e.event_type, e.schema_version, &e.data).map_err(|e| e.to_string())
}

fn summarise<W: Workflow>(e: &RecordedEvent) -> Result<String, String> {
    decode::<W>(e).map(|d| d.summary())
}

fn upcast<W: Workflow>(e: &RecordedEvent) -> Upcast {
    if let Some(reason) = &e.malformed {
        return Err(format!("malformed: {reason}"));
    }
    let current = W::Event::TYPES
        .iter()
        .find(|t| t.name == e.event_type)
        .map(|t| t.version);
    if current == Some(e.schema_version) {
        return Ok(None);
    }
    W::Event::upcast(&e.event_type, e.schema_version, &e.data)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn labels<L: Label>(values: Vec<L>) -> Vec<&'static str> {
    values.iter().map(Label::as_str).collect()
}

fn fold<W: CliView>(events: &[&RecordedEvent]) -> Result<Value, CliError> {
    let mut decoded = Vec::with_capacity(events.len());
    for e in events {
        decoded.push(decode::<W>(e).map_err(|err| {
            CliError::Failed(format!("revision {} cannot be decoded: {err}", e.revision))
        })?);
    }
    let state = W::rebuild(&decoded);
    let last = events
        .last()
        .ok_or_else(|| CliError::Failed("no events".into()))?;
    let exists = W::status(&state).is_some();
    let id = last
        .stream_id
        .strip_prefix(W::STREAM_PREFIX)
        .unwrap_or(&last.stream_id);
    let mut view = Map::new();
    view.insert(format!("{}_id", W::NAME), json!(exists.then_some(id)));
    view.insert("as_of_revision".into(), json!(last.revision));
    view.insert("as_of".into(), json!(crate::occurred_at(last)));
    view.insert(
        "status".into(),
        json!(W::status(&state).map(|s| s.as_str())),
    );
    view.insert(
        "pending_actions".into(),
        json!(labels(W::pending_actions(&state))),
    );
    view.insert(
        "compensations_owed".into(),
        json!(exists.then(|| labels(W::compensations_owed(&state)))),
    );
    view.insert(
        "compensations_done".into(),
        json!(exists.then(|| labels(W::compensations_done(&state)))),
    );
    view.insert("last_event".into(), json!(last.event_type));
    view.extend(W::extra(&state));
    Ok(Value::Object(view))
}

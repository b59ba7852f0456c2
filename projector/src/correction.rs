//! Operators' repairs of logged events, applied by every projection in place of the event.

use event_store::{Metadata, RecordedEvent};
use std::borrow::Cow;
use std::collections::HashMap;
use uuid::Uuid;

/// An operator's repair of a logged event: what the projection applies in its place (a row
/// of `projection_corrections`).
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: Metadata,
}

impl Correction {
    /// The repair `fixed` carries, or `None` when it is the same as the `logged` event. A
    /// malformed logged event always needs one: what the dead letter holds (the fields that
    /// decoded) is the repair, or every replay would dead-letter the logged event again.
    pub fn of(fixed: &RecordedEvent, logged: Option<&RecordedEvent>) -> Option<Self> {
        let unchanged = logged.is_some_and(|logged| {
            logged.malformed.is_none()
                && (
                    &logged.event_type,
                    logged.schema_version,
                    &logged.data,
                    &logged.metadata,
                ) == (
                    &fixed.event_type,
                    fixed.schema_version,
                    &fixed.data,
                    &fixed.metadata,
                )
        });
        (!unchanged).then(|| Self {
            event_type: fixed.event_type.clone(),
            schema_version: fixed.schema_version,
            data: fixed.data.clone(),
            metadata: fixed.metadata.clone(),
        })
    }
}

/// `event` as the projection applies it: its correction when it has one, else as logged.
pub fn corrected<'a>(
    corrections: &HashMap<Uuid, Correction>,
    event: &'a RecordedEvent,
) -> Cow<'a, RecordedEvent> {
    match corrections.get(&event.id) {
        None => Cow::Borrowed(event),
        Some(c) => Cow::Owned(RecordedEvent {
            event_type: c.event_type.clone(),
            schema_version: c.schema_version,
            data: c.data.clone(),
            metadata: c.metadata.clone(),
            // The correction is what an operator made of it: well formed by construction.
            malformed: None,
            ..event.clone()
        }),
    }
}

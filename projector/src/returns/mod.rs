//! The returns projection: `return_status` (one row per return case, keyed by its order),
//! `return_timeline` (one row per event) and `return_status_counts`, kept from the `return-`
//! streams.

pub mod columns;
pub mod deadlines;
pub mod model;

pub use crate::status_table::{ApplyError as ReturnApplyError, TimelineRow};
pub use columns::{ReturnRow, RETURN_STATE_VERSION, RETURN_STATUS_COLUMNS};
pub use deadlines::{DeadlineSettingError, ReturnDeadlines};

use crate::status_table::{StatusProjection, DEFAULT_REMINDER_SPACING};
use crate::ProjectorError;
use domain::{Returns, Workflow};
use event_store::RecordedEvent;
use uuid::Uuid;

/// The returns read models' migrations, from `schemas/read-models/`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0006_return_read_models",
        include_str!("../../../schemas/read-models/0006_return_read_models.sql"),
    ),
    (
        "0009_return_follow_up",
        include_str!("../../../schemas/read-models/0009_return_follow_up.sql"),
    ),
    (
        "0012_return_follow_up_backfill",
        include_str!("../../../schemas/read-models/0012_return_follow_up_backfill.sql"),
    ),
    (
        "0014_return_timeline_principal",
        include_str!("../../../schemas/read-models/0014_return_timeline_principal.sql"),
    ),
];

/// Keeps the returns read models; `deadlines` set each row's `deadline_at`,
/// `reminder_spacing` the time between two reminders (`next_reminder_at`).
#[derive(Debug, Clone)]
pub struct ReturnProjection {
    pub deadlines: ReturnDeadlines,
    pub reminder_spacing: chrono::Duration,
}

impl ReturnProjection {
    pub fn new(deadlines: ReturnDeadlines) -> Self {
        Self {
            deadlines,
            reminder_spacing: DEFAULT_REMINDER_SPACING,
        }
    }

    /// The projection with `spacing` between two reminders.
    pub fn with_reminder_spacing(self, spacing: chrono::Duration) -> Self {
        Self {
            reminder_spacing: spacing,
            ..self
        }
    }

    /// The projection with its deadlines read from the environment
    /// (`MILESTONE_RETURN_DEADLINE_<STEP>_SECS`).
    ///
    /// # Errors
    /// When a deadline variable is set to something other than whole seconds.
    pub fn from_env() -> Result<Self, ProjectorError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`ReturnProjection::from_env`], with the variables read by `lookup`.
    ///
    /// # Errors
    /// When a deadline variable is set to something other than whole seconds.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProjectorError> {
        ReturnDeadlines::from_lookup(lookup)
            .map(Self::new)
            .map_err(|e| ProjectorError::Config {
                what: "the returns projection's deadlines".to_owned(),
                source: Box::new(e),
            })
    }
}

impl StatusProjection for ReturnProjection {
    const NAME: &'static str = "return_status";
    const STREAM_PREFIX: &'static str = Returns::STREAM_PREFIX;
    const MIGRATIONS: &'static [(&'static str, &'static str)] = MIGRATIONS;
    const CHANGED_KEY: &'static str = "returns";
    type Row = ReturnRow;

    fn apply(
        &self,
        slot: &mut Option<ReturnRow>,
        id: Option<Uuid>,
        event: &RecordedEvent,
    ) -> Result<Option<TimelineRow>, ReturnApplyError> {
        model::apply(slot, id, event, &self.deadlines, self.reminder_spacing)
    }

    fn seal(row: &mut ReturnRow) -> Result<(), ReturnApplyError> {
        row.seal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_return_deadline_setting_is_a_configuration_error_keeping_its_cause() {
        let err = ReturnProjection::from_lookup(|name| {
            (name == "MILESTONE_RETURN_DEADLINE_APPROVED_SECS").then(|| "soon".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("configuration"), "{err}");
        let cause = std::error::Error::source(&err).expect("the setting's error");
        assert!(
            cause
                .to_string()
                .contains("MILESTONE_RETURN_DEADLINE_APPROVED_SECS='soon'"),
            "{cause}"
        );
        assert!(cause.is::<DeadlineSettingError>(), "{cause}");
    }
}

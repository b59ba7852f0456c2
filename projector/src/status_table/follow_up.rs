//! The follow-up columns of every status table: how many reminders the instance's awaited work
//! has had, when the last one was recorded and when the reconciler next chases it. Derived from
//! the workflow's [`FollowUp`] after each event, the same way for every workflow.

use chrono::{DateTime, Utc};
use domain::kernel::FollowUp;
use domain::Label;

/// The time between two reminders of the same wait when `MILESTONE_REMINDER_SPACING_SECS` is
/// not set.
pub const DEFAULT_REMINDER_SPACING: chrono::Duration = chrono::Duration::minutes(15);

/// A status row's follow-up columns, borrowed to be derived.
#[derive(Debug)]
pub struct FollowUpColumns<'a> {
    pub reminder_attempts: &'a mut i32,
    pub last_reminder_at: &'a mut Option<DateTime<Utc>>,
    pub next_reminder_at: &'a mut Option<DateTime<Utc>>,
}

/// What an applied event left for the follow-up columns to show.
#[derive(Debug, Clone, Copy)]
pub struct Chase<'a, A> {
    /// The instance's bookkeeping after the event.
    pub follow_up: &'a FollowUp<A>,
    /// Its deadline step after the event (`None`: nothing is awaited).
    pub step: Option<&'a str>,
    /// The event was a reminder.
    pub reminded: bool,
    /// When the event happened.
    pub at: DateTime<Utc>,
    /// The row's deadline after the event.
    pub deadline_at: Option<DateTime<Utc>>,
    /// The time between two reminders.
    pub spacing: chrono::Duration,
}

impl<A: Label> Chase<'_, A> {
    /// Writes the follow-up columns. The first reminder is due at the deadline, each further
    /// one `spacing` after the last; an escalated step and an instance awaiting nothing have
    /// none.
    pub fn derive(self, columns: FollowUpColumns<'_>) {
        let reminders = self.follow_up.reminders();
        *columns.reminder_attempts = i32::try_from(reminders).unwrap_or(i32::MAX);
        if self.reminded {
            *columns.last_reminder_at = Some(self.at);
        }
        *columns.next_reminder_at = match self.deadline_at {
            None => None,
            Some(_) if self.follow_up.escalated_in(self.step) => None,
            Some(deadline) if reminders == 0 => Some(deadline),
            Some(deadline) => Some(
                columns
                    .last_reminder_at
                    .map_or(deadline, |last| last + self.spacing),
            ),
        };
    }
}

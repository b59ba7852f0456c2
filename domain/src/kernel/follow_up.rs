//! Chasing what an instance waits for, the same for every workflow: the reminders recorded for
//! each awaited action (by attempt number) and the escalation of a deadline step. A workflow
//! embeds one [`FollowUp`] in its state, asks it whether a reminder or an escalation is new, and
//! lets it forget what is no longer awaited after each event.

use super::Label;
use serde::{Deserialize, Serialize};

/// The attempt number of an action's first work request, published when it became pending.
pub const FIRST_ATTEMPT: u32 = 1;

/// Reminders and escalation of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp<A> {
    /// The last attempt recorded for each awaited action that was reminded (2 or more).
    #[serde(default = "Vec::new")]
    attempts: Vec<(A, u32)>,
    /// The deadline step the last escalation was recorded in.
    #[serde(default)]
    escalated_step: Option<String>,
}

impl<A> Default for FollowUp<A> {
    fn default() -> Self {
        Self {
            attempts: Vec::new(),
            escalated_step: None,
        }
    }
}

/// Why a reminder cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReminderRefusal {
    #[error("{action} is not awaited; only a pending action can be reminded")]
    NotAwaited { action: &'static str },
    #[error(
        "attempt {attempt} of {action} cannot be recorded now; the next attempt is {expected}"
    )]
    NotNextAttempt {
        action: &'static str,
        attempt: u32,
        expected: u32,
    },
}

impl ReminderRefusal {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAwaited { .. } => "reminder_not_awaited",
            Self::NotNextAttempt { .. } => "reminder_out_of_order",
        }
    }
}

impl<A: Label> FollowUp<A> {
    /// The last attempt recorded for `action` ([`FIRST_ATTEMPT`] before any reminder).
    pub fn attempt(&self, action: A) -> u32 {
        self.attempts
            .iter()
            .find(|(a, _)| *a == action)
            .map_or(FIRST_ATTEMPT, |(_, n)| *n)
    }

    /// The attempt the next reminder of `action` stands for.
    pub fn next_attempt(&self, action: A) -> u32 {
        self.attempt(action).saturating_add(1)
    }

    /// How many reminders the most reminded awaited action has had.
    pub fn reminders(&self) -> u32 {
        self.attempts
            .iter()
            .map(|(_, n)| n - FIRST_ATTEMPT)
            .max()
            .unwrap_or(0)
    }

    /// Whether a reminder of `action` as `attempt` is new (`true`: record it) or a repeat of
    /// one already recorded (`false`: nothing to do), while `pending` are awaited.
    ///
    /// # Errors
    /// The action is not awaited, or `attempt` is neither recorded nor the next one.
    pub fn check_reminder(
        &self,
        pending: &[A],
        action: A,
        attempt: u32,
    ) -> Result<bool, ReminderRefusal> {
        if !pending.contains(&action) {
            return Err(ReminderRefusal::NotAwaited {
                action: action.as_str(),
            });
        }
        let last = self.attempt(action);
        let next = last.saturating_add(1);
        if attempt == next {
            Ok(true)
        } else if (FIRST_ATTEMPT + 1..=last).contains(&attempt) {
            Ok(false)
        } else {
            Err(ReminderRefusal::NotNextAttempt {
                action: action.as_str(),
                attempt,
                expected: next,
            })
        }
    }

    /// Records a reminder of `action` as `attempt`.
    pub fn record_reminder(&mut self, action: A, attempt: u32) {
        match self.attempts.iter_mut().find(|(a, _)| *a == action) {
            Some((_, n)) => *n = (*n).max(attempt),
            None => self.attempts.push((action, attempt)),
        }
    }

    /// Whether the instance was already escalated in `step` (its current deadline step).
    pub fn escalated_in(&self, step: Option<&str>) -> bool {
        step.is_some() && self.escalated_step.as_deref() == step
    }

    /// Records an escalation in `step`.
    pub fn record_escalation(&mut self, step: Option<&str>) {
        self.escalated_step = step.map(str::to_owned);
    }

    /// After an event: forgets the reminders of actions no longer awaited (an action that is
    /// awaited again starts from its first request).
    pub fn settle(&mut self, pending: &[A]) {
        self.attempts.retain(|(a, _)| pending.contains(a));
    }
}

//! How long each step of a return may take before it counts as overdue: one duration per
//! deadline step the returns workflow names (`Returns::DEADLINE_STEPS`), each overridable by
//! `MILESTONE_RETURN_DEADLINE_<STEP>_SECS`.

use domain::{Returns, Workflow, COMPENSATION_STEP};
use std::collections::BTreeMap;

/// The time allowed in each step when the environment sets none.
pub const DEFAULT_DEADLINES: &[(&str, chrono::TimeDelta)] = &[
    // staff to approve or reject
    ("REQUESTED", chrono::TimeDelta::hours(48)),
    // the customer's parcel to arrive
    ("APPROVED", chrono::TimeDelta::days(14)),
    // the refund to be issued after inspection
    ("RECEIVED", chrono::TimeDelta::hours(72)),
    // items that arrived after cancellation to be shipped back
    (COMPENSATION_STEP, chrono::TimeDelta::hours(48)),
];

/// A deadline setting that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "{variable}='{value}' is not a whole number of seconds between 0 and {}",
    u32::MAX
)]
pub struct DeadlineSettingError {
    pub variable: String,
    pub value: String,
    #[source]
    pub source: std::num::ParseIntError,
}

/// The time allowed in each of the returns workflow's deadline steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnDeadlines {
    by_step: BTreeMap<&'static str, chrono::Duration>,
}

impl Default for ReturnDeadlines {
    fn default() -> Self {
        Self {
            by_step: Returns::DEADLINE_STEPS
                .iter()
                .map(|step| (*step, default_for(step)))
                .collect(),
        }
    }
}

fn default_for(step: &str) -> chrono::Duration {
    DEFAULT_DEADLINES
        .iter()
        .find(|(s, _)| *s == step)
        .map_or_else(chrono::Duration::zero, |(_, d)| *d)
}

impl ReturnDeadlines {
    /// The environment variable that sets `step`'s deadline.
    pub fn variable(step: &str) -> String {
        format!("MILESTONE_RETURN_DEADLINE_{step}_SECS")
    }

    /// The defaults, each overridden by its `MILESTONE_RETURN_DEADLINE_<STEP>_SECS` when set.
    ///
    /// # Errors
    /// The first variable whose value is not a whole number of seconds.
    pub fn from_env() -> Result<Self, DeadlineSettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`ReturnDeadlines::from_env`], with the variables read by `lookup`.
    ///
    /// # Errors
    /// The first variable whose value is not a whole number of seconds.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DeadlineSettingError> {
        let mut deadlines = Self::default();
        for step in Returns::DEADLINE_STEPS {
            let variable = Self::variable(step);
            if let Some(value) = lookup(&variable) {
                let secs: u32 = value
                    .trim()
                    .parse()
                    .map_err(|source| DeadlineSettingError {
                        variable: variable.clone(),
                        value: value.clone(),
                        source,
                    })?;
                deadlines
                    .by_step
                    .insert(step, chrono::Duration::seconds(i64::from(secs)));
            }
        }
        Ok(deadlines)
    }

    /// The same deadlines with `step`'s set to `duration`.
    #[must_use]
    pub fn with(mut self, step: &'static str, duration: chrono::Duration) -> Self {
        self.by_step.insert(step, duration);
        self
    }

    /// The time allowed in `step`, one of `Returns::DEADLINE_STEPS` (zero for any other).
    pub fn for_step(&self, step: &str) -> chrono::Duration {
        self.by_step
            .get(step)
            .copied()
            .unwrap_or_else(chrono::Duration::zero)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_deadline_step_of_the_returns_workflow_has_a_default() {
        for step in Returns::DEADLINE_STEPS {
            assert!(
                DEFAULT_DEADLINES.iter().any(|(s, _)| s == step),
                "no default deadline for {step}"
            );
        }
        assert_eq!(DEFAULT_DEADLINES.len(), Returns::DEADLINE_STEPS.len());
    }

    #[test]
    fn a_deadline_variable_overrides_only_its_step() {
        let deadlines = ReturnDeadlines::from_lookup(|name| {
            (name == "MILESTONE_RETURN_DEADLINE_APPROVED_SECS").then(|| "600".to_owned())
        })
        .unwrap();
        assert_eq!(
            deadlines.for_step("APPROVED"),
            chrono::Duration::seconds(600)
        );
        assert_eq!(deadlines.for_step("REQUESTED"), chrono::Duration::hours(48));
    }

    #[test]
    fn a_deadline_variable_that_is_not_whole_seconds_is_refused_naming_it() {
        for bad in ["soon", "-5", "1.5"] {
            let err = ReturnDeadlines::from_lookup(|name| {
                (name == "MILESTONE_RETURN_DEADLINE_COMPENSATION_SECS").then(|| bad.to_owned())
            })
            .unwrap_err();
            assert!(
                err.to_string()
                    .contains("MILESTONE_RETURN_DEADLINE_COMPENSATION_SECS"),
                "{err}"
            );
            assert!(std::error::Error::source(&err).is_some());
        }
    }
}

//! The workflow kernel: what every workflow declares, once, so the machinery (command pipeline,
//! projection runtime, analyst tools, relay) is written once against it.
//!
//! - [`Workflow`]: the decider (`decide`, `evolve`, the initial state) plus what the machinery
//!   needs to know about a state: its status, the actions it waits for, the compensations it
//!   owes and which deadline applies to it.
//! - [`EventContract`]: each event's stable type name, its own schema version and the decoding
//!   of stored data through upcasters from older versions. Declared with [`event_contract!`] so
//!   each type name is written once.
//! - [`FollowUp`]: reminders per awaited action and one escalation per deadline step, kept
//!   inside each workflow's state.
//! - [`Spec`]: given events / when command / then events or error, for any workflow's tests.

mod contract;
mod follow_up;
mod spec;

#[cfg(test)]
mod tests;

pub use contract::{DecodeError, EventContract, EventType, Upcaster};
pub use follow_up::{FollowUp, ReminderRefusal, FIRST_ATTEMPT};
pub use spec::{Spec, Then};

use std::fmt::Debug;
use std::hash::Hash;

/// A closed set of names that travel on the wire (statuses, pending actions, compensations):
/// `SCREAMING_SNAKE_CASE` text in responses, read models and GraphQL enums.
pub trait Label: Copy + Eq + Hash + Debug + Send + Sync + 'static {
    /// Every value, in the workflow's order.
    const ALL: &'static [Self];

    /// The wire form, e.g. `IN_FULFILLMENT`.
    fn as_str(&self) -> &'static str;

    /// The value whose wire form is `text`, if any.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == text)
    }
}

/// A business workflow in decider style. Pure: no I/O, no clock; anything from outside (other
/// workflows' facts, the time a command is handled) arrives inside the command.
pub trait Workflow: Send + Sync + 'static {
    /// The workflow's name in routes, read-model tables, CLI flags and metrics (`order`).
    const NAME: &'static str;
    /// Every stream of this workflow is named `<STREAM_PREFIX><instance id>` (`order-`).
    const STREAM_PREFIX: &'static str;

    type Command: Clone + Debug + Send + Sync;
    type Event: EventContract + Send + Sync;
    /// The state before the first event is `State::default()`.
    type State: Default + Clone + Debug + Send + Sync;
    type Error: std::error::Error + Clone + PartialEq + Send + Sync + 'static;
    type Status: Label;
    type Action: Label;
    type Compensation: Label;

    /// The events a command produces in `state`; an empty list is a successful no-op (a fact
    /// reported again).
    ///
    /// # Errors
    /// A named error for a command the workflow's rules refuse in `state`.
    fn decide(state: &Self::State, command: Self::Command)
        -> Result<Vec<Self::Event>, Self::Error>;

    /// Applies one event. Total: an event that does not fit leaves the state as it was.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// The status, once the instance exists.
    fn status(state: &Self::State) -> Option<Self::Status>;

    /// What the instance waits for next, in the order it is expected.
    fn pending_actions(state: &Self::State) -> Vec<Self::Action>;

    /// Compensations owed and not yet done.
    fn compensations_owed(state: &Self::State) -> Vec<Self::Compensation>;

    /// Compensations already done.
    fn compensations_done(state: &Self::State) -> Vec<Self::Compensation>;

    /// Which configured deadline applies while the instance is in `state` (e.g. `PLACED`, or
    /// `COMPENSATION` while compensations are owed); `None` when nothing is awaited.
    fn deadline_step(state: &Self::State) -> Option<&'static str>;

    /// Every deadline step [`Workflow::deadline_step`] can name, so configuration can be
    /// checked and documented.
    const DEADLINE_STEPS: &'static [&'static str];

    /// When `event` is a reminder recorded for an action still awaited: the action and the
    /// attempt it stands for. Attempt 1 is the work request published when the action became
    /// pending; the first reminder is attempt 2. The relay publishes the action's work request
    /// again for each reminder. Workflows without reminders keep the default.
    fn reminder(_event: &Self::Event) -> Option<(Self::Action, u32)> {
        None
    }

    /// Folds a history into a state.
    fn rebuild<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events
            .into_iter()
            .fold(Self::State::default(), Self::evolve)
    }

    /// The stream name of one instance.
    fn stream_name(instance: impl std::fmt::Display) -> String {
        format!("{}{instance}", Self::STREAM_PREFIX)
    }
}

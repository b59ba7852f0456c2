//! Given events / when command / then events or error: the shape of every workflow's tests.
//! Whole events and typed errors are compared, so a test pins every field a command records.

use super::Workflow;

/// A workflow instance's history, before a command.
///
/// ```ignore
/// Spec::<Orders>::given([placed(), authorized()])
///     .when(OrderCommand::CancelOrder { reason })
///     .then([OrderEvent::OrderCancelled { reason }]);
/// ```
pub struct Spec<W: Workflow> {
    state: W::State,
}

impl<W: Workflow> Spec<W> {
    /// The instance as these events left it (none: it does not exist yet).
    pub fn given(events: impl IntoIterator<Item = W::Event>) -> Self {
        let events: Vec<W::Event> = events.into_iter().collect();
        Self {
            state: W::rebuild(&events),
        }
    }

    /// The instance as these commands left it; each must be accepted.
    ///
    /// # Panics
    /// When one of the commands is refused: the history itself is wrong.
    #[track_caller]
    pub fn given_commands(commands: impl IntoIterator<Item = W::Command>) -> Self {
        let mut state = W::State::default();
        for command in commands {
            let events = W::decide(&state, command.clone())
                .unwrap_or_else(|e| panic!("given {command:?}: refused: {e}"));
            state = events.iter().fold(state, W::evolve);
        }
        Self { state }
    }

    /// Decides `command` against the history.
    pub fn when(self, command: W::Command) -> Then<W> {
        let result = W::decide(&self.state, command.clone());
        Then {
            state: self.state,
            command: format!("{command:?}"),
            result,
        }
    }
}

/// What a command decided, to be checked.
pub struct Then<W: Workflow> {
    state: W::State,
    command: String,
    result: Result<Vec<W::Event>, W::Error>,
}

impl<W: Workflow> Then<W> {
    /// Asserts the command produced exactly these events; returns the state after them.
    ///
    /// # Panics
    /// When the command was refused or produced other events.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = W::Event>) -> W::State {
        let expected: Vec<W::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(
                    events, expected,
                    "when {}: the events differ from the expected ones",
                    self.command
                );
                events.iter().fold(self.state, W::evolve)
            }
            Err(e) => panic!(
                "when {}: expected events {expected:?}, but it was refused: {e} ({e:?})",
                self.command
            ),
        }
    }

    /// Asserts the command was accepted and recorded nothing (a fact reported again).
    ///
    /// # Panics
    /// When the command was refused or produced events.
    #[track_caller]
    pub fn then_nothing(self) -> W::State {
        self.then([])
    }

    /// Asserts the command was refused with exactly this error.
    ///
    /// # Panics
    /// When the command was accepted or refused with another error.
    #[track_caller]
    pub fn then_error(self, expected: W::Error) {
        match self.result {
            Ok(events) => panic!(
                "when {}: expected the error {expected:?}, but it produced {events:?}",
                self.command
            ),
            Err(e) => assert_eq!(
                e, expected,
                "when {}: refused with another error",
                self.command
            ),
        }
    }

    /// The decision itself, for checks the helpers above do not cover.
    pub fn result(&self) -> &Result<Vec<W::Event>, W::Error> {
        &self.result
    }
}

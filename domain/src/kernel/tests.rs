//! The kernel on a small workflow of its own: a ticket that is opened, then closed, whose
//! `TicketOpened` event went through two layouts before its current one.

use super::*;
use crate::event_contract;
use serde_json::{json, Value};

event_contract! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TicketEvent {
        TicketOpened(version 3) { title: String, priority: u8 },
        TicketClosed(version 1) {},
    }
    upcasters = &[
        // v1 -> v2: `name` became `title`.
        Upcaster { event_type: "TicketOpened", from_version: 1, upcast: rename_name_to_title },
        // v2 -> v3: `priority` added, defaulting to 3.
        Upcaster { event_type: "TicketOpened", from_version: 2, upcast: add_priority },
    ];
    fn summary(&self) -> String {
        format!("{self:?}")
    }
}

fn rename_name_to_title(mut data: Value) -> Result<Value, String> {
    let name = data
        .as_object_mut()
        .and_then(|o| o.remove("name"))
        .ok_or("no `name`")?;
    data["title"] = name;
    Ok(data)
}

fn add_priority(mut data: Value) -> Result<Value, String> {
    data["priority"] = json!(3);
    Ok(data)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TicketStatus {
    Open,
    Closed,
}

impl Label for TicketStatus {
    const ALL: &'static [Self] = &[Self::Open, Self::Closed];
    fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Closed => "CLOSED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Nothing {}

impl Label for Nothing {
    const ALL: &'static [Self] = &[];
    fn as_str(&self) -> &'static str {
        match *self {}
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TicketCommand {
    Open { title: String },
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TicketError {
    #[error("no such ticket")]
    NotFound,
    #[error("the ticket is closed")]
    Closed,
}

struct Tickets;

impl Workflow for Tickets {
    const NAME: &'static str = "ticket";
    const STREAM_PREFIX: &'static str = "ticket-";
    const DEADLINE_STEPS: &'static [&'static str] = &["OPEN"];
    type Command = TicketCommand;
    type Event = TicketEvent;
    type State = Option<TicketStatus>;
    type Error = TicketError;
    type Status = TicketStatus;
    type Action = TicketStatus;
    type Compensation = Nothing;

    fn decide(
        state: &Self::State,
        command: TicketCommand,
    ) -> Result<Vec<TicketEvent>, TicketError> {
        match (state, command) {
            (None, TicketCommand::Open { title }) => {
                Ok(vec![TicketEvent::TicketOpened { title, priority: 3 }])
            }
            (None, TicketCommand::Close) => Err(TicketError::NotFound),
            (Some(TicketStatus::Open), TicketCommand::Close) => {
                Ok(vec![TicketEvent::TicketClosed {}])
            }
            (Some(TicketStatus::Open), TicketCommand::Open { .. }) => Ok(vec![]),
            (Some(TicketStatus::Closed), _) => Err(TicketError::Closed),
        }
    }
    fn evolve(_: Self::State, event: &TicketEvent) -> Self::State {
        Some(match event {
            TicketEvent::TicketOpened { .. } => TicketStatus::Open,
            TicketEvent::TicketClosed {} => TicketStatus::Closed,
        })
    }
    fn status(state: &Self::State) -> Option<TicketStatus> {
        *state
    }
    fn pending_actions(state: &Self::State) -> Vec<TicketStatus> {
        state
            .iter()
            .copied()
            .filter(|s| *s == TicketStatus::Open)
            .collect()
    }
    fn compensations_owed(_: &Self::State) -> Vec<Nothing> {
        vec![]
    }
    fn compensations_done(_: &Self::State) -> Vec<Nothing> {
        vec![]
    }
    fn deadline_step(state: &Self::State) -> Option<&'static str> {
        (*state == Some(TicketStatus::Open)).then_some("OPEN")
    }
}

fn opened(title: &str) -> TicketEvent {
    TicketEvent::TicketOpened {
        title: title.to_owned(),
        priority: 3,
    }
}

#[test]
fn each_event_carries_its_own_type_name_and_schema_version() {
    let event = opened("printer on fire");
    assert_eq!(event.event_type(), "TicketOpened");
    assert_eq!(event.schema_version(), 3);
    assert_eq!(TicketEvent::TicketClosed {}.schema_version(), 1);
    assert_eq!(
        event.data(),
        json!({"title": "printer on fire", "priority": 3})
    );
    assert_eq!(
        TicketEvent::decode("TicketOpened", 3, &event.data()).unwrap(),
        event
    );
}

#[test]
fn older_versions_are_upcast_step_by_step_to_the_current_one() {
    let v1 = json!({"name": "printer on fire"});
    assert_eq!(
        TicketEvent::decode("TicketOpened", 1, &v1).unwrap(),
        opened("printer on fire")
    );
    let v2 = json!({"title": "printer on fire"});
    assert_eq!(
        TicketEvent::decode("TicketOpened", 2, &v2).unwrap(),
        opened("printer on fire")
    );
}

#[test]
fn decoding_names_what_is_wrong() {
    assert!(matches!(
        TicketEvent::decode("TicketExploded", 1, &json!({})),
        Err(DecodeError::UnknownType(t)) if t == "TicketExploded"
    ));
    assert!(matches!(
        TicketEvent::decode("TicketOpened", 4, &json!({})),
        Err(DecodeError::UnsupportedVersion { version: 4, .. })
    ));
    assert!(matches!(
        TicketEvent::decode("TicketOpened", 0, &json!({})),
        Err(DecodeError::UnsupportedVersion { version: 0, .. })
    ));
    // A version with no upcaster to the next one cannot be read.
    assert!(matches!(
        TicketEvent::decode("TicketClosed", 0, &json!({})),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        TicketEvent::decode("TicketOpened", 1, &json!({"title": "x"})),
        Err(DecodeError::Upcast { version: 1, .. })
    ));
    assert!(matches!(
        TicketEvent::decode("TicketOpened", 3, &json!({"title": 7, "priority": 1})),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn labels_parse_their_wire_form() {
    assert_eq!(TicketStatus::parse("CLOSED"), Some(TicketStatus::Closed));
    assert_eq!(TicketStatus::parse("closed"), None);
    assert_eq!(Tickets::stream_name(7), "ticket-7");
}

#[test]
fn spec_checks_whole_events_and_returns_the_state_after_them() {
    let state = Spec::<Tickets>::given([])
        .when(TicketCommand::Open {
            title: "printer on fire".to_owned(),
        })
        .then([opened("printer on fire")]);
    assert_eq!(state, Some(TicketStatus::Open));
    Spec::<Tickets>::given([opened("a")])
        .when(TicketCommand::Open {
            title: "a".to_owned(),
        })
        .then_nothing();
    Spec::<Tickets>::given([opened("a"), TicketEvent::TicketClosed {}])
        .when(TicketCommand::Close)
        .then_error(TicketError::Closed);
    Spec::<Tickets>::given_commands([TicketCommand::Open {
        title: "a".to_owned(),
    }])
    .when(TicketCommand::Close)
    .then([TicketEvent::TicketClosed {}]);
}

#[test]
#[should_panic(expected = "the events differ")]
fn spec_fails_when_a_field_of_an_event_differs() {
    Spec::<Tickets>::given([])
        .when(TicketCommand::Open {
            title: "printer on fire".to_owned(),
        })
        .then([opened("printer on ice")]);
}

#[test]
#[should_panic(expected = "refused with another error")]
fn spec_fails_on_another_error() {
    Spec::<Tickets>::given([opened("a"), TicketEvent::TicketClosed {}])
        .when(TicketCommand::Close)
        .then_error(TicketError::NotFound);
}

#[test]
#[should_panic(expected = "but it was refused")]
fn spec_fails_when_events_were_expected_but_the_command_was_refused() {
    Spec::<Tickets>::given([])
        .when(TicketCommand::Close)
        .then([TicketEvent::TicketClosed {}]);
}

#[test]
#[should_panic(expected = "but it produced")]
fn spec_fails_when_an_error_was_expected_but_events_came() {
    Spec::<Tickets>::given([opened("a")])
        .when(TicketCommand::Close)
        .then_error(TicketError::Closed);
}

#[test]
#[should_panic(expected = "refused")]
fn spec_refuses_a_history_of_commands_that_cannot_happen() {
    let _ = Spec::<Tickets>::given_commands([TicketCommand::Close]);
}

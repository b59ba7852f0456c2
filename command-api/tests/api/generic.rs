//! The command pipeline knows no order: a small ticket workflow declared here runs through the
//! same `execute` against the PostgreSQL event store — created, acted on, replayed by key,
//! refused and replayed, pinned with If-Match.

use actix_web::ResponseError;
use command_api::error::ApiError;
use command_api::service::{execute, CommandContext, Executed};
use command_api::workflow::{InstanceId, Refusal, RefusalKind, WorkflowApi};
use domain::{event_contract, Label, Workflow};
use event_store::{read_whole_stream, EventStore, StoreOptions};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

event_contract! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TicketEvent {
        TicketOpened(version 1) { title: String },
        TicketClosed(version 1) {},
    }
    upcasters = &[];
    fn summary(&self) -> String {
        format!("{self:?}")
    }
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
enum TicketAction {
    Close,
}

impl Label for TicketAction {
    const ALL: &'static [Self] = &[Self::Close];
    fn as_str(&self) -> &'static str {
        "CLOSE"
    }
}

#[derive(Debug, Clone)]
enum TicketCommand {
    Open { title: String },
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TicketError {
    #[error("no such ticket; open it first")]
    NotFound,
    #[error("the ticket is already open")]
    AlreadyOpen,
}

impl Refusal for TicketError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "ticket_not_found",
            Self::AlreadyOpen => "ticket_already_open",
        }
    }
    fn kind(&self) -> RefusalKind {
        match self {
            Self::NotFound => RefusalKind::NotFound,
            Self::AlreadyOpen => RefusalKind::Conflict,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TicketId(Uuid);

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl InstanceId for TicketId {
    type Workflow = Tickets;
}

struct Tickets;

impl Workflow for Tickets {
    const NAME: &'static str = "ticket";
    const STREAM_PREFIX: &'static str = "ticket-";
    const DEADLINE_STEPS: &'static [&'static str] = &[];
    type Command = TicketCommand;
    type Event = TicketEvent;
    type State = Option<TicketStatus>;
    type Error = TicketError;
    type Status = TicketStatus;
    type Action = TicketAction;
    type Compensation = TicketAction;

    fn decide(
        state: &Self::State,
        command: TicketCommand,
    ) -> Result<Vec<TicketEvent>, TicketError> {
        match (state, command) {
            (None, TicketCommand::Open { title }) => Ok(vec![TicketEvent::TicketOpened { title }]),
            (Some(_), TicketCommand::Open { .. }) => Err(TicketError::AlreadyOpen),
            (None, TicketCommand::Close) => Err(TicketError::NotFound),
            (Some(TicketStatus::Open), TicketCommand::Close) => {
                Ok(vec![TicketEvent::TicketClosed {}])
            }
            // Closing a closed ticket reports a known fact again.
            (Some(TicketStatus::Closed), TicketCommand::Close) => Ok(vec![]),
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
    fn pending_actions(state: &Self::State) -> Vec<TicketAction> {
        match state {
            Some(TicketStatus::Open) => vec![TicketAction::Close],
            _ => vec![],
        }
    }
    fn compensations_owed(_: &Self::State) -> Vec<TicketAction> {
        vec![]
    }
    fn compensations_done(_: &Self::State) -> Vec<TicketAction> {
        vec![]
    }
    fn deadline_step(_: &Self::State) -> Option<&'static str> {
        None
    }
}

impl WorkflowApi for Tickets {
    type Id = TicketId;
    const ID_FIELD: &'static str = "ticket_id";
    const COLLECTION: &'static str = "/tickets";
    const HISTORY_UNREADABLE_CODE: &'static str = "ticket_history_unreadable";

    fn creates(command: &TicketCommand) -> bool {
        matches!(command, TicketCommand::Open { .. })
    }
    fn id_from_uuid(uuid: Uuid) -> TicketId {
        TicketId(uuid)
    }
    fn parse_id(raw: &str) -> Result<TicketId, String> {
        Uuid::parse_str(raw)
            .map(TicketId)
            .map_err(|e| e.to_string())
    }
    fn refusal_title(kind: RefusalKind) -> &'static str {
        match kind {
            RefusalKind::NotFound => "Ticket not found",
            RefusalKind::Conflict => "Not allowed for the ticket now",
            RefusalKind::Invalid => "Command contradicts the ticket",
        }
    }
}

async fn store() -> Arc<dyn EventStore> {
    let url = test_support::fresh_database().await;
    event_store::connect(&url, &StoreOptions { pool_size: 4 })
        .await
        .unwrap()
}

fn ctx(key: Option<&str>, if_match: Option<u64>, hash: &str) -> CommandContext {
    CommandContext {
        idempotency_key: key.map(str::to_owned),
        if_match,
        correlation_id: format!("corr-{}", Uuid::new_v4()),
        request_hash: key.map(|_| hash.to_owned()),
        causation_id: None,
        principal: None,
    }
}

fn json(executed: &Executed) -> serde_json::Value {
    serde_json::to_value(&executed.outcome).unwrap()
}

#[tokio::test]
async fn a_second_workflow_runs_through_the_same_pipeline_with_replays_refusals_and_if_match() {
    let store = store().await;
    let ticket = TicketId(Uuid::new_v4());
    let open = || TicketCommand::Open {
        title: "printer on fire".to_owned(),
    };

    // Closing a ticket that does not exist is the workflow's own 404.
    let refused = execute(
        store.as_ref(),
        ticket,
        TicketCommand::Close,
        &ctx(None, None, ""),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status_code().as_u16(), 404);
    assert_eq!(refused.code(), "ticket_not_found");
    let problem: serde_json::Value = serde_json::from_str(&refused.problem_body()).unwrap();
    assert_eq!(problem["title"], "Ticket not found");

    // Created: the outcome names the ticket under the workflow's own field.
    let opened = execute(
        store.as_ref(),
        ticket,
        open(),
        &ctx(Some("k-open"), None, "h1"),
    )
    .await
    .unwrap();
    assert!(!opened.replayed);
    let body = json(&opened);
    assert_eq!(body["ticket_id"], ticket.to_string());
    assert!(body.get("order_id").is_none());
    assert_eq!(body["status"], "OPEN");
    assert_eq!(body["pending_actions"], serde_json::json!(["CLOSE"]));
    assert_eq!(body["events"], serde_json::json!(["TicketOpened"]));
    assert_eq!(opened.outcome.revision, 0);

    // The same keyed request again is a replay of the original answer, writing nothing.
    let again = execute(
        store.as_ref(),
        ticket,
        open(),
        &ctx(Some("k-open"), None, "h1"),
    )
    .await
    .unwrap();
    assert!(again.replayed);
    assert_eq!(json(&again), body);

    // A refusal under a key is recorded and replayed as it was answered.
    let first = execute(
        store.as_ref(),
        ticket,
        open(),
        &ctx(Some("k-twice"), None, "h2"),
    )
    .await
    .unwrap_err();
    assert_eq!(first.code(), "ticket_already_open");
    assert_eq!(first.status_code().as_u16(), 409);
    let replayed = execute(
        store.as_ref(),
        ticket,
        open(),
        &ctx(Some("k-twice"), None, "h2"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(replayed, ApiError::Replayed { .. }),
        "{replayed:?}"
    );
    assert_eq!(replayed.status_code().as_u16(), 409);
    assert_eq!(replayed.problem_body(), first.problem_body());

    // If-Match pins the revision: a stale one is refused and writes nothing.
    let stale = execute(
        store.as_ref(),
        ticket,
        TicketCommand::Close,
        &ctx(None, Some(7), ""),
    )
    .await
    .unwrap_err();
    assert_eq!(stale.status_code().as_u16(), 412);
    assert!(
        stale.to_string().contains("the ticket is at revision 0"),
        "{stale}"
    );

    // Acting with the right revision appends; a re-reported fact under a key is replayed.
    let closed = execute(
        store.as_ref(),
        ticket,
        TicketCommand::Close,
        &ctx(None, Some(0), ""),
    )
    .await
    .unwrap();
    assert_eq!(json(&closed)["status"], "CLOSED");
    assert_eq!(closed.outcome.revision, 1);
    let noop = execute(
        store.as_ref(),
        ticket,
        TicketCommand::Close,
        &ctx(Some("k-noop"), None, "h3"),
    )
    .await
    .unwrap();
    assert!(!noop.replayed);
    assert_eq!(noop.outcome.events, Vec::<String>::new());
    let noop_again = execute(
        store.as_ref(),
        ticket,
        TicketCommand::Close,
        &ctx(Some("k-noop"), None, "h3"),
    )
    .await
    .unwrap();
    assert!(noop_again.replayed);
    assert_eq!(json(&noop_again), json(&noop));

    // Everything went to the ticket's own stream: two events, nothing more.
    let stream = read_whole_stream(store.as_ref(), &format!("ticket-{ticket}"))
        .await
        .unwrap();
    let types: Vec<&str> = stream.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["TicketOpened", "TicketClosed"]);
}

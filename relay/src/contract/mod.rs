//! The public integration contract: what leaves Milestone on NATS JetStream. Domain events stay
//! private; each workflow declares, in one place ([`order`], [`returns`]), which of its events
//! become which public events and what each work request carries. Everything else (subjects,
//! the envelope, headers, message ids) is derived here, once, for every workflow.
//!
//! - Public events: subject `milestone.<workflow>.<event>`, message id = the domain event's id.
//! - Work requests: subject `milestone.<workflow>.work.<action>`, published when an action
//!   becomes pending (attempt 1) and again for every reminder event the workflow records
//!   (attempt n); message id derived from the id of the event that caused it.
//! - Every message is a CloudEvents-style JSON envelope; its JSON Schema is
//!   `schemas/integration/<subject without "milestone.">.json`.

pub mod order;
pub mod returns;

use chrono::{DateTime, Utc};
use domain::{Label, Workflow};
use event_store::RecordedEvent;
use serde::Serialize;
use serde_json::Value;
use service_kit::trace::TraceContext;
use uuid::Uuid;

/// The first token of every subject.
pub const SUBJECT_ROOT: &str = "milestone";
/// The subject dead letters are published on (`milestone.relay.dead-letter.<workflow>`).
pub const DEAD_LETTER_SUBJECT: &str = "milestone.relay.dead-letter";
/// The subject of the empty message that ends a fast-ingest batch. The broker does not store
/// it; a plain (not JetStream) subscriber to `milestone.>` sees it.
pub const BATCH_END_SUBJECT: &str = "milestone.relay.batch-end";
/// The header carrying the correlation id of the business transaction.
pub const CORRELATION_HEADER: &str = "Milestone-Correlation-Id";
/// The header carrying the id of the domain event that caused the message.
pub const CAUSATION_HEADER: &str = "Milestone-Causation-Id";
/// The W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Namespace of the message ids derived from event ids (UUIDv5).
const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d69_6c65_7374_6f6e_6512_0000_0000_0001);

/// A domain event as the public sees it: a name (the last subject token) and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicEvent {
    pub name: &'static str,
    pub data: Value,
}

/// What a workflow publishes. Implemented once per workflow, next to nothing else.
pub trait Contract: Workflow {
    /// The public event `event` becomes, given the instance's state after it; `None` keeps
    /// the event private.
    fn public_event(event: &Self::Event, after: &Self::State) -> Option<PublicEvent>;

    /// What the downstream service needs to carry out `action` for the instance in `state`
    /// (amounts, lines, address, ids).
    fn work_request(state: &Self::State, action: Self::Action) -> Value;
}

/// A label's subject token: `AUTHORIZE_PAYMENT` -> `authorize-payment`.
pub fn token(label: &str) -> String {
    label.to_ascii_lowercase().replace('_', "-")
}

/// The subject of a workflow's public event `name`.
pub fn event_subject<W: Workflow>(name: &str) -> String {
    format!("{SUBJECT_ROOT}.{}.{name}", W::NAME)
}

/// The subject of a workflow's work requests for `action`.
pub fn work_subject<W: Workflow>(action: W::Action) -> String {
    format!("{SUBJECT_ROOT}.{}.work.{}", W::NAME, token(action.as_str()))
}

/// The message id of the work request for `action` caused by the event `cause`.
pub fn work_message_id(cause: Uuid, action: &str) -> String {
    Uuid::new_v5(
        &MESSAGE_ID_NAMESPACE,
        format!("{cause}/work/{action}").as_bytes(),
    )
    .to_string()
}

/// The CloudEvents-style envelope every message carries (its JSON is the message's body).
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<'a> {
    pub specversion: &'static str,
    pub id: &'a str,
    pub source: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The workflow instance the message is about.
    pub subject: &'a str,
    pub time: DateTime<Utc>,
    pub datacontenttype: &'static str,
    pub data: &'a Value,
}

impl Envelope<'_> {
    /// The envelope's JSON.
    pub fn to_bytes(&self) -> bytes::Bytes {
        let mut body = Vec::with_capacity(1024);
        // Writing plain data into memory cannot fail; were it to, the body is empty.
        if serde_json::to_writer(&mut body, self).is_err() {
            body.clear();
        }
        body.into()
    }
}

/// Where a message came from in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub stream_id: String,
    pub revision: u64,
    pub event_id: Uuid,
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The NATS subject.
    pub subject: String,
    /// `Nats-Msg-Id`: JetStream drops a second message with the same id within its window.
    pub message_id: String,
    pub correlation_id: Option<String>,
    pub causation_id: String,
    /// The message's `traceparent` when tracing is off: the publish span's own replaces it
    /// when tracing is on.
    pub traceparent: String,
    /// The trace context of the command that appended the event, which the publish span
    /// continues.
    pub event_trace: Option<TraceContext>,
    /// The body: the envelope's JSON.
    pub payload: bytes::Bytes,
    pub origin: Origin,
}

/// The W3C `traceparent` of a message: the trace is the business transaction (derived from
/// the correlation id, or the event's id without one), the parent span the event.
pub fn traceparent(correlation: Option<&str>, event_id: Uuid) -> String {
    let trace = match correlation {
        Some(c) => Uuid::new_v5(&MESSAGE_ID_NAMESPACE, c.as_bytes()),
        None => event_id,
    };
    let span = &event_id.simple().to_string()[..16];
    format!("00-{}-{span}-01", trace.simple())
}

/// The messages one event gives: its public event, if any, then a work request for every
/// action that is pending after it (`after` is the instance's state after it) and was not
/// before (`was`: the actions pending before it), and one for a reminder the workflow records
/// for an action still pending.
pub fn messages<W: Contract>(
    recorded: &RecordedEvent,
    event: &W::Event,
    was: &[W::Action],
    after: &W::State,
) -> Vec<Outgoing> {
    let instance = recorded
        .stream_id
        .strip_prefix(W::STREAM_PREFIX)
        .unwrap_or(&recorded.stream_id)
        .to_owned();
    let time = recorded
        .metadata
        .occurred_at
        .unwrap_or(recorded.recorded_at);
    let correlation_id = recorded.metadata.correlation_id.clone();
    let origin = Origin {
        stream_id: recorded.stream_id.clone(),
        revision: recorded.revision,
        event_id: recorded.id,
    };
    let source = format!("/milestone/{}", W::NAME);
    let causation_id = recorded.id.to_string();
    let message_traceparent = traceparent(correlation_id.as_deref(), recorded.id);
    let event_trace = recorded
        .metadata
        .traceparent
        .as_ref()
        .map(|t| TraceContext::new(t.clone(), recorded.metadata.tracestate.clone()));
    let message = |subject: String, message_id: String, data: Value| Outgoing {
        payload: Envelope {
            specversion: "1.0",
            id: &message_id,
            source: &source,
            kind: &subject,
            subject: &instance,
            time,
            datacontenttype: "application/json",
            data: &data,
        }
        .to_bytes(),
        subject,
        message_id,
        correlation_id: correlation_id.clone(),
        causation_id: causation_id.clone(),
        traceparent: message_traceparent.clone(),
        event_trace: event_trace.clone(),
        origin: origin.clone(),
    };
    let mut out = Vec::new();
    if let Some(public) = W::public_event(event, after) {
        out.push(message(
            event_subject::<W>(public.name),
            recorded.id.to_string(),
            public.data,
        ));
    }
    let now = W::pending_actions(after);
    let mut due: Vec<(W::Action, u32)> = now
        .iter()
        .filter(|a| !was.contains(a))
        .map(|a| (*a, 1))
        .collect();
    if let Some((action, attempt)) = W::reminder(event) {
        if now.contains(&action) && !due.iter().any(|(a, _)| *a == action) {
            due.push((action, attempt));
        }
    }
    for (action, attempt) in due {
        let mut data = W::work_request(after, action);
        if let Value::Object(fields) = &mut data {
            fields.insert("attempt".to_owned(), attempt.into());
            fields.insert("action".to_owned(), action.as_str().into());
        }
        out.push(message(
            work_subject::<W>(action),
            work_message_id(recorded.id, action.as_str()),
            data,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{EventContract, OrderCommand, OrderEvent, OrderState, Orders, PendingAction};

    fn recorded(stream: &str, revision: u64, event: &OrderEvent) -> RecordedEvent {
        RecordedEvent {
            stream_id: stream.to_owned(),
            revision,
            position: event_store::Position::new(revision + 1, 0),
            id: Uuid::new_v4(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.data(),
            metadata: event_store::Metadata {
                correlation_id: Some("corr-1".to_owned()),
                ..Default::default()
            },
            recorded_at: Utc::now(),
            malformed: None,
        }
    }

    /// Runs `commands` through the order workflow; the messages of each event, in order.
    fn run(commands: Vec<OrderCommand>) -> Vec<(RecordedEvent, Vec<Outgoing>)> {
        let id = Uuid::new_v4();
        let stream = Orders::stream_name(id);
        let mut state = OrderState::default();
        let mut revision = 0;
        let mut out = Vec::new();
        for command in commands {
            for event in Orders::decide(&state, command).unwrap() {
                let after = Orders::evolve(state.clone(), &event);
                let r = recorded(&stream, revision, &event);
                let messages =
                    messages::<Orders>(&r, &event, &Orders::pending_actions(&state), &after);
                out.push((r, messages));
                state = after;
                revision += 1;
            }
        }
        out
    }

    fn remind(action: PendingAction, attempt: u32) -> OrderCommand {
        OrderCommand::RecordReminder { action, attempt }
    }

    fn body(m: &Outgoing) -> Value {
        serde_json::from_slice(&m.payload).unwrap()
    }

    /// The work requests among `messages`: (subject, attempt, message id).
    fn work(messages: &[Outgoing]) -> Vec<(String, Value, String)> {
        messages
            .iter()
            .filter(|m| m.subject.contains(".work."))
            .map(|m| {
                (
                    m.subject.clone(),
                    body(m)["data"]["attempt"].clone(),
                    m.message_id.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_reminder_publishes_the_pending_actions_work_request_again_with_its_attempt_and_own_id() {
        let id = Uuid::new_v4();
        let events = run(vec![
            test_support::log::place(id, "customer-1", &[("SKU-1", 1, 100)]),
            remind(PendingAction::AuthorizePayment, 2),
            remind(PendingAction::AuthorizePayment, 3),
        ]);
        let first = work(&events[0].1);
        assert_eq!(first[0].0, "milestone.order.work.authorize-payment");
        assert_eq!(first[0].1, 1);
        let mut ids = vec![first[0].2.clone()];
        for (reminder, attempt) in [(&events[1], 2), (&events[2], 3)] {
            let (event, messages) = reminder;
            assert_eq!(event.event_type, "OrderReminded");
            let again = work(messages);
            assert_eq!(
                messages.len(),
                1,
                "a reminder is no public event: {messages:?}"
            );
            assert_eq!(again[0].0, "milestone.order.work.authorize-payment");
            assert_eq!(again[0].1, attempt);
            assert_eq!(again[0].2, work_message_id(event.id, "AUTHORIZE_PAYMENT"));
            assert_eq!(body(&messages[0])["data"]["amount_minor"], 100);
            assert!(!ids.contains(&again[0].2), "a message id twice");
            ids.push(again[0].2.clone());
        }
    }

    #[test]
    fn a_reminder_of_one_action_publishes_only_that_actions_work_request() {
        let id = Uuid::new_v4();
        let events = run(vec![
            test_support::log::place(id, "customer-1", &[("SKU-1", 1, 100)]),
            remind(PendingAction::ReserveInventory, 2),
        ]);
        let again = work(&events[1].1);
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(again[0].0, "milestone.order.work.reserve-inventory");
        assert_eq!(again[0].1, 2);
    }

    #[test]
    fn a_reminder_for_an_action_no_longer_pending_publishes_nothing() {
        let id = Uuid::new_v4();
        let events = run(vec![
            test_support::log::place(id, "customer-1", &[("SKU-1", 1, 100)]),
            test_support::log::authorize("pay-1", 100),
        ]);
        // The workflow refuses to record such a reminder; the relay does not count on it.
        let state = events.iter().fold(OrderState::default(), |s, (r, _)| {
            Orders::evolve(
                s,
                &OrderEvent::decode(&r.event_type, r.schema_version, &r.data).unwrap(),
            )
        });
        let late = OrderEvent::OrderReminded {
            action: PendingAction::AuthorizePayment,
            attempt: 2,
        };
        let after = Orders::evolve(state.clone(), &late);
        let r = recorded(&Orders::stream_name(id), 2, &late);
        let out = messages::<Orders>(&r, &late, &Orders::pending_actions(&state), &after);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn subject_tokens_come_from_the_wire_labels() {
        assert_eq!(token("AUTHORIZE_PAYMENT"), "authorize-payment");
        assert_eq!(
            work_subject::<domain::Orders>(domain::PendingAction::ReleaseInventory),
            "milestone.order.work.release-inventory"
        );
        assert_eq!(
            event_subject::<domain::Returns>("approved"),
            "milestone.return.approved"
        );
    }

    #[test]
    fn message_ids_are_deterministic_and_differ_per_action() {
        let id = Uuid::new_v4();
        assert_eq!(work_message_id(id, "SHIP"), work_message_id(id, "SHIP"));
        assert_ne!(
            work_message_id(id, "SHIP"),
            work_message_id(id, "VOID_PAYMENT")
        );
    }

    #[test]
    fn a_traceparent_keeps_the_trace_of_its_correlation() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let ta = traceparent(Some("corr-1"), a);
        let tb = traceparent(Some("corr-1"), b);
        assert_eq!(ta.len(), 55);
        assert_eq!(ta[..35], tb[..35]);
        assert_ne!(ta, tb);
    }
}

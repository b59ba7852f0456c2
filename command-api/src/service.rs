//! Handling one command of any workflow: read the instance's stream, rebuild its state with
//! [`Workflow::evolve`], [`Workflow::decide`], append with the expected revision. Retries on a
//! concurrent append unless the caller pinned a revision. A keyed command's answer is found
//! again from its events, or from its key's ledger ([`crate::idempotency`]) when it wrote none.

use crate::dto::CommandOutcome;
use crate::error::{ApiError, UnreadableEvent};
use crate::idempotency::{scoped_key, Answer, KeyLedger, RefusedAnswer};
use crate::metrics::WorkflowLabels;
use crate::workflow::{InstanceId, WorkflowApi};
use actix_web::http::StatusCode;
use chrono::Utc;
use domain::{EventContract, Label, Workflow};
use event_store::{
    read_whole_stream, EventStore, ExpectedRevision, GuardedAppend, Metadata, NewEvent, Principal,
    RecordedEvent, StoreError,
};
use std::time::Instant;
use uuid::Uuid;

/// How often a command is re-decided after losing a race before the caller is told.
const MAX_ATTEMPTS: u32 = 8;

/// Namespace of the deterministic ids derived here (event ids, instance ids, command ids).
const NAMESPACE: Uuid = Uuid::from_u128(0x6d69_6c65_7374_6f6e_6520_636d_6420_6170);

/// What the caller sent besides the body.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub idempotency_key: Option<String>,
    pub if_match: Option<u64>,
    pub correlation_id: String,
    /// Hash of the request (endpoint and canonical body), to tell a retry from a key reuse;
    /// computed only when there is an idempotency key.
    pub request_hash: Option<String>,
    /// What caused the command when it is not the request itself (e.g. the reconciliation run
    /// that records a reminder); stored as each event's causation id instead of the command's
    /// id.
    pub causation_id: Option<String>,
    /// Who sent the command (none when authentication is disabled): recorded in each event's
    /// metadata, and the owner of its idempotency key.
    pub principal: Option<Principal>,
}

impl CommandContext {
    /// The command's id: derived from the idempotency key as the principal's own, so a retry
    /// has the same one and another principal's use of the key another.
    fn command_id(&self, stream: &str) -> Uuid {
        match &self.idempotency_key {
            Some(key) => {
                let key = scoped_key(self.principal.as_ref(), key);
                Uuid::new_v5(&NAMESPACE, format!("command/{stream}/{key}").as_bytes())
            }
            None => Uuid::new_v4(),
        }
    }

    /// Whether `event` was caused by a request with this context's idempotency key from this
    /// context's principal.
    fn keyed_same(&self, event: &RecordedEvent) -> bool {
        fn subject(p: &Option<Principal>) -> Option<&str> {
            p.as_ref().map(|p| p.subject.as_str())
        }
        self.idempotency_key.is_some()
            && event.metadata.idempotency_key == self.idempotency_key
            && subject(&event.metadata.principal) == subject(&self.principal)
    }
}

/// The id a creating request gets when its body names none: derived from the idempotency key
/// as the principal's own, so a retry lands on the same instance and another principal's use
/// of the key on another.
pub fn instance_id_for<W: WorkflowApi>(
    idempotency_key: Option<&str>,
    principal: Option<&Principal>,
) -> W::Id {
    W::id_from_uuid(match idempotency_key {
        Some(key) => {
            let key = scoped_key(principal, key);
            Uuid::new_v5(&NAMESPACE, format!("{}/{key}", W::NAME).as_bytes())
        }
        None => Uuid::new_v4(),
    })
}

/// The correlation id used when the caller sends none: stable per idempotency key, so a
/// replayed response is byte-for-byte the original.
pub fn default_correlation_id(idempotency_key: Option<&str>) -> String {
    match idempotency_key {
        Some(key) => Uuid::new_v5(&NAMESPACE, format!("correlation/{key}").as_bytes()).to_string(),
        None => Uuid::new_v4().to_string(),
    }
}

/// The event id of the `index`-th event of a command: retries write the same ids, so the store
/// recognises them.
fn event_id(stream: &str, command_id: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("event/{stream}/{command_id}/{index}").as_bytes(),
    )
}

/// The result of [`execute`].
#[derive(Debug)]
pub struct Executed {
    pub outcome: CommandOutcome,
    /// The outcome is the stored result of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// The stream's events as the workflow's.
///
/// # Errors
/// [`ApiError::HistoryUnreadable`] naming the first event that cannot be decoded.
pub fn decode<W: WorkflowApi>(
    id: W::Id,
    history: &[RecordedEvent],
) -> Result<Vec<W::Event>, ApiError> {
    history
        .iter()
        .map(|e| {
            let decoded = match &e.malformed {
                Some(reason) => Err(UnreadableEvent::Malformed(reason.clone())),
                None => W::Event::decode(&e.event_type, e.schema_version, &e.data)
                    .map_err(UnreadableEvent::Decode),
            };
            decoded.map_err(|source| ApiError::HistoryUnreadable {
                subject: W::NAME,
                code: W::HISTORY_UNREADABLE_CODE,
                instance: id.to_string(),
                stream: e.stream_id.clone(),
                revision: e.revision,
                source: Box::new(source),
            })
        })
        .collect()
}

fn wire<L: Label>(labels: Vec<L>) -> Vec<String> {
    labels.iter().map(|l| l.as_str().to_owned()).collect()
}

fn outcome<W: WorkflowApi>(
    id: W::Id,
    state: &W::State,
    last: Option<&RecordedEvent>,
    correlation_id: String,
    events: Vec<String>,
) -> CommandOutcome {
    CommandOutcome {
        id_field: W::ID_FIELD,
        id: id.to_string(),
        status: W::status(state)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        pending_actions: wire(W::pending_actions(state)),
        compensations_owed: wire(W::compensations_owed(state)),
        revision: last.map(|e| e.revision).unwrap_or_default(),
        consistency_token: last.map(|e| e.position.to_string()).unwrap_or_default(),
        correlation_id,
        events,
    }
}

/// The outcome of an earlier request with this idempotency key, rebuilt from the stream.
///
/// # Errors
/// [`ApiError::IdempotencyKeyReused`] when the key was used for a different request.
fn find_original<W: WorkflowApi>(
    id: W::Id,
    history: &[RecordedEvent],
    decoded: &[W::Event],
    ctx: &CommandContext,
) -> Result<Option<CommandOutcome>, ApiError> {
    let Some(key) = &ctx.idempotency_key else {
        return Ok(None);
    };
    let mine: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, e)| ctx.keyed_same(e))
        .map(|(i, _)| i)
        .collect();
    let Some(&last) = mine.last() else {
        return Ok(None);
    };
    if mine
        .iter()
        .any(|&i| history[i].metadata.request_hash != ctx.request_hash)
    {
        return Err(ApiError::IdempotencyKeyReused {
            subject: W::NAME,
            key: key.clone(),
        });
    }
    let state = W::rebuild(&decoded[..=last]);
    let stored = &history[last];
    Ok(Some(outcome::<W>(
        id,
        &state,
        Some(stored),
        stored
            .metadata
            .correlation_id
            .clone()
            .unwrap_or_else(|| ctx.correlation_id.clone()),
        mine.iter()
            .map(|&i| history[i].event_type.clone())
            .collect(),
    )))
}

/// The command type of the workflow an instance id belongs to.
pub type CommandOf<I> = <<I as InstanceId>::Workflow as Workflow>::Command;

/// Runs one command against the instance `id` of its workflow, completed by
/// [`WorkflowApi::prepare`] before each decision.
///
/// It makes no span of its own: it records the command's id on the caller's span (a request's
/// server span) and stores that span's trace context in the events. A caller outside a request
/// runs it inside a [`command_span`].
///
/// # Errors
/// The workflow's refusals ([`ApiError::Refused`]), [`ApiError::PreconditionFailed`] for an
/// `If-Match` mismatch, [`ApiError::Contention`] after too many lost races,
/// [`ApiError::IdempotencyKeyReused`], [`ApiError::Replayed`] for the recorded refusal of an
/// earlier request with the same key, [`ApiError::HistoryUnreadable`], store errors.
pub async fn execute<I: InstanceId>(
    store: &dyn EventStore,
    id: I,
    command: CommandOf<I>,
    ctx: &CommandContext,
) -> Result<Executed, ApiError> {
    let result = run::<I::Workflow>(store, id, command, ctx).await;
    if matches!(
        result,
        Ok(Executed { replayed: true, .. }) | Err(ApiError::Replayed { .. })
    ) {
        crate::metrics::METRICS
            .replays
            .get_or_create(&WorkflowLabels {
                workflow: <I::Workflow as Workflow>::NAME,
            })
            .inc();
    }
    result
}

/// The span of a command run outside a request (the reconciler's reminders and escalations),
/// `command.execute`: workflow, instance, stream, command id and correlation id. A command run
/// by a request has none of its own: it records its id on the request's server span, whose
/// trace it continues, and is one span fewer to make and send.
pub fn command_span<I: InstanceId>(id: I, ctx: &CommandContext) -> tracing::Span {
    tracing::info_span!(
        "command.execute",
        workflow = <I::Workflow as Workflow>::NAME,
        instance = %id,
        stream = %<I::Workflow as Workflow>::stream_name(id),
        correlation_id = %ctx.correlation_id,
        command_id = tracing::field::Empty,
    )
}

async fn run<W: WorkflowApi>(
    store: &dyn EventStore,
    id: W::Id,
    command: W::Command,
    ctx: &CommandContext,
) -> Result<Executed, ApiError> {
    let stream = W::stream_name(id);
    let command_id = ctx.command_id(&stream);
    // On the caller's span: the request's, or the one of [`command_span`].
    let span = tracing::Span::current();
    span.record(
        service_kit::http_trace::COMMAND_FIELD,
        tracing::field::display(command_id),
    );
    let trace = service_kit::trace::context_of(&span);
    let ledger = ctx.idempotency_key.as_deref().map(|key| {
        KeyLedger::<W>::new(
            &stream,
            key,
            ctx.principal.as_ref(),
            ctx.request_hash.as_deref().unwrap_or_default(),
        )
    });
    let creates = W::creates(&command);
    // Whether this request owns its key's claim (its own, or that of an earlier identical
    // request it carries on); its answer is then recorded after the claim.
    let mut claimed = false;
    for attempt in 0..MAX_ATTEMPTS {
        // A new instance's stream is empty, so the first attempt to create one appends without
        // reading it; a keyed one does not read its key's ledger either, but appends only
        // while the ledger is empty (one round trip). If the stream exists after all (a retry,
        // a reused key) or the key was recorded, the append is refused, says the events were
        // already stored or that the ledger holds records, and the next attempt reads both to
        // answer from them.
        let optimistic = attempt == 0 && ctx.if_match.is_none() && creates;
        let guard = ledger.as_ref().filter(|_| optimistic);
        let (recorded, history) = read(
            store,
            ledger.as_ref().filter(|_| guard.is_none()),
            &stream,
            optimistic,
        )
        .await?;
        match recorded {
            Some(Answer::Unchanged { outcome }) => {
                return Ok(Executed {
                    outcome,
                    replayed: true,
                })
            }
            Some(Answer::Refused(RefusedAnswer {
                status,
                code,
                problem,
            })) => {
                return Err(ApiError::Replayed {
                    status: StatusCode::from_u16(status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    code,
                    problem,
                })
            }
            Some(Answer::Claimed) => claimed = true,
            None => {}
        }
        let decoded = decode::<W>(id, &history)?;
        if let Some(original) = find_original::<W>(id, &history, &decoded, ctx)? {
            return Ok(Executed {
                outcome: original,
                replayed: true,
            });
        }
        let current = history.last().map(|e| e.revision);
        if let Some(expected) = ctx.if_match {
            if current != Some(expected) {
                return Err(precondition_failed::<W>(expected, current));
            }
        }
        let state = W::rebuild(&decoded);
        let decided = match prepare_and_decide::<W>(store, &state, command.clone()).await {
            Ok(decided) => decided,
            Err(error @ ApiError::Refused { .. }) => {
                if let Some(ledger) = &ledger {
                    let answer = Answer::refused(&error);
                    if !ledger
                        .record(store, answer, claimed, &ctx.correlation_id)
                        .await?
                    {
                        continue;
                    }
                }
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        if decided.is_empty() {
            let unchanged = outcome::<W>(
                id,
                &state,
                history.last(),
                ctx.correlation_id.clone(),
                Vec::new(),
            );
            if let Some(ledger) = &ledger {
                let answer = Answer::Unchanged {
                    outcome: unchanged.clone(),
                };
                if !ledger
                    .record(store, answer, claimed, &ctx.correlation_id)
                    .await?
                {
                    continue;
                }
            }
            return Ok(Executed {
                outcome: unchanged,
                replayed: false,
            });
        }
        if let Some(ledger) = ledger.as_ref().filter(|_| !creates && !claimed) {
            if !ledger
                .record(store, Answer::Claimed, false, &ctx.correlation_id)
                .await?
            {
                continue;
            }
            claimed = true;
        }
        let now = Utc::now();
        let new_events: Vec<NewEvent> = decided
            .iter()
            .enumerate()
            .map(|(i, e)| NewEvent {
                id: event_id(&stream, command_id, i),
                event_type: e.event_type().to_owned(),
                schema_version: e.schema_version(),
                data: e.data(),
                metadata: Metadata {
                    correlation_id: Some(ctx.correlation_id.clone()),
                    causation_id: Some(
                        ctx.causation_id
                            .clone()
                            .unwrap_or_else(|| command_id.to_string()),
                    ),
                    idempotency_key: ctx.idempotency_key.clone(),
                    request_hash: ctx.request_hash.clone(),
                    occurred_at: Some(now),
                    principal: ctx.principal.clone(),
                    traceparent: trace.as_ref().map(|t| t.traceparent.clone()),
                    tracestate: trace.as_ref().and_then(|t| t.tracestate.clone()),
                },
            })
            .collect();
        let expected = match current {
            None => ExpectedRevision::NoStream,
            Some(r) => ExpectedRevision::Exact(r),
        };
        let appending = Instant::now();
        let appended = match guard {
            Some(ledger) => {
                match store
                    .append_guarded(&stream, expected, new_events, ledger.stream())
                    .await
                {
                    Ok(GuardedAppend::Appended(result)) => Ok(result),
                    // The key was recorded: the next attempt reads what.
                    Ok(GuardedAppend::GuardHasEvents) => continue,
                    Err(e) => Err(e),
                }
            }
            None => store.append(&stream, expected, new_events).await,
        };
        crate::metrics::METRICS
            .append
            .get_or_create(&WorkflowLabels { workflow: W::NAME })
            .observe(appending.elapsed().as_secs_f64());
        match appended {
            // With a key, an identical request may have got there first: the next attempt
            // answers as its replay, from the stream. Without one, the events can only be this
            // request's own, stored by an attempt whose answer was lost (a group commit's reply
            // that never came): deciding again would refuse them as a conflict with themselves.
            Ok(result) if result.already_stored => {
                if ctx.idempotency_key.is_none() {
                    let events = decided.iter().map(|e| e.event_type().to_owned()).collect();
                    let stored = stored_outcome::<W>(
                        store,
                        id,
                        &stream,
                        result.next_expected_revision,
                        events,
                        ctx,
                    )
                    .await?;
                    return Ok(Executed {
                        outcome: stored,
                        replayed: false,
                    });
                }
            }
            Ok(result) => {
                let state = decided.iter().fold(state, W::evolve);
                let mut out = outcome::<W>(
                    id,
                    &state,
                    None,
                    ctx.correlation_id.clone(),
                    decided.iter().map(|e| e.event_type().to_owned()).collect(),
                );
                out.revision = result.next_expected_revision;
                out.consistency_token = result.position.to_string();
                return Ok(Executed {
                    outcome: out,
                    replayed: false,
                });
            }
            Err(e) if e.is_conflict() => {
                if let (Some(expected), StoreError::WrongExpectedRevision { .. }) =
                    (ctx.if_match, &e)
                {
                    return Err(ApiError::PreconditionFailed {
                        subject: W::NAME,
                        expected,
                        actual: "a newer revision".to_owned(),
                    });
                }
                tracing::debug!(stream, error = %e, "lost a race; deciding again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Contention {
        subject: W::NAME,
        attempts: MAX_ATTEMPTS,
    })
}

/// The outcome of a command whose `events` the store reports already stored, the last at
/// `revision`: rebuilt from the stream up to it, as a keyed replay is.
async fn stored_outcome<W: WorkflowApi>(
    store: &dyn EventStore,
    id: W::Id,
    stream: &str,
    revision: u64,
    events: Vec<String>,
    ctx: &CommandContext,
) -> Result<CommandOutcome, ApiError> {
    let mut history = read_whole_stream(store, stream).await?;
    history.retain(|e| e.revision <= revision);
    let state = W::rebuild(&decode::<W>(id, &history)?);
    Ok(outcome::<W>(
        id,
        &state,
        history.last(),
        ctx.correlation_id.clone(),
        events,
    ))
}

/// Completes the command ([`WorkflowApi::prepare`]) and decides it on `state`. Refusals of
/// either are [`ApiError::Refused`], answered (and kept under the request's key) alike.
async fn prepare_and_decide<W: WorkflowApi>(
    store: &dyn EventStore,
    state: &W::State,
    command: W::Command,
) -> Result<Vec<W::Event>, ApiError> {
    let command = W::prepare(store, command).await?;
    W::decide(state, command).map_err(ApiError::refused::<W>)
}

/// The key's record (when the request has a key), then the instance's stream (unless
/// `skip_stream`). In that order, never side by side: a request that finds another's claim of
/// its key then reads a stream at least as new as the one the claimer decided on, so the two
/// cannot decide differently on the same state (one refusing while the other's events land).
async fn read<W: WorkflowApi>(
    store: &dyn EventStore,
    ledger: Option<&KeyLedger<'_, W>>,
    stream: &str,
    skip_stream: bool,
) -> Result<(Option<Answer>, Vec<RecordedEvent>), ApiError> {
    let recorded = match ledger {
        Some(ledger) => ledger.read(store).await?,
        None => None,
    };
    let history = if skip_stream {
        Vec::new()
    } else {
        read_whole_stream(store, stream).await?
    };
    Ok((recorded, history))
}

fn precondition_failed<W: WorkflowApi>(expected: u64, actual: Option<u64>) -> ApiError {
    ApiError::PreconditionFailed {
        subject: W::NAME,
        expected,
        actual: match actual {
            Some(r) => format!("revision {r}"),
            None => format!("no revision (the {} does not exist)", W::NAME),
        },
    }
}

//! Handling one command: read the order's stream, rebuild the aggregate, decide, append with the
//! expected revision. Retries on a concurrent append unless the caller pinned a revision. A keyed
//! command's answer is found again from its events, or from its key's ledger
//! ([`crate::idempotency`]) when it wrote none.

use crate::dto::CommandOutcome;
use crate::error::{ApiError, UnreadableEvent};
use crate::idempotency::{Answer, KeyLedger};
use actix_web::http::StatusCode;
use chrono::Utc;
use domain::{decide, evolve, EventContract, OrderCommand, OrderEvent, OrderId, OrderState};
use event_store::{
    read_whole_stream, EventStore, ExpectedRevision, Metadata, NewEvent, RecordedEvent, StoreError,
};
use uuid::Uuid;

/// How often a command is re-decided after losing a race before the caller is told.
const MAX_ATTEMPTS: u32 = 8;

/// Namespace of the deterministic ids derived here (event ids, order ids, command ids).
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
}

impl CommandContext {
    /// The command's id: derived from the idempotency key, so a retry has the same one.
    fn command_id(&self, stream: &str) -> Uuid {
        match &self.idempotency_key {
            Some(key) => Uuid::new_v5(&NAMESPACE, format!("command/{stream}/{key}").as_bytes()),
            None => Uuid::new_v4(),
        }
    }
}

/// The order id a place-order request gets when its body names none.
pub fn order_id_for(idempotency_key: Option<&str>) -> OrderId {
    OrderId::new(match idempotency_key {
        Some(key) => Uuid::new_v5(&NAMESPACE, format!("order/{key}").as_bytes()),
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

/// The stream's events as the domain's.
///
/// # Errors
/// [`ApiError::OrderHistoryUnreadable`] naming the first event that cannot be decoded.
fn decode(order_id: OrderId, history: &[RecordedEvent]) -> Result<Vec<OrderEvent>, ApiError> {
    history
        .iter()
        .map(|e| {
            let decoded = match &e.malformed {
                Some(reason) => Err(UnreadableEvent::Malformed(reason.clone())),
                None => OrderEvent::decode(&e.event_type, e.schema_version, &e.data)
                    .map_err(UnreadableEvent::Decode),
            };
            decoded.map_err(|source| ApiError::OrderHistoryUnreadable {
                order_id: order_id.to_string(),
                stream: e.stream_id.clone(),
                revision: e.revision,
                source,
            })
        })
        .collect()
}

fn outcome(
    order_id: OrderId,
    state: &OrderState,
    last: Option<&RecordedEvent>,
    correlation_id: String,
    events: Vec<String>,
) -> CommandOutcome {
    let order = state.order();
    CommandOutcome {
        order_id: order_id.to_string(),
        status: state
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        pending_actions: state
            .pending_actions()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        compensations_owed: order
            .map(|o| {
                o.compensations_owed()
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
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
fn find_original(
    order_id: OrderId,
    history: &[RecordedEvent],
    decoded: &[OrderEvent],
    ctx: &CommandContext,
) -> Result<Option<CommandOutcome>, ApiError> {
    let Some(key) = &ctx.idempotency_key else {
        return Ok(None);
    };
    let mine: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, e)| e.metadata.idempotency_key.as_ref() == Some(key))
        .map(|(i, _)| i)
        .collect();
    let Some(&last) = mine.last() else {
        return Ok(None);
    };
    if mine
        .iter()
        .any(|&i| history[i].metadata.request_hash != ctx.request_hash)
    {
        return Err(ApiError::IdempotencyKeyReused(key.clone()));
    }
    let state = decoded[..=last].iter().fold(OrderState::NotPlaced, evolve);
    let stored = &history[last];
    Ok(Some(outcome(
        order_id,
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

/// Runs one command against an order.
///
/// # Errors
/// Domain errors, [`ApiError::PreconditionFailed`] for an `If-Match` mismatch,
/// [`ApiError::Contention`] after too many lost races, [`ApiError::IdempotencyKeyReused`],
/// [`ApiError::Replayed`] for the recorded refusal of an earlier request with the same key,
/// [`ApiError::OrderHistoryUnreadable`], store errors.
pub async fn execute(
    store: &dyn EventStore,
    order_id: OrderId,
    command: OrderCommand,
    ctx: &CommandContext,
) -> Result<Executed, ApiError> {
    let stream = order_id.stream_name();
    let command_id = ctx.command_id(&stream);
    let ledger = ctx.idempotency_key.as_deref().map(|key| {
        KeyLedger::new(
            &stream,
            key,
            ctx.request_hash.as_deref().unwrap_or_default(),
        )
    });
    let places = matches!(command, OrderCommand::PlaceOrder(_));
    // Whether this request owns its key's claim (its own, or that of an earlier identical
    // request it carries on); its answer is then recorded after the claim.
    let mut claimed = false;
    for attempt in 0..MAX_ATTEMPTS {
        // A new order's stream is empty, so the first attempt to place one appends without
        // reading it (a keyed one reads only its key's ledger). If the stream exists after all (a retry, a reused key), the append is
        // refused or says the events were already stored, and the next attempt reads the
        // stream to answer from it.
        let optimistic = attempt == 0 && ctx.if_match.is_none() && places;
        let (recorded, history) = read(store, ledger.as_ref(), &stream, optimistic).await?;
        match recorded {
            Some(Answer::Unchanged { outcome }) => {
                return Ok(Executed {
                    outcome,
                    replayed: true,
                })
            }
            Some(Answer::Refused {
                status,
                code,
                problem,
            }) => {
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
        let decoded = decode(order_id, &history)?;
        if let Some(original) = find_original(order_id, &history, &decoded, ctx)? {
            return Ok(Executed {
                outcome: original,
                replayed: true,
            });
        }
        let current = history.last().map(|e| e.revision);
        if let Some(expected) = ctx.if_match {
            if current != Some(expected) {
                return Err(precondition_failed(expected, current));
            }
        }
        let state = decoded.iter().fold(OrderState::NotPlaced, evolve);
        let decided = match decide(&state, command.clone()) {
            Ok(decided) => decided,
            Err(refusal) => {
                let error = ApiError::from(refusal);
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
        };
        if decided.is_empty() {
            let unchanged = outcome(
                order_id,
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
        if let Some(ledger) = ledger.as_ref().filter(|_| !places && !claimed) {
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
                    causation_id: Some(command_id.to_string()),
                    idempotency_key: ctx.idempotency_key.clone(),
                    request_hash: ctx.request_hash.clone(),
                    occurred_at: Some(now),
                },
            })
            .collect();
        let expected = match current {
            None => ExpectedRevision::NoStream,
            Some(r) => ExpectedRevision::Exact(r),
        };
        match store.append(&stream, expected, new_events).await {
            // An identical request got there first: answer as its replay, from the stream.
            Ok(result) if result.already_stored => {}
            Ok(result) => {
                let state = decided.iter().fold(state, evolve);
                let mut out = outcome(
                    order_id,
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
                        expected,
                        actual: "a newer revision".to_owned(),
                    });
                }
                tracing::debug!(stream, error = %e, "lost a race; deciding again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Contention(MAX_ATTEMPTS))
}

/// The key's record (when the request has a key), then the order's stream (unless
/// `skip_stream`). In that order, never side by side: a request that finds another's claim of
/// its key then reads a stream at least as new as the one the claimer decided on, so the two
/// cannot decide differently on the same state (one refusing while the other's events land).
async fn read(
    store: &dyn EventStore,
    ledger: Option<&KeyLedger<'_>>,
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

fn precondition_failed(expected: u64, actual: Option<u64>) -> ApiError {
    ApiError::PreconditionFailed {
        expected,
        actual: match actual {
            Some(r) => format!("revision {r}"),
            None => "no revision (the order does not exist)".to_owned(),
        },
    }
}

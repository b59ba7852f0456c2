//! What a keyed request was answered, for the answers the instance's own stream cannot hold.
//!
//! A command that appends events is found again from those events: they carry its idempotency
//! key and request hash. A refusal or a re-reported fact appends nothing, so its answer is kept
//! in a bookkeeping stream of its own per (instance stream, key), written with `NoStream` and a
//! deterministic event id, which both backends de-duplicate. That stream's first event decides
//! who owns the key: the answer itself, or a claim written just before a command other than
//! one creating the instance appends its events. A request that finds the key owned by a
//! different request is refused; one that finds its own claim carries the command on as its
//! owner and records its answer after the claim. A creating command needs no claim: it appends
//! with `NoStream`, and nothing but a `404` can have been recorded for an instance that does
//! not exist, which the append finds: it is guarded by the key's stream
//! ([`event_store::EventStore::append_guarded`]), written only while that stream is empty.
//!
//! A key belongs to the principal who sent it ([`scoped_key`]): the ledger's stream, and the
//! command and instance ids derived from a key, are the principal's own, so two principals
//! sending the same key never see each other's answer.

use crate::dto::CommandOutcome;
use crate::error::ApiError;
use crate::workflow::WorkflowApi;
use actix_web::http::StatusCode;
use actix_web::ResponseError;
use chrono::Utc;
use event_store::{
    Direction, EventStore, ExpectedRevision, Metadata, NewEvent, Principal, StoreError,
    BOOKKEEPING_STREAM_PREFIX,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::marker::PhantomData;
use uuid::Uuid;

/// Namespace of the ids derived here (the key's part of a stream name, record event ids).
const NAMESPACE: Uuid = Uuid::from_u128(0x6d69_6c65_7374_6f6e_6520_6b65_7973_0001);

/// An idempotency key as its principal's own, for deriving names and ids from: the key itself
/// without a principal (the namespace keys had before principals were recorded, so existing
/// records keep their meaning), otherwise the principal's subject, length first, then the key,
/// after a line break no header value holds: no scoped key reads as a bare key, nor as another
/// (subject, key) pair.
pub fn scoped_key<'a>(principal: Option<&Principal>, key: &'a str) -> Cow<'a, str> {
    match principal {
        None => Cow::Borrowed(key),
        Some(p) => Cow::Owned(format!("\n{}:{}\n{key}", p.subject.len(), p.subject)),
    }
}

/// A keyed request's answer, or the claim that its events will be.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The request is appending events to the instance; those events, which carry the key,
    /// are its answer.
    Claimed,
    /// A re-reported fact: the instance did not change.
    Unchanged { outcome: CommandOutcome },
    /// Refused by the workflow: the status and the problem+json body it was answered with.
    Refused(RefusedAnswer),
}

/// A refusal as it was answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusedAnswer {
    pub status: u16,
    pub code: String,
    pub problem: String,
}

/// An answer as the ledger stores it: the outcome in its wire form.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Stored {
    Claimed,
    Unchanged { outcome: Value },
    Refused(RefusedAnswer),
}

impl Answer {
    /// The answer that renders `error` again, byte for byte.
    pub fn refused(error: &ApiError) -> Self {
        Self::Refused(RefusedAnswer {
            status: error.status_code().as_u16(),
            code: error.code().to_owned(),
            problem: error.problem_body(),
        })
    }

    fn event_type(&self) -> &'static str {
        match self {
            Self::Claimed => "IdempotencyKeyClaimed",
            Self::Unchanged { .. } | Self::Refused(_) => "IdempotentRequestAnswered",
        }
    }
}

/// One record of the bookkeeping stream.
#[derive(Serialize, Deserialize)]
struct Entry {
    request_hash: String,
    #[serde(flatten)]
    answer: Stored,
}

/// The bookkeeping stream of one (instance stream of workflow `W`, principal, idempotency
/// key).
#[derive(Debug)]
pub struct KeyLedger<'a, W> {
    stream: String,
    key: &'a str,
    /// Who owns the key; recorded with each record.
    principal: Option<&'a Principal>,
    /// Tells a retry (same hash) from another request reusing the key.
    request_hash: &'a str,
    workflow: PhantomData<W>,
}

impl<'a, W: WorkflowApi> KeyLedger<'a, W> {
    pub fn new(
        instance_stream: &str,
        key: &'a str,
        principal: Option<&'a Principal>,
        request_hash: &'a str,
    ) -> Self {
        let key_id = Uuid::new_v5(
            &NAMESPACE,
            format!("key/{instance_stream}/{}", scoped_key(principal, key)).as_bytes(),
        );
        Self {
            stream: format!("{BOOKKEEPING_STREAM_PREFIX}idempotency-{instance_stream}-{key_id}"),
            key,
            principal,
            request_hash,
            workflow: PhantomData,
        }
    }

    /// The bookkeeping stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// What is recorded for the key: its last record (an answer, or a claim not yet answered
    /// here), `None` when the key was never recorded.
    ///
    /// # Errors
    /// [`ApiError::IdempotencyKeyReused`] when another request owns the key;
    /// [`ApiError::KeyRecordUnreadable`]; store errors.
    pub async fn read(&self, store: &dyn EventStore) -> Result<Option<Answer>, ApiError> {
        // A claim and the answer after it: a ledger never holds more.
        let records = match store
            .read_stream(&self.stream, Direction::Forwards, None, 2)
            .await
        {
            Ok(records) => records,
            Err(StoreError::StreamNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(last) = records.last() else {
            return Ok(None);
        };
        let unreadable =
            |source: Box<dyn std::error::Error + Send + Sync>| ApiError::KeyRecordUnreadable {
                stream: self.stream.clone(),
                revision: last.revision,
                source,
            };
        let entry: Entry =
            serde_json::from_value(last.data.clone()).map_err(|e| unreadable(Box::new(e)))?;
        if entry.request_hash != self.request_hash {
            return Err(ApiError::IdempotencyKeyReused {
                subject: W::NAME,
                key: self.key.to_owned(),
            });
        }
        Ok(Some(match entry.answer {
            Stored::Claimed => Answer::Claimed,
            Stored::Unchanged { outcome } => Answer::Unchanged {
                outcome: CommandOutcome::from_json::<W>(outcome)
                    .map_err(|e| unreadable(Box::new(e)))?,
            },
            Stored::Refused(refused) => {
                StatusCode::from_u16(refused.status).map_err(|e| unreadable(Box::new(e)))?;
                Answer::Refused(refused)
            }
        }))
    }

    /// Records `answer`: first in the ledger, or after this request's own claim.
    ///
    /// Returns `false` when another request recorded first (the same request racing, or another
    /// one reusing the key): nothing was written, and reading the ledger again tells the answer.
    ///
    /// # Errors
    /// Store errors other than a lost race.
    pub async fn record(
        &self,
        store: &dyn EventStore,
        answer: Answer,
        after_claim: bool,
        correlation_id: &str,
    ) -> Result<bool, StoreError> {
        let (expected, slot) = if after_claim {
            (ExpectedRevision::Exact(0), 1)
        } else {
            (ExpectedRevision::NoStream, 0)
        };
        let event = NewEvent {
            id: Uuid::new_v5(
                &NAMESPACE,
                format!("record/{}/{slot}/{}", self.stream, self.request_hash).as_bytes(),
            ),
            event_type: answer.event_type().to_owned(),
            schema_version: 1,
            data: serde_json::to_value(Entry {
                request_hash: self.request_hash.to_owned(),
                answer: match answer {
                    Answer::Claimed => Stored::Claimed,
                    Answer::Unchanged { outcome } => Stored::Unchanged {
                        outcome: serde_json::to_value(outcome)
                            .expect("an outcome serializes to JSON"),
                    },
                    Answer::Refused(refused) => Stored::Refused(refused),
                },
            })
            .expect("an answer serializes to JSON"),
            metadata: Metadata {
                correlation_id: Some(correlation_id.to_owned()),
                causation_id: None,
                idempotency_key: Some(self.key.to_owned()),
                request_hash: Some(self.request_hash.to_owned()),
                occurred_at: Some(Utc::now()),
                principal: self.principal.cloned(),
                traceparent: None,
                tracestate: None,
            },
        };
        match store.append(&self.stream, expected, vec![event]).await {
            Ok(result) => Ok(!result.already_stored),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(subject: &str) -> Principal {
        Principal {
            subject: subject.to_owned(),
            role: "shop".to_owned(),
            client: None,
        }
    }

    #[test]
    fn a_key_without_a_principal_keeps_the_namespace_it_always_had() {
        assert_eq!(scoped_key(None, "k-1"), "k-1");
    }

    #[test]
    fn no_two_subject_and_key_pairs_scope_to_the_same_key() {
        let a = scoped_key(Some(&principal("a/b")), "c");
        let b = scoped_key(Some(&principal("a")), "b/c");
        assert_ne!(a, b);
        let scoped = scoped_key(Some(&principal("a")), "k");
        assert!(
            scoped.starts_with('\n') && scoped.ends_with("\nk"),
            "{scoped:?}"
        );
    }
}

//! JetStream: the stream created or updated at start-up, and publishing with acknowledgements,
//! in order, with bounded exponential backoff with jitter and dead letters.
//!
//! A batch goes out as one of JetStream's fast-ingest batches (nats-server 2.14 and later, the
//! stream set up with `allow_batched`): the messages stream to the broker in log order without
//! waiting for each one's acknowledgement, and the broker stores them in that order, stopping at
//! the first it cannot store (gaps fail the batch), acknowledging every few hundred and the
//! batch's end. What it stored is a prefix; the first message it did not store is then
//! published on its own, acknowledged, retried or dead-lettered, and the rest follows in a new
//! batch. A message the broker stored before (a batch retried after a crash or a lost
//! acknowledgement) is dropped by its `Nats-Msg-Id`, so order and exactly-one-copy hold across
//! retries (but for a message the broker refuses after counting it while it stores later ones:
//! it goes out after them, with a warning). An empty message on [`BATCH_END_SUBJECT`], which
//! the broker does not store, ends each batch. On an older broker (or a stream without
//! `allow_batched`) messages go out one by one with their acknowledgements, in rounds per
//! instance.

use crate::contract::{
    Outgoing, BATCH_END_SUBJECT, CAUSATION_HEADER, CORRELATION_HEADER, DEAD_LETTER_SUBJECT,
    TRACEPARENT_HEADER,
};
use crate::db::DeadLetter;
use crate::RelayError;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use service_kit::trace;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Instrument;

/// How the stream is set up.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The JetStream stream's name.
    pub name: String,
    /// How long JetStream remembers message ids to drop duplicates.
    pub duplicate_window: Duration,
    /// The largest message the stream accepts (`-1`: the server's limit).
    pub max_message_bytes: i32,
}

/// Bounds of the retry delays.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry `attempt` (0-based): exponential, capped, with full jitter in its
    /// upper half so that relays retrying together spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// [`connect`] with the relay's configured URL, stream, ack timeout and backoff.
///
/// # Errors
/// When the NATS URL is not one.
pub async fn connect_configured(config: &crate::Config) -> Result<jetstream::Context, RelayError> {
    connect(
        config.nats_url.expose(),
        &config.stream,
        config.ack_timeout,
        config.backoff,
    )
    .await
}

/// Connects to NATS, then creates the stream or brings its configuration up to date. While
/// the broker cannot be reached (not started yet, restarting) it keeps trying, with `backoff`.
///
/// # Errors
/// When the NATS URL is not one.
pub async fn connect(
    url: &str,
    settings: &StreamSettings,
    ack_timeout: Duration,
    backoff: Backoff,
) -> Result<jetstream::Context, RelayError> {
    let client = async_nats::ConnectOptions::new()
        .name("milestone-relay")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(url)
        .await
        .map_err(|e| RelayError::Nats(Box::new(e)))?;
    let context = jetstream::context::ContextBuilder::new()
        .ack_timeout(ack_timeout)
        .timeout(ack_timeout)
        .build(client);
    let config = stream::Config {
        name: settings.name.clone(),
        subjects: vec![format!("{}.>", crate::contract::SUBJECT_ROOT)],
        storage: stream::StorageType::File,
        duplicate_window: settings.duplicate_window,
        max_message_size: settings.max_message_bytes,
        ..Default::default()
    };
    let mut failures = 0u32;
    loop {
        // The setting exists from 2.14 on (2.12 refuses a setting it does not know); the
        // server's version is known once connected.
        let version = context.client().server_info().version;
        let attempt = if version.is_empty() {
            Err("not connected to NATS yet".to_owned())
        } else {
            // Never turned off once on (the node answering may be older than the stream's).
            let allowed = match context.get_stream(&settings.name).await {
                Ok(existing) => existing.cached_info().config.allow_batch_publish,
                Err(_) => false,
            };
            let config = stream::Config {
                allow_batch_publish: allowed || takes_batches(&version),
                ..config.clone()
            };
            context
                .create_or_update_stream(config)
                .await
                .map_err(|e| e.to_string())
        };
        match attempt {
            Ok(_) => return Ok(context),
            Err(e) => {
                let delay = backoff.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(stream = %settings.name, error = %e, ?delay, "cannot set up the JetStream stream; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Whether a nats-server of `version` (`2.15.1`) takes fast-ingest batches (2.14 and later).
fn takes_batches(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 14)
}

/// Whether the stream takes fast-ingest batches, as the broker reports its settings (a broker
/// older than 2.14 does not know the setting). When the stream cannot be read, messages go one
/// by one.
pub async fn batched(context: &jetstream::Context, stream: &str) -> bool {
    match context.get_stream(stream).await {
        Ok(s) => s.cached_info().config.allow_batch_publish,
        Err(e) => {
            tracing::warn!(stream, error = %e, "cannot read the stream's settings; publishing message by message");
            false
        }
    }
}

/// Whether JetStream will never take this message (it is too large for the stream or the
/// server): retrying cannot help. Anything else (no answer, no stream yet, a server starting)
/// is retried.
fn is_permanent(e: &PublishError) -> bool {
    if e.kind() == PublishErrorKind::MaxPayloadExceeded {
        return true;
    }
    let code = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code);
    matches!(
        code,
        Some(jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)
            | Some(jetstream::ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM)
    )
}

fn headers(m: &Outgoing, traceparent: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, m.message_id.as_str());
    if let Some(c) = &m.correlation_id {
        h.insert(CORRELATION_HEADER, c.as_str());
    }
    h.insert(CAUSATION_HEADER, m.causation_id.as_str());
    h.insert(TRACEPARENT_HEADER, traceparent);
    h
}

/// The message's publish span, which continues the trace of the command that appended its
/// event, and its headers; the message's `traceparent` is the span's (when tracing is on).
fn prepare(m: &Outgoing) -> (tracing::Span, HeaderMap) {
    let span = tracing::info_span!(
        parent: None,
        "relay.publish",
        otel.kind = "producer",
        subject = %m.subject,
        message_id = %m.message_id,
        stream = %m.origin.stream_id,
        revision = m.origin.revision,
        correlation_id = m.correlation_id.as_deref(),
    );
    if let Some(parent) = &m.event_trace {
        trace::continue_trace(&span, parent);
    }
    let traceparent =
        trace::context_of(&span).map_or_else(|| m.traceparent.clone(), |c| c.traceparent);
    let headers = headers(m, &traceparent);
    (span, headers)
}

/// Sends one message inside its publish span, for its own acknowledgement.
async fn publish_one(
    context: &jetstream::Context,
    m: &Outgoing,
) -> Result<jetstream::context::PublishAckFuture, PublishError> {
    let (span, headers) = prepare(m);
    context
        .publish_with_headers(m.subject.clone(), headers, m.payload.clone())
        .instrument(span)
        .await
}

/// Operations of a fast-ingest batch, named in each message's reply subject (ADR-50).
pub const OP_START: u8 = 0;
pub const OP_APPEND: u8 = 1;
/// Ends the batch with a message that is not stored.
pub const OP_COMMIT_END: u8 = 3;

/// The reply subject of message `seq` (from 1) of the fast-ingest batch answered on `inbox`
/// (`_INBOX.<id>`, the id naming the batch), for operation `op`; the broker stops the batch
/// at a gap.
pub fn batch_reply(inbox: &str, seq: u64, op: u8) -> String {
    format!("{inbox}.{FLOW}.fail.{seq}.{op}.$FI")
}

/// How many messages the broker is asked to store between two flow acknowledgements (it
/// answers with the number it will use, at most 500).
const FLOW: u64 = 500;

/// How many flow acknowledgements the relay may be ahead of before it waits for one.
const OUTSTANDING_FLOWS: u64 = 2;

/// What the broker sends to a fast-ingest batch's inbox: a flow acknowledgement, a gap or an
/// error of one message (`type` set), or an answer to one message: the batch's final
/// acknowledgement, or an error.
#[derive(serde::Deserialize)]
struct BatchReply {
    #[serde(rename = "type")]
    kind: Option<String>,
    seq: Option<u64>,
    msgs: Option<u64>,
    count: Option<u64>,
    error: Option<jetstream::Error>,
}

/// How a fast-ingest batch ended.
#[derive(Debug, PartialEq, Eq)]
enum Batched {
    /// The broker stored (or, by message id, had stored before) the first `n` messages.
    Stored(usize),
    /// The stream or the broker does not take fast-ingest batches.
    Disabled,
}

/// The broker's answers to one fast-ingest batch, read as they come.
struct Answers {
    replies: async_nats::Subscriber,
    timeout: Duration,
    /// Every message up to this one is stored (the last flow acknowledgement).
    acknowledged: u64,
    /// Messages between two flow acknowledgements, as the broker last said.
    flow: u64,
    /// Whether the broker answered as one that takes batches.
    started: bool,
    /// The first message the broker refused, if any.
    refused: Option<u64>,
    /// The client's connection count when the batch began: answers sent while it was
    /// reconnecting are lost, a refusal among them too.
    connects: u64,
    statistics: std::sync::Arc<async_nats::Statistics>,
}

impl Answers {
    /// How many messages, from the first, are known to be stored when the batch ends now:
    /// never a message at or after one the broker refused (it may store later ones: a check
    /// made after it counted the message).
    fn known(&self, count: u64) -> Batched {
        match self.refused {
            Some(refused) if count >= refused => {
                tracing::warn!(
                    refused,
                    count,
                    "the broker refused a message of a batch and stored later ones: it goes out after them"
                );
                Batched::Stored(refused as usize - 1)
            }
            _ => Batched::Stored(count as usize),
        }
    }

    /// Reads the broker's next answer: `Some` once the batch has ended.
    async fn next(&mut self) -> Option<Batched> {
        use futures::StreamExt;
        let Ok(Some(reply)) = tokio::time::timeout(self.timeout, self.replies.next()).await else {
            return Some(self.known(self.acknowledged));
        };
        if self.statistics.connects.load(Ordering::Relaxed) != self.connects {
            return Some(self.known(self.acknowledged));
        }
        let answer = serde_json::from_slice::<BatchReply>(&reply.payload).ok()?;
        // The message an answer is about: the sequence in its reply subject
        // (`<inbox>.<flow>.fail.<seq>.<op>.$FI`).
        let about = || reply.subject.rsplit('.').nth(2)?.parse::<u64>().ok();
        match (answer.kind.as_deref(), answer.error) {
            (Some("ack"), _) => {
                self.started = true;
                self.acknowledged = self.acknowledged.max(answer.seq.unwrap_or(0));
                self.flow = answer.msgs.unwrap_or(self.flow).max(1);
                None
            }
            (Some(kind), _) => {
                self.started = true;
                if kind == "err" {
                    self.refuse(answer.seq);
                }
                // A gap or a refused message: the broker ends the batch and counts.
                None
            }
            (None, Some(e)) if e.error_code() == jetstream::ErrorCode::BATCH_PUBLISH_DISABLED => {
                Some(Batched::Disabled)
            }
            // The broker forgot the batch (it restarted, or timed the batch out).
            (None, Some(e))
                if e.error_code() == jetstream::ErrorCode::BATCH_PUBLISH_UNKNOWN_BATCH_ID =>
            {
                Some(self.known(self.acknowledged))
            }
            (None, Some(_)) => {
                self.refuse(about());
                // Refused before the batch began: there is no batch to end.
                (self.refused == Some(1) && !self.started).then_some(Batched::Stored(0))
            }
            // The batch's final acknowledgement counts what it took in; an acknowledgement
            // without a count is an older broker's, which stored the message as any other.
            (None, None) => Some(match answer.count {
                Some(n) => self.known(n),
                None => Batched::Disabled,
            }),
        }
    }

    fn refuse(&mut self, seq: Option<u64>) {
        if let Some(seq) = seq.filter(|s| *s > 0) {
            self.refused = Some(self.refused.map_or(seq, |r| r.min(seq)));
        }
    }
}

/// Sends `messages` as one fast-ingest batch and returns how many of them, from the first,
/// are known to be in the stream: all of them, up to the first the broker refused, or up to
/// its last acknowledgement when its answers stop for the context's timeout (a message after
/// that may be stored too: publishing it again is dropped as a duplicate). The next message
/// after a refusal may be stored already: it then stands before the refused one in the stream
/// (a warning says so); nothing is lost.
async fn publish_batch(context: &jetstream::Context, messages: &[Outgoing]) -> Batched {
    use async_nats::jetstream::context::traits::TimeoutProvider;
    let client = context.client();
    let timeout = context.timeout();
    let inbox = client.new_inbox();
    // Without an inbox, the first message goes on its own (and waits for the broker).
    let Ok(replies) = client.subscribe(format!("{inbox}.>")).await else {
        return Batched::Stored(0);
    };
    let statistics = client.statistics();
    let mut answers = Answers {
        replies,
        timeout,
        acknowledged: 0,
        flow: FLOW,
        started: false,
        refused: None,
        connects: statistics.connects.load(Ordering::Relaxed),
        statistics,
    };
    let mut sent = 0u64;
    let mut ended = None;
    for m in messages {
        let seq = sent + 1;
        // The first message's answer comes before more are sent (an older broker would store
        // each as an ordinary message); then at most two flows ahead of the acknowledgements.
        while ended.is_none()
            && ((seq > 1 && !answers.started)
                || answers.acknowledged + answers.flow * OUTSTANDING_FLOWS <= seq)
        {
            ended = answers.next().await;
        }
        if ended.is_some() {
            break;
        }
        let (span, headers) = prepare(m);
        let op = if seq == 1 { OP_START } else { OP_APPEND };
        let reply = batch_reply(&inbox, seq, op);
        let send = client.publish_with_reply_and_headers(
            m.subject.clone(),
            reply,
            headers,
            m.payload.clone(),
        );
        // A message the client cannot send (larger than the server takes, or the connection
        // gone for longer than the timeout) ends the batch before it.
        match tokio::time::timeout(timeout, send.instrument(span)).await {
            Ok(Ok(())) => sent = seq,
            _ => break,
        }
    }
    // The end, not stored, also closes a batch given up on, which the broker would otherwise
    // hold open (and slow the next one down) until it times out. It goes only to a batch the
    // broker has begun (an older broker would store it).
    while sent > 0 && ended.is_none() && !answers.started {
        ended = answers.next().await;
    }
    if sent > 0 && answers.started && ended != Some(Batched::Disabled) {
        let end = batch_reply(&inbox, sent + 1, OP_COMMIT_END);
        let send = client.publish_with_reply(BATCH_END_SUBJECT, end, Default::default());
        let delivered = matches!(tokio::time::timeout(timeout, send).await, Ok(Ok(())));
        if ended.is_none() && !delivered {
            ended = Some(answers.known(answers.acknowledged));
        }
    }
    let end = match ended {
        Some(end) => end,
        None if sent == 0 => Batched::Stored(0),
        None => loop {
            if let Some(end) = answers.next().await {
                break end;
            }
        },
    };
    match end {
        Batched::Stored(n) => Batched::Stored(n.min(sent as usize)),
        disabled => disabled,
    }
}

/// Most messages in flight at once (JetStream's client holds a permit per unacknowledged one).
const MAX_IN_FLIGHT: usize = 1024;

/// Publishes `messages` in order and waits until JetStream stored each of them: in fast-ingest
/// batches while `batched` holds (set from the stream's settings; cleared when the broker says
/// the stream does not take them), one by one otherwise (`publish_each`). Transient
/// failures are retried after a backoff, without end (no loss); a message refused for good is
/// published to the dead-letter subject with the reason and returned. It returns once every
/// message is stored or dead-lettered: to stop it, drop it (the relay publishes in a task of its
/// own, stopped with the relay or when its lease is lost).
pub async fn publish_all(
    context: &jetstream::Context,
    messages: Vec<Outgoing>,
    backoff: Backoff,
    relay: &str,
    batched: &AtomicBool,
) -> Vec<DeadLetter> {
    let mut messages = VecDeque::from(messages);
    let mut dead = Vec::new();
    while !messages.is_empty() && batched.load(Ordering::Relaxed) {
        let stored = match publish_batch(context, messages.make_contiguous()).await {
            Batched::Stored(n) => n,
            Batched::Disabled => {
                tracing::warn!(
                    relay,
                    "the stream does not take fast-ingest batches; publishing message by message"
                );
                batched.store(false, Ordering::Relaxed);
                break;
            }
        };
        messages.drain(..stored);
        // The first message the batch did not store goes on its own: it is retried until it
        // is stored, or dead-lettered.
        if let Some(first) = messages.pop_front() {
            dead.extend(publish_each(context, vec![first], backoff, relay).await);
        }
    }
    dead.extend(publish_each(context, messages.into(), backoff, relay).await);
    dead
}

/// Publishes `messages` one by one with their acknowledgements, in order per instance: each
/// round sends the earliest unacknowledged message of every instance (up to
/// [`MAX_IN_FLIGHT`]) together, so an instance's message is sent only once its previous one
/// was acknowledged, and order per instance holds across retries.
async fn publish_each(
    context: &jetstream::Context,
    messages: Vec<Outgoing>,
    backoff: Backoff,
    relay: &str,
) -> Vec<DeadLetter> {
    // One queue per instance, in the order instances first appear.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut queues: Vec<VecDeque<Outgoing>> = Vec::new();
    for m in messages {
        let next = queues.len();
        let i = *index.entry(m.origin.stream_id.clone()).or_insert(next);
        if i == next {
            queues.push(VecDeque::new());
        }
        queues[i].push_back(m);
    }
    let mut dead = Vec::new();
    let mut failures = 0u32;
    loop {
        let wave: Vec<(usize, Outgoing)> = queues
            .iter_mut()
            .enumerate()
            .filter_map(|(i, q)| q.pop_front().map(|m| (i, m)))
            .take(MAX_IN_FLIGHT)
            .collect();
        if wave.is_empty() {
            return dead;
        }
        let mut acks = Vec::with_capacity(wave.len());
        for (_, m) in &wave {
            acks.push(publish_one(context, m).await);
        }
        let mut results = Vec::with_capacity(wave.len());
        for ack in acks {
            results.push(match ack {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            });
        }
        let mut retried = 0;
        for ((i, m), result) in wave.into_iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(e) if is_permanent(&e) => {
                    let reason = format!("{e}");
                    tracing::warn!(relay, subject = %m.subject, message_id = %m.message_id, %reason, "JetStream refused a message; dead-lettered");
                    let letter = DeadLetter {
                        event_id: m.origin.event_id,
                        stream_id: m.origin.stream_id.clone(),
                        revision: m.origin.revision,
                        subject: m.subject.clone(),
                        message_id: m.message_id.clone(),
                        reason,
                    };
                    retry_dead_letter(context, relay, &letter, backoff).await;
                    dead.push(letter);
                }
                Err(e) => {
                    tracing::debug!(relay, subject = %m.subject, error = %e, "publish failed; will retry");
                    // Back at the head of its instance's queue: it is still the earliest.
                    queues[i].push_front(m);
                    retried += 1;
                }
            }
        }
        if retried == 0 {
            failures = 0;
            continue;
        }
        let delay = backoff.delay(failures);
        failures = failures.saturating_add(1);
        tracing::warn!(
            relay,
            ?delay,
            retried,
            "JetStream did not acknowledge; backing off"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Publishes a dead letter (the message's coordinates and the reason, never its body, which
/// JetStream refused) until JetStream acknowledges it.
async fn retry_dead_letter(
    context: &jetstream::Context,
    relay: &str,
    letter: &DeadLetter,
    backoff: Backoff,
) {
    let body = serde_json::json!({
        "relay": relay,
        "subject": letter.subject,
        "message_id": letter.message_id,
        "event_id": letter.event_id,
        "stream_id": letter.stream_id,
        "revision": letter.revision,
        "reason": letter.reason,
    });
    let subject = format!("{DEAD_LETTER_SUBJECT}.{relay}");
    let mut h = HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("dead-letter/{}", letter.message_id).as_str(),
    );
    let mut failures = 0u32;
    loop {
        let sent = context
            .publish_with_headers(subject.clone(), h.clone(), body.to_string().into())
            .await;
        let result = match sent {
            Ok(ack) => ack.await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => tracing::warn!(relay, error = %e, "cannot publish a dead letter; retrying"),
        }
        let delay = backoff.delay(failures);
        failures = failures.saturating_add(1);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn fast_ingest_batches_are_asked_of_servers_from_2_14_on() {
        for (version, takes) in [
            ("2.9.10", false),
            ("2.12.8", false),
            ("2.14.0", true),
            ("2.15.1", true),
            ("3.0.0", true),
            ("2.14.0-RC.1", true),
            ("", false),
        ] {
            assert_eq!(takes_batches(version), takes, "{version}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_up_to_its_bound_with_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        for attempt in 0..40 {
            let d = b.delay(attempt);
            let ceiling = (Duration::from_millis(100) * 2u32.pow(attempt.min(16))).min(b.max);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
        let samples: HashSet<Duration> = (0..20).map(|_| b.delay(3)).collect();
        assert!(samples.len() > 1, "no jitter");
    }
}

//! JetStream: the stream created or updated at start-up, and publishing with acknowledgements,
//! order per workflow instance, bounded exponential backoff with jitter and dead letters.

use crate::contract::{
    Outgoing, CAUSATION_HEADER, CORRELATION_HEADER, DEAD_LETTER_SUBJECT, TRACEPARENT_HEADER,
};
use crate::db::DeadLetter;
use crate::RelayError;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use service_kit::trace;
use std::collections::{HashMap, VecDeque};
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
        match context.create_or_update_stream(config.clone()).await {
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

/// Sends one message inside its publish span, which continues the trace of the command that
/// appended its event; the message's `traceparent` is the span's (when tracing is on).
async fn publish_one(
    context: &jetstream::Context,
    m: &Outgoing,
) -> Result<jetstream::context::PublishAckFuture, PublishError> {
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
    context
        .publish_with_headers(
            m.subject.clone(),
            headers(m, &traceparent),
            m.payload().into(),
        )
        .instrument(span)
        .await
}

/// Most messages in flight at once (JetStream's client holds a permit per unacknowledged one).
const MAX_IN_FLIGHT: usize = 1024;

/// Publishes `messages` and waits for JetStream's acknowledgements, in order per instance:
/// each round sends the earliest unacknowledged message of every instance (up to
/// [`MAX_IN_FLIGHT`]) together, so an instance's message is sent only once its previous one
/// was acknowledged, and order per instance holds across retries. Transient failures are
/// retried after a backoff, without end (no loss); a message refused for good is published to
/// the dead-letter subject with the reason and returned.
///
/// # Errors
/// Never for the broker (it retries); only [`RelayError::Stopped`] when `give_up` resolves
/// (shutdown, a lost lease).
pub async fn publish_all(
    context: &jetstream::Context,
    messages: Vec<Outgoing>,
    backoff: Backoff,
    relay: &str,
    give_up: impl std::future::Future<Output = ()>,
) -> Result<Vec<DeadLetter>, RelayError> {
    tokio::pin!(give_up);
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
            return Ok(dead);
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
                    retry_dead_letter(context, relay, &letter, backoff, &mut give_up).await?;
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
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut give_up => return Err(RelayError::Stopped),
        }
    }
}

/// Publishes a dead letter (the message's coordinates and the reason, never its body, which
/// JetStream refused) until JetStream acknowledges it.
async fn retry_dead_letter(
    context: &jetstream::Context,
    relay: &str,
    letter: &DeadLetter,
    backoff: Backoff,
    give_up: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<(), RelayError> {
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
            Ok(()) => return Ok(()),
            Err(e) => tracing::warn!(relay, error = %e, "cannot publish a dead letter; retrying"),
        }
        let delay = backoff.delay(failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = give_up.as_mut() => return Err(RelayError::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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

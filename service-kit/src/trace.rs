//! The W3C trace context (`traceparent`, `tracestate`) in and out of `tracing` spans: what a
//! request or an event carries, how a span continues it, links to it, or hands it on.
//!
//! Every function here is a no-op (or answers `None`) when tracing is off: without the
//! OpenTelemetry layer a span has no trace context.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Link, SamplingDecision, SamplingResult, SpanContext, SpanId, SpanKind, TraceContextExt, TraceId,
};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, ShouldSample};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::registry::LookupSpan;

/// The W3C header carrying the trace id, the parent span id and the sampling flag.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor-specific trace state along with [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// A W3C trace context, as its two header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

struct Headers<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.traceparent),
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

impl TraceContext {
    pub fn new(traceparent: impl Into<String>, tracestate: Option<String>) -> Self {
        Self {
            traceparent: traceparent.into(),
            tracestate: tracestate.filter(|s| !s.is_empty()),
        }
    }

    /// The remote span this context names, when `traceparent` is well formed.
    pub fn span_context(&self) -> Option<SpanContext> {
        let headers = Headers {
            traceparent: &self.traceparent,
            tracestate: self.tracestate.as_deref(),
        };
        let cx = TraceContextPropagator::new().extract(&headers);
        let span = cx.span().span_context().clone();
        span.is_valid().then_some(span)
    }

    /// The trace id (32 lowercase hex digits), when `traceparent` is well formed.
    pub fn trace_id(&self) -> Option<String> {
        self.span_context().map(|s| s.trace_id().to_string())
    }
}

/// The target of a request's span when its trace was dropped before the span was made
/// ([`decide_ahead`]): such a span is made for the logs only, never for traces.
pub(crate) const UNSAMPLED_TARGET: &str = "service_kit::http_trace::unsampled";

/// How requests are decided on before their spans are made: the services' sampler, ids for
/// the traces it drops, and (benchmarks) the switch tracing is behind.
pub(crate) struct Ahead {
    sampler: Box<dyn ShouldSample>,
    ids: RandomIdGenerator,
    on: Option<Arc<AtomicBool>>,
}

/// Set once the services' subscriber is installed with a provider sampling by [`DecidedAhead`].
static AHEAD: OnceLock<Ahead> = OnceLock::new();

thread_local! {
    /// The context of the request being polled on this thread, when its trace was dropped
    /// before any span was made for it ([`in_unsampled`]).
    static UNSAMPLED: RefCell<Option<TraceContext>> = const { RefCell::new(None) };
    /// Set while a request decided on ahead and recorded has its span decided on: whether it
    /// is sampled too.
    static DECIDED_AHEAD: Cell<Option<bool>> = const { Cell::new(None) };
}

/// The sampler of the services' tracer provider: the configured one, except for the span of
/// a request already decided on ahead and recorded ([`sample_as_decided`]), which it decides
/// on as decided. (That decision was drawn on a trace id of its own, the span gets another:
/// a ratio sampler's share is the same, but a later sampler looking at the exported id may
/// not agree with it.)
#[derive(Debug, Clone)]
pub(crate) struct DecidedAhead(Box<dyn ShouldSample>);

impl ShouldSample for DecidedAhead {
    fn should_sample(
        &self,
        parent_context: Option<&opentelemetry::Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if let Some(sampled) = DECIDED_AHEAD.get() {
            return SamplingResult {
                decision: if sampled {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::RecordOnly
                },
                attributes: Vec::new(),
                trace_state: parent_context
                    .map(|cx| cx.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// The provider's sampler for `sampler` (the configured one), and what [`decide_ahead`] needs
/// to decide requests with it; `on`, when given, is the switch tracing is behind.
pub(crate) fn sampling_ahead(
    sampler: Box<dyn ShouldSample>,
    on: Option<Arc<AtomicBool>>,
) -> (DecidedAhead, Ahead) {
    let ahead = Ahead {
        sampler: sampler.clone(),
        ids: RandomIdGenerator::default(),
        on,
    };
    (DecidedAhead(sampler), ahead)
}

/// Makes [`decide_ahead`] decide with `ahead`, once the subscriber sampling by its
/// [`DecidedAhead`] is installed.
pub(crate) fn install_ahead(ahead: Ahead) {
    let _ = AHEAD.set(ahead);
}

/// A request's trace, decided on before its span is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decided {
    /// Its span is made for traces, recorded and (when `sampled`) sent; decide on it with
    /// [`sample_as_decided`].
    Recorded { sampled: bool },
    /// Dropped: no span of it is made for traces. Its context (in the caller's trace, or a new
    /// one; not sampled) is handed on while it runs inside [`in_unsampled`].
    Dropped(TraceContext),
}

/// Decides on the trace of a request continuing `remote` (the caller's context, if any), as
/// the services' sampler would decide on its span. `None` when tracing is off (or switched
/// off, or the subscriber installed decides nothing ahead): the request's span is then decided
/// on as it is made ([`sample`]). Deciding before the span is made spares a
/// dropped request the making of a span for traces, its lookups as its future is polled and
/// its closing: most of what tracing costs it.
pub(crate) fn decide_ahead(remote: Option<&TraceContext>, name: &str) -> Option<Decided> {
    let ahead = AHEAD.get()?;
    if ahead
        .on
        .as_ref()
        .is_some_and(|on| !on.load(Ordering::Relaxed))
    {
        return None;
    }
    let parent = remote.and_then(TraceContext::span_context);
    let trace_id = parent
        .as_ref()
        .map_or_else(|| ahead.ids.new_trace_id(), SpanContext::trace_id);
    let parent_cx = parent.map(|p| opentelemetry::Context::new().with_remote_span_context(p));
    let result = ahead.sampler.should_sample(
        parent_cx.as_ref(),
        trace_id,
        name,
        &SpanKind::Server,
        &[],
        &[],
    );
    Some(match result.decision {
        SamplingDecision::Drop => Decided::Dropped(TraceContext::new(
            traceparent(trace_id, ahead.ids.new_span_id(), false),
            Some(result.trace_state.header()),
        )),
        SamplingDecision::RecordOnly => Decided::Recorded { sampled: false },
        SamplingDecision::RecordAndSample => Decided::Recorded { sampled: true },
    })
}

/// Has the sampler decide on the span of a request [`decide_ahead`] recorded, as it decided.
pub(crate) fn sample_as_decided(span: &tracing::Span, sampled: bool) {
    /// Clears the decision however the sampling ends (a panic included).
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            DECIDED_AHEAD.set(None);
        }
    }
    DECIDED_AHEAD.set(Some(sampled));
    let _clear = Clear;
    sample(span);
}

/// Runs a request whose trace was dropped ahead: while it is polled, no span is made for
/// traces ([`unsampled_here`]) and the context handed on ([`context_of`], [`current`]) is
/// `context`.
pub(crate) async fn in_unsampled<F: Future>(context: TraceContext, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut held = Some(context);
    std::future::poll_fn(move |task| {
        let _polling = Polling::enter(&mut held);
        future.as_mut().poll(task)
    })
    .await
}

/// The unsampled context set on this thread for one poll, put back as the poll ends (a panic
/// included).
struct Polling<'a> {
    held: &'a mut Option<TraceContext>,
    previous: Option<TraceContext>,
}

impl<'a> Polling<'a> {
    fn enter(held: &'a mut Option<TraceContext>) -> Self {
        let previous = UNSAMPLED.replace(held.take());
        Self { held, previous }
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        *self.held = UNSAMPLED.replace(self.previous.take());
    }
}

/// Whether a request whose trace was dropped ahead is being polled on this thread.
pub(crate) fn unsampled_here() -> bool {
    UNSAMPLED.with_borrow(Option::is_some)
}

/// The context of the request whose trace was dropped ahead, being polled on this thread.
pub(crate) fn unsampled_context() -> Option<TraceContext> {
    UNSAMPLED.with_borrow(Clone::clone)
}

/// The trace context of `span`, to hand on (a response header, an event's metadata, a
/// message); `None` when tracing is off. The trace state handed on is the one the sampler kept
/// (a parent-based sampler keeps the parent's, sampled or not, as W3C asks). Inside a request
/// whose trace was dropped ahead, the request's context.
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    if let Some(unsampled) = unsampled_context() {
        return Some(unsampled);
    }
    if span.is_disabled() {
        return None;
    }
    // A span the sampler has decided on (a request's, as it began) knows its context already;
    // any other is decided on now, and then knows it the same way.
    if let Some(decided) = recorded_context(span, Scope::OwnIfDecided) {
        return Some(decided);
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return recorded_context(span, Scope::NearestTraced);
    }
    if let Some(decided) = recorded_context(span, Scope::OwnIfDecided) {
        return Some(decided);
    }
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    Some(TraceContext::new(
        headers.remove(TRACEPARENT)?,
        headers.remove(TRACESTATE),
    ))
}

/// Where [`recorded_context`] looks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The span itself, once the sampler has decided on it.
    OwnIfDecided,
    /// The nearest span at or above it made for traces: the span was made for the logs only,
    /// below a span whose trace was dropped (see [`sample`]).
    NearestTraced,
}

/// The context a span made for traces has recorded (its trace, its own id, the sampler's
/// decision and trace state), as the W3C headers give it.
fn recorded_context(span: &tracing::Span, scope: Scope) -> Option<TraceContext> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let mut spans = registry.span(id)?.scope();
        let mut at = |above: tracing_subscriber::registry::SpanRef<'_, _>| {
            let extensions = above.extensions();
            let data = extensions.get::<OtelData>()?;
            let result = data.builder.sampling_result.as_ref();
            if scope == Scope::OwnIfDecided && result.is_none() {
                return None;
            }
            let (Some(trace), Some(own)) = ids(data) else {
                return None;
            };
            let sampled = result.is_none_or(|r| r.decision == SamplingDecision::RecordAndSample);
            Some(TraceContext::new(
                traceparent(trace, own, sampled),
                result.map(|r| r.trace_state.header()),
            ))
        };
        match scope {
            Scope::OwnIfDecided => spans.next().and_then(&mut at),
            Scope::NearestTraced => spans.find_map(at),
        }
    })
    .flatten()
}

/// Has the sampler decide on `span` now, before the spans below it are made: below a span
/// whose trace is dropped none is made for traces (they would not be sent). A request's span
/// is decided on as the request begins; the decision is the one its context reports anyway.
pub fn sample(span: &tracing::Span) {
    if !span.is_disabled() {
        let _ = span.context();
    }
}

/// Whether the sampler dropped the trace of this span (decided on by [`sample`] or by
/// handing its context on).
pub(crate) fn dropped(data: &OtelData) -> bool {
    data.builder
        .sampling_result
        .as_ref()
        .is_some_and(|r| r.decision == SamplingDecision::Drop)
}

/// The trace id and the span's own id of a span made for traces.
fn ids(data: &OtelData) -> (Option<TraceId>, Option<SpanId>) {
    // A parent (local, or remote since `set_parent`) decides the trace; a root span has its own.
    let trace = if data.parent_cx.has_active_span() {
        Some(data.parent_cx.span().span_context().trace_id())
    } else {
        data.builder.trace_id
    };
    (trace, data.builder.span_id)
}

/// The trace id and the span's own id of a span made for traces, in hex as W3C writes them.
pub(crate) fn otel_ids(data: &OtelData) -> (Option<String>, Option<String>) {
    let (trace, own) = ids(data);
    (
        trace.map(|t| hex(&t.to_bytes())),
        own.map(|s| hex(&s.to_bytes())),
    )
}

/// The `traceparent` value naming `trace`, its span `span` and whether the trace is sampled.
fn traceparent(trace: TraceId, span: SpanId, sampled: bool) -> String {
    let mut value = String::with_capacity(55);
    value.push_str("00-");
    push_hex(&mut value, &trace.to_bytes());
    value.push('-');
    push_hex(&mut value, &span.to_bytes());
    value.push_str(if sampled { "-01" } else { "-00" });
    value
}

/// Lowercase hex of an id's bytes, without `fmt`: every request writes one or more, and
/// `fmt`'s padded `u128` formatting costs several times as much.
fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    // Trace ids have 16 bytes, span ids 8.
    let mut buffer = [0_u8; 32];
    let digits = &mut buffer[..bytes.len() * 2];
    if hex::encode_to_slice(bytes, digits).is_ok() {
        out.push_str(std::str::from_utf8(digits).unwrap_or_default());
    }
}

/// The trace context of the current span; `None` when tracing is off.
pub fn current() -> Option<TraceContext> {
    context_of(&tracing::Span::current())
}

/// Makes `span` a child of the remote span `parent` names (a caller's, or an event's), in its
/// trace. Call it before the span is entered. A malformed context is ignored: the span then
/// starts a trace of its own.
pub fn continue_trace(span: &tracing::Span, parent: &TraceContext) {
    if let Some(remote) = parent.span_context() {
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// Links `span` to the remote span `to` names, when one span serves many traces (a batch of
/// events). A malformed context is ignored.
pub fn link(span: &tracing::Span, to: &TraceContext) {
    if let Some(remote) = to.span_context() {
        span.add_link(remote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_traceparent_names_its_trace() {
        let cx = TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some(String::new()),
        );
        assert_eq!(
            cx.trace_id().as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(cx.tracestate, None);
    }

    #[test]
    fn ids_written_by_hand_read_as_w3c_writes_them() {
        let ids = RandomIdGenerator::default();
        let mut cases = vec![
            (
                TraceId::from_u128(1),
                SpanId::from_u64(0x00f0_67aa_0ba9_02b7),
            ),
            (TraceId::from_u128(u128::MAX), SpanId::from_u64(u64::MAX)),
        ];
        cases.extend((0..100).map(|_| (ids.new_trace_id(), ids.new_span_id())));
        for (trace, span) in cases {
            for (sampled, flags) in [(true, "01"), (false, "00")] {
                let written = traceparent(trace, span, sampled);
                assert_eq!(written, format!("00-{trace}-{span}-{flags}"));
                let parsed = TraceContext::new(written, None).span_context().unwrap();
                assert_eq!(
                    (parsed.trace_id(), parsed.span_id(), parsed.is_sampled()),
                    (trace, span, sampled)
                );
            }
            assert_eq!(hex(&trace.to_bytes()), trace.to_string());
        }
    }

    #[test]
    fn a_malformed_traceparent_names_no_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::new(bad, None).trace_id(), None, "{bad:?}");
        }
    }

    #[test]
    fn a_span_continuing_a_remote_trace_hands_on_the_same_context_each_time_it_is_asked() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            for flags in ["01", "00"] {
                let parent = TraceContext::new(
                    format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}"),
                    Some("vendor=kept".to_owned()),
                );
                let span = tracing::info_span!("publish");
                continue_trace(&span, &parent);
                let first = context_of(&span).unwrap();
                assert_eq!(context_of(&span).unwrap(), first, "asked again");
                let parts: Vec<&str> = first.traceparent.split('-').collect();
                assert_eq!(
                    parts[1], "4bf92f3577b34da6a3ce929d0e0e4736",
                    "the caller's trace"
                );
                assert_ne!(parts[2], "00f067aa0ba902b7", "its own span");
                assert_eq!(parts[3], flags, "the caller's decision");
                assert_eq!(first.tracestate.as_deref(), Some("vendor=kept"));
            }
        });
    }

    #[test]
    fn inside_an_unsampled_request_its_context_is_handed_on_at_every_poll_and_outside_it_none() {
        let request = TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            None,
        );
        let mut yielded = false;
        let (before, after) = futures::executor::block_on(in_unsampled(request.clone(), async {
            let before = current();
            // Gives the executor its turn once: the next poll is a new entry.
            std::future::poll_fn(|task| {
                if std::mem::replace(&mut yielded, true) {
                    std::task::Poll::Ready(())
                } else {
                    task.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
            })
            .await;
            (before, current())
        }));
        assert_eq!(before.as_ref(), Some(&request));
        assert_eq!(after.as_ref(), Some(&request), "after a pending poll");
        assert_eq!(current(), None, "outside the request");
        assert!(!unsampled_here());
    }

    #[test]
    fn a_request_sampled_ahead_is_sampled_whatever_the_provider_would_draw_and_only_it() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let (sampler, _) =
            sampling_ahead(Box::new(opentelemetry_sdk::trace::Sampler::AlwaysOff), None);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(sampler)
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let flags = |span: &tracing::Span| {
                let context = context_of(span).unwrap().traceparent;
                context.rsplit('-').next().unwrap().to_owned()
            };
            let decided = tracing::info_span!("http.request");
            sample_as_decided(&decided, true);
            assert_eq!(flags(&decided), "01", "sampled as decided ahead");
            let next = tracing::info_span!("http.request");
            sample(&next);
            assert_eq!(
                flags(&next),
                "00",
                "the provider's own draw for the next one"
            );
        });
    }

    #[test]
    fn without_tracing_a_span_has_no_context_to_hand_on() {
        let span = tracing::info_span!("untraced");
        assert_eq!(context_of(&span), None);
    }
}

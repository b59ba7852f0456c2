//! The W3C trace context (`traceparent`, `tracestate`) in and out of `tracing` spans: what a
//! request or an event carries, how a span continues it, links to it, or hands it on.
//!
//! Every function here is a no-op (or answers `None`) when tracing is off: without the
//! OpenTelemetry layer a span has no trace context.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

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

/// The trace context of `span`, to hand on (a response header, an event's metadata, a
/// message); `None` when tracing is off.
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    Some(TraceContext::new(
        headers.remove(TRACEPARENT)?,
        headers.remove(TRACESTATE),
    ))
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
    fn without_tracing_a_span_has_no_context_to_hand_on() {
        let span = tracing::info_span!("untraced");
        assert_eq!(context_of(&span), None);
    }
}

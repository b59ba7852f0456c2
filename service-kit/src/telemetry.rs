//! Logs and traces. Logs: JSON lines on stderr, each emitted inside a span carrying its
//! `trace_id`, `span_id` and `correlation_id`; tests stay quiet unless `TEST_LOG` is set.
//! Traces: OpenTelemetry over OTLP (gRPC), configured by the standard `OTEL_*` variables, and
//! off (no exporter, no OpenTelemetry layer) unless an OTLP endpoint variable is set.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::fmt::{self, Write as _};
use std::sync::OnceLock;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The filter when `RUST_LOG` is not set: the services' own logs, without the driver's chatter.
const DEFAULT_FILTER: &str = "info,tokio_postgres=warn";

/// The environment variable that makes tests print their logs.
pub const TEST_LOG: &str = "TEST_LOG";

/// The variables that turn tracing on: where to send spans (OTLP over gRPC).
pub const OTLP_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// The span field whose value every log line inside the span carries as `correlation_id`.
pub const CORRELATION_FIELD: &str = "correlation_id";

/// The name of the tracer (the instrumentation scope) the spans are recorded with.
const TRACER: &str = "milestone";

/// The provider exporting the spans, kept to flush them on shutdown.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Which log lines are written: `RUST_LOG`, else [`DEFAULT_FILTER`].
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Which spans a trace records: those the services instrument (`info` and above), the
/// driver's at `warn`, whatever `RUST_LOG` says of the logs. A filter by target and level
/// alone: unlike an `EnvFilter`, it has nothing to track as spans are entered and exited.
fn trace_filter() -> Targets {
    DEFAULT_FILTER
        .parse()
        .expect("the default filter names targets and levels only")
}

/// A layer recording spans for traces, for [`services_subscriber`].
type TraceLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The services' subscriber: spans recorded by `traces` (if any), and JSON log lines on
/// `writer` with the ids of [`LineIds`], filtered by `logs`. Each has its own filter, so that
/// the log level never decides what a trace holds.
fn services_subscriber<W>(
    traces: Option<TraceLayer>,
    logs: EnvFilter,
    writer: W,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Only a directive naming spans (`target[span{field=value}]=level`) makes the log filter
    // follow spans in and out; without one, entries and exits would only cost it a lookup each.
    let skip = !logs.to_string().contains('[');
    let logged_up_to = logs.max_level_hint();
    UnsampledGate {
        inner: tracing_subscriber::registry()
            .with(traces)
            .with(SkipEntries {
                layer: CorrelationIds.and_then(log_layer(writer)).with_filter(logs),
                skip,
            }),
        logged_up_to,
    }
}

/// The services' subscriber as a whole, refusing the spans nobody would take inside a request
/// whose trace was dropped ahead ([`crate::trace::decide_ahead`]): those the traces leave out
/// there and the logs never write (more verbose than any log line, `info` spans under
/// `RUST_LOG=warn`, say). The per-layer filters alone would not keep them out: when a
/// callsite's interest is "sometimes" (the trace filter is asked each time), the registry makes
/// the span whenever any per-layer filter is registered, and each layer then ignores it; the
/// span is still made, entered and exited at every poll, and closed. (It counts on the trace
/// layer's filter keeping out of traces every span made inside such a request, as
/// [`unless_dropped`] does in each trace layer the services build.)
struct UnsampledGate<S> {
    inner: S,
    /// The most verbose level a log line is written at (`None`: unknown, nothing refused).
    logged_up_to: Option<tracing_subscriber::filter::LevelFilter>,
}

impl<S: Subscriber> Subscriber for UnsampledGate<S> {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        let unlogged = self
            .logged_up_to
            .is_some_and(|logged| *metadata.level() > logged);
        if metadata.is_span() && unlogged && crate::trace::unsampled_here() {
            return false;
        }
        self.inner.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        self.inner.max_level_hint()
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        self.inner.event_enabled(event)
    }

    fn event(&self, event: &Event<'_>) {
        self.inner.event(event);
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> tracing_core::span::Current {
        self.inner.current_span()
    }

    // The `Subscriber` trait's downcast is an `unsafe fn`; the gate answers for itself and
    // passes the rest on (the registry inside, which the trace context is read from).
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(std::ptr::from_ref(self).cast());
        }
        // SAFETY: the inner subscriber answers for itself and what it holds.
        unsafe { self.inner.downcast_raw(id) }
    }
}

impl<'a, S: LookupSpan<'a>> LookupSpan<'a> for UnsampledGate<S> {
    type Data = S::Data;

    fn span_data(&'a self, id: &Id) -> Option<Self::Data> {
        self.inner.span_data(id)
    }

    fn register_filter(&mut self) -> tracing_subscriber::filter::FilterId {
        self.inner.register_filter()
    }
}

/// The OpenTelemetry layer recording spans with `provider`'s tracer: each span with its name,
/// kind, status and the ids and fields the code gives it, and nothing per span the code does
/// not ask for (source file and line, thread, busy and idle time: each costs per span, in
/// clock reads while the span's future is polled and in attributes exported).
fn otel_layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
}

/// The OpenTelemetry layer recording the spans of [`trace_filter`] with `provider`'s tracer,
/// none below a span whose trace was dropped ([`unless_dropped`]).
fn trace_layer(provider: &SdkTracerProvider) -> TraceLayer {
    Box::new(traced(provider, trace_filter().and(unless_dropped())))
}

/// [`otel_layer`] recording the spans `filter` lets through, told nothing of spans being
/// entered and exited ([`SkipEntries`]).
fn traced<S, F>(
    provider: &SdkTracerProvider,
    filter: F,
) -> SkipEntries<
    tracing_subscriber::filter::Filtered<
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        F,
        S,
    >,
>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    F: tracing_subscriber::layer::Filter<S>,
{
    SkipEntries {
        layer: otel_layer(provider).with_filter(filter),
        skip: true,
    }
}

/// A layer told nothing of spans being entered and exited (when `skip`). A span is entered
/// and exited at every poll of its instrumented future, a dozen times a request, and each time
/// every per-layer filter looks the span up. The trace layer's only use of an exit is to note
/// its time as the span's end, at a clock read and a lock more: its spans end when they close
/// instead, which for the services' spans (instrumented futures, dropped as they complete) is
/// as they finish. The log layer needs them only for a filter naming spans. Everything else is
/// passed on, the per-layer filter's registration and the downcasts included.
struct SkipEntries<L> {
    layer: L,
    skip: bool,
}

impl<S, L> Layer<S> for SkipEntries<L>
where
    S: Subscriber,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.layer.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.layer.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.layer.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.layer.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.layer.on_new_span(attrs, id, ctx);
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        self.layer.max_level_hint()
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.layer.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.layer.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.layer.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.layer.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.skip {
            self.layer.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.skip {
            self.layer.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.layer.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.layer.on_id_change(old, new, ctx);
    }

    // The `Layer` trait's downcast is an `unsafe fn`; a wrapper answers for itself and passes
    // the rest on, as the wrappers of `tracing-subscriber` do.
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(std::ptr::from_ref(self).cast());
        }
        // SAFETY: the inner layer answers for itself and what it holds.
        unsafe { self.layer.downcast_raw(id) }
    }
}

/// Keeps out of traces what happens below a span whose trace the sampler dropped (a request
/// that [`crate::trace::sample`] decided on as it began), and inside a request whose trace was
/// dropped before its span was made ([`crate::trace::decide_ahead`]), that span included:
/// nothing of it would be sent, and
/// making a span costs as much whether its trace is sent or not. Such a span, when made for the
/// logs, hands on the trace context of the dropped span above it ([`crate::trace::context_of`]).
fn unless_dropped<S>() -> impl tracing_subscriber::layer::Filter<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::filter::dynamic_filter_fn(|metadata, cx: &Context<'_, S>| {
        // A request's span made for the logs only, its trace dropped before it was made (the
        // callsite's interest is only a hint: the log layer's interest asks again each time).
        metadata.target() != crate::trace::UNSAMPLED_TARGET
            && !crate::trace::unsampled_here()
            && !cx.lookup_current().is_some_and(|span| {
                span.extensions()
                    .get::<tracing_opentelemetry::OtelData>()
                    .is_some_and(crate::trace::dropped)
            })
    })
    .with_callsite_filter(|metadata| {
        if metadata.target() == crate::trace::UNSAMPLED_TARGET {
            tracing::subscriber::Interest::never()
        } else {
            tracing::subscriber::Interest::sometimes()
        }
    })
    .with_max_level_hint(ANY_LEVEL)
}

/// The level hint of a filter that decides by something other than the level. A filter
/// without a hint makes the whole subscriber's hint unknown, and an unknown hint lets every
/// `log` record of every level through to the subscriber (the `log` crate has no per-callsite
/// cache: its only gate is the maximum level), to be converted and filtered one by one.
const ANY_LEVEL: tracing_subscriber::filter::LevelFilter =
    tracing_subscriber::filter::LevelFilter::TRACE;

/// Whether the environment asks for traces: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns them off.
pub fn tracing_requested() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let is = |name: &str, value: &str| {
        std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    OTLP_ENDPOINT_VARS.iter().any(|v| set(v))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The resource the spans are reported under: `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`, and the executable's name when neither names the service.
fn resource() -> Resource {
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    let executable = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
    match executable.filter(|_| !named) {
        Some(name) => Resource::builder().with_service_name(name).build(),
        None => Resource::builder().build(),
    }
}

/// The OTLP exporter, on a small runtime of its own: the batch processor exports from a plain
/// thread, and the gRPC client needs a Tokio reactor to run on.
#[derive(Debug)]
struct OtlpExporter {
    runtime: tokio::runtime::Runtime,
    inner: opentelemetry_otlp::SpanExporter,
}

impl OtlpExporter {
    /// The exporter the `OTEL_*` variables configure; `endpoint`, when given, in place of
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    fn new(endpoint: Option<&str>) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()?;
        let built = {
            let _entered = runtime.enter();
            use opentelemetry_otlp::WithExportConfig;
            let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        };
        match built {
            Ok(inner) => Ok(Self { runtime, inner }),
            Err(e) => {
                // Dropped as it is, a runtime panics when the caller runs inside another
                // (a service's `main` does).
                runtime.shutdown_background();
                Err(e.into())
            }
        }
    }
}

impl SpanExporter for OtlpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = match tokio::runtime::Handle::try_current() {
            // Called from a runtime already (a flush from a service's task): run it there.
            Ok(_) => self.inner.export(batch).await,
            Err(_) => self.runtime.block_on(self.inner.export(batch)),
        };
        if let Err(e) = &result {
            export_failed(spans, e);
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// What the trace exporter reports of itself.
struct ExportMetrics {
    failures: prometheus_client::metrics::counter::Counter,
    dropped: prometheus_client::metrics::counter::Counter,
}

static EXPORT_METRICS: std::sync::LazyLock<ExportMetrics> =
    std::sync::LazyLock::new(|| ExportMetrics {
        failures: crate::metrics::single_counter(
            "milestone_trace_export_failures_total",
            "Batches of spans the OTLP exporter could not send (their spans are lost)",
        ),
        dropped: crate::metrics::single_counter(
            "milestone_trace_spans_dropped_total",
            "Spans dropped: ended while the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE \
             spans not yet through the exporter), or still unsent when the service stopped",
        ),
    });

/// Registers the metrics of the trace exporter (at zero: a failure rate is then defined before
/// the first failure). [`init_tracing`] does, whether tracing is on or not.
pub fn register_metrics() {
    std::sync::LazyLock::force(&EXPORT_METRICS);
}

/// A loss of spans is said at most this often (a collector that is down fails every batch).
const LOSS_SAID_EVERY: Duration = Duration::from_secs(60);

/// A warning about lost spans, said the first time and then at most once every
/// [`LOSS_SAID_EVERY`], with how many losses were not said in between.
#[derive(Debug)]
struct Loss {
    last_said: std::sync::Mutex<Option<std::time::Instant>>,
    unsaid: std::sync::atomic::AtomicU64,
}

impl Loss {
    const fn new() -> Self {
        Self {
            last_said: std::sync::Mutex::new(None),
            unsaid: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Notes `n` more losses, to be said.
    fn note(&self, n: u64) {
        self.unsaid
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// When there are losses not said and the warning is due, how many, which the caller then
    /// says.
    fn due(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if self.unsaid.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = std::time::Instant::now();
        let mut last = self
            .last_said
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| now.duration_since(at) < LOSS_SAID_EVERY) {
            return None;
        }
        *last = Some(now);
        Some(self.unsaid.swap(0, Ordering::Relaxed))
    }
}

/// Counts a batch of `spans` the exporter could not send, and says so: the first time, then
/// at most once every [`LOSS_SAID_EVERY`], with how many batches failed since it was last said.
/// Without this the spans would be lost unseen: the SDK's own reports are compiled out.
fn export_failed(spans: usize, error: &opentelemetry_sdk::error::OTelSdkError) {
    static FAILED: Loss = Loss::new();
    EXPORT_METRICS.failures.inc();
    FAILED.note(1);
    if let Some(batches) = FAILED.due() {
        tracing::warn!(
            spans,
            failed_batches = batches,
            error = %error,
            "the OTLP exporter could not send a batch of spans, which are lost (every failure \
             is counted in milestone_trace_export_failures_total; this is said at most once a \
             minute)"
        );
    }
}

/// The variable sizing the queue of spans waiting for the exporter.
const SPAN_QUEUE_VAR: &str = "OTEL_BSP_MAX_QUEUE_SIZE";

/// The default of [`SPAN_QUEUE_VAR`], as the SDK has it.
const SPAN_QUEUE_DEFAULT: usize = 2048;

/// The size of the queue of spans waiting for the exporter: [`SPAN_QUEUE_VAR`] (`size`) when
/// it is a number, else [`SPAN_QUEUE_DEFAULT`].
fn span_queue(size: Option<&str>) -> usize {
    size.and_then(|size| size.trim().parse().ok())
        .unwrap_or(SPAN_QUEUE_DEFAULT)
}

/// What is wrong with the queue size [`SPAN_QUEUE_VAR`] (`size`) asks for, and what is done
/// instead; `None` when nothing is.
fn span_queue_problem(size: Option<&str>) -> Option<String> {
    // Empty is unset, as the specification has it.
    let size = size.filter(|size| !size.trim().is_empty())?;
    match size.trim().parse::<usize>() {
        Err(_) => Some(format!(
            "{SPAN_QUEUE_VAR}={size:?} is not a number of spans: the export queue holds \
             {SPAN_QUEUE_DEFAULT}"
        )),
        Ok(0) => Some(format!(
            "{SPAN_QUEUE_VAR}=0: the export queue holds no span, so every span is dropped (and \
             counted in milestone_trace_spans_dropped_total)"
        )),
        Ok(_) => None,
    }
}

/// The batch processor of every service's provider: the SDK's, exporting with `exporter`, with
/// a bound of [`SPAN_QUEUE_VAR`] (default 2048) on the spans ended and not yet through the
/// exporter. See [`BoundedBatch`].
fn batched<E: SpanExporter + 'static>(exporter: E) -> BoundedBatch {
    let size = std::env::var(SPAN_QUEUE_VAR).ok();
    bounded_batch(
        exporter,
        span_queue(size.as_deref()),
        opentelemetry_sdk::trace::BatchConfigBuilder::default(),
    )
}

/// The SDK's batch processor with a queue of `queue` spans and the rest of `config` (the
/// `OTEL_BSP_*` settings from the environment, as [`batched`] gives it), behind the same bound
/// of its own.
fn bounded_batch<E: SpanExporter + 'static>(
    exporter: E,
    queue: usize,
    config: opentelemetry_sdk::trace::BatchConfigBuilder,
) -> BoundedBatch {
    use opentelemetry_sdk::trace::BatchSpanProcessor;
    let backlog = std::sync::Arc::new(Backlog {
        spans: std::sync::atomic::AtomicUsize::new(0),
        bound: queue,
        dropped: Loss::new(),
    });
    let inner = BatchSpanProcessor::builder(Releasing {
        inner: exporter,
        backlog: backlog.clone(),
    })
    .with_batch_config(config.with_max_queue_size(queue).build())
    .build();
    BoundedBatch { inner, backlog }
}

/// The spans a [`BoundedBatch`] has let through and its exporter has not yet finished with.
#[derive(Debug)]
struct Backlog {
    spans: std::sync::atomic::AtomicUsize,
    bound: usize,
    /// The spans dropped, to be said.
    dropped: Loss,
}

/// The SDK's batch processor behind a bound on the spans ended and not yet through its
/// exporter (queued, batched or being sent). The SDK's processor drops a span its queue has no
/// room for and says so only in its internal logs, which are compiled out; its queue holds no
/// more than this bound does, so it never drops one itself, and every span dropped here is
/// counted in `milestone_trace_spans_dropped_total` and said in a warning, at most once a
/// minute, once the exporter is through with a batch.
///
/// A flush or a shutdown of the SDK's processor exports one batch (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`)
/// and leaves the rest of its queue; here they go on until the queue is empty or stops getting
/// shorter, and the spans a shutdown still leaves behind are counted as dropped and said.
#[derive(Debug)]
struct BoundedBatch {
    inner: opentelemetry_sdk::trace::BatchSpanProcessor,
    backlog: std::sync::Arc<Backlog>,
}

impl BoundedBatch {
    /// Flushes batch after batch until nothing is left, the backlog stops getting shorter
    /// (spans ending as fast as they are sent), or `deadline` has passed.
    fn flush_until(&self, deadline: Option<std::time::Instant>) -> OTelSdkResult {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        use std::sync::atomic::Ordering;
        let mut left = self.backlog.spans.load(Ordering::Acquire);
        let mut result = Ok(());
        loop {
            // A batch that failed is gone all the same (counted as a failure): go on.
            result = result.and(self.inner.force_flush());
            let now = self.backlog.spans.load(Ordering::Acquire);
            let late = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            if now == 0 || now >= left || late {
                return result;
            }
            left = now;
        }
    }
}

impl opentelemetry_sdk::trace::SpanProcessor for BoundedBatch {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        use std::sync::atomic::Ordering;
        let bound = self.backlog.bound;
        let room = self
            .backlog
            .spans
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < bound).then_some(n + 1)
            });
        if room.is_ok() {
            self.inner.on_end(span);
        } else {
            EXPORT_METRICS.dropped.inc();
            self.backlog.dropped.note(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush_until(None)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        use std::sync::atomic::Ordering;
        let deadline = std::time::Instant::now() + timeout;
        let flushed = self.flush_until(Some(deadline));
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let shut = self.inner.shutdown_with_timeout(left);
        let unsent = self.backlog.spans.swap(0, Ordering::AcqRel) as u64;
        EXPORT_METRICS.dropped.inc_by(unsent);
        self.backlog.dropped.note(unsent);
        // The last word: the drops not said yet (held back by the once a minute), these included.
        let dropped = self.backlog.dropped.unsaid.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                unsent,
                "spans were dropped, of which `unsent` not sent when the service stopped (all \
                 counted in milestone_trace_spans_dropped_total)"
            );
        }
        flushed.and(shut)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter of a [`BoundedBatch`]: makes room for as many spans as it was handed once it
/// is through with them, sent or not, and says what was dropped meanwhile.
#[derive(Debug)]
struct Releasing<E> {
    inner: E,
    backlog: std::sync::Arc<Backlog>,
}

impl<E: SpanExporter> SpanExporter for Releasing<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        use std::sync::atomic::Ordering;
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        // Saturating: a shutdown that timed out has already counted these as unsent.
        let _ = self
            .backlog
            .spans
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(spans))
            });
        if let Some(dropped) = self.backlog.dropped.due() {
            tracing::warn!(
                dropped,
                queue = self.backlog.bound,
                "spans were dropped: the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE spans \
                 waiting for the collector); every one is counted in \
                 milestone_trace_spans_dropped_total, and this is said at most once a minute"
            );
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// What is wrong with the sampler `OTEL_TRACES_SAMPLER` (`sampler`) and
/// `OTEL_TRACES_SAMPLER_ARG` (`arg`) configure, and what the SDK does instead; `None` when
/// nothing is. The SDK's own warnings are compiled out, so without this a typo would silently
/// trace every request.
fn sampler_problem(sampler: Option<&str>, arg: Option<&str>) -> Option<String> {
    const KNOWN: &str = "always_on, always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off, parentbased_traceidratio";
    let sampler = sampler?;
    // Under a parent-based sampler, a caller's sampled flag still decides its requests.
    let caller = if sampler.starts_with("parentbased_") {
        " (a caller's own decision still holds)"
    } else {
        ""
    };
    let problem = match sampler {
        "always_on" | "always_off" | "parentbased_always_on" | "parentbased_always_off" => None,
        "traceidratio" | "parentbased_traceidratio" => match arg.map(|a| (a, a.parse::<f64>())) {
            None => Some(format!(
                "OTEL_TRACES_SAMPLER={sampler} without OTEL_TRACES_SAMPLER_ARG: every \
                     trace is sampled (ratio 1.0); set OTEL_TRACES_SAMPLER_ARG to a ratio \
                     between 0 and 1, 0.1 for a tenth"
            )),
            Some((a, Err(_))) => Some(format!(
                "OTEL_TRACES_SAMPLER_ARG={a:?} is not a number: every trace is sampled \
                     (ratio 1.0); give a ratio between 0 and 1, 0.1 for a tenth"
            )),
            Some((a, Ok(ratio))) if !(0.0..=1.0).contains(&ratio) => Some(format!(
                "OTEL_TRACES_SAMPLER_ARG={a:?} is not a ratio between 0 and 1: {}",
                if ratio >= 1.0 {
                    "every trace is sampled"
                } else {
                    "no trace is sampled"
                }
            )),
            Some(_) => None,
        },
        other => Some(format!(
            "OTEL_TRACES_SAMPLER={other:?} is not a sampler this service knows ({KNOWN}): \
             every trace is sampled (parentbased_always_on)"
        )),
    };
    problem.map(|p| p + caller)
}

/// The provider exporting to the OTLP endpoint the `OTEL_*` variables name, batched; the
/// sampler follows `OTEL_TRACES_SAMPLER` (parent-based, always on by default), requests
/// decided on ahead with it (see [`crate::trace::decide_ahead`]).
fn otlp_provider(
) -> Result<(SdkTracerProvider, crate::trace::Ahead), Box<dyn std::error::Error + Send + Sync>> {
    let (sampler, ahead) = configured_sampling(None);
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(batched(OtlpExporter::new(None)?))
        .with_resource(resource())
        .build();
    Ok((provider, ahead))
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` configure, for the provider
/// and for deciding on requests ahead; `on`, when given, is the switch tracing is behind.
fn configured_sampling(
    on: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> (crate::trace::DecidedAhead, crate::trace::Ahead) {
    crate::trace::sampling_ahead(opentelemetry_sdk::trace::Config::default().sampler, on)
}

/// Keeps `provider` to flush it on shutdown, and decides requests ahead with `ahead`, once
/// the subscriber recording with it is installed.
fn keep(provider: SdkTracerProvider, ahead: crate::trace::Ahead) {
    let _ = PROVIDER.set(provider);
    crate::trace::install_ahead(ahead);
}

/// Installs the global subscriber of a service: JSON lines on stderr, filtered by `RUST_LOG`
/// (default `info`, the PostgreSQL driver at `warn`), and, when [`tracing_requested`], spans
/// exported over OTLP. Installs it once; later calls do nothing. Call [`shutdown_tracing`]
/// before the process exits so that the last spans are sent.
pub fn init_tracing() {
    register_metrics();
    let (provider, unusable) = if tracing_requested() {
        match otlp_provider() {
            Ok(provided) => (Some(provided), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let traced = provider.is_some();
    if !install(provider) {
        // Another subscriber was installed first: say it where it can still be seen.
        if let Some(e) = unusable {
            eprintln!("tracing stays off: the OTLP exporter cannot be set up: {e}");
        }
        return;
    }
    if let Some(e) = unusable {
        tracing::error!(error = %e, "tracing stays off: the OTLP exporter cannot be set up");
    }
    if traced {
        let var = |name| std::env::var(name).ok();
        let (sampler, arg) = (var("OTEL_TRACES_SAMPLER"), var("OTEL_TRACES_SAMPLER_ARG"));
        let problems = [
            sampler_problem(sampler.as_deref(), arg.as_deref()),
            protocol_problem(var(OTLP_PROTOCOL_VARS[1]).or_else(|| var(OTLP_PROTOCOL_VARS[0]))),
            span_queue_problem(var(SPAN_QUEUE_VAR).as_deref()),
        ];
        for problem in problems.into_iter().flatten() {
            tracing::warn!("{problem}");
        }
    }
}

/// The variables naming the OTLP protocol, the general one first.
const OTLP_PROTOCOL_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
];

/// What is wrong with the OTLP protocol asked for (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`): the services speak gRPC only. `None` when it is unset or
/// `grpc`.
fn protocol_problem(protocol: Option<String>) -> Option<String> {
    let protocol = protocol.filter(|p| !p.trim().is_empty())?;
    (protocol.trim() != "grpc").then(|| {
        format!(
            "OTLP protocol {protocol:?} asked for, but the services export over gRPC only: the \
             spans are sent over gRPC (a collector's gRPC port is 4317; OTLP over HTTP is 4318)"
        )
    })
}

/// Installs the services' subscriber (JSON logs on stderr, filtered by `RUST_LOG`), recording
/// traces with `provider` when given; returns whether it was installed (no other subscriber
/// was first).
fn install(provider: Option<(SdkTracerProvider, crate::trace::Ahead)>) -> bool {
    let installed = services_subscriber(
        provider.as_ref().map(|(provider, _)| trace_layer(provider)),
        filter(),
        std::io::stderr,
    )
    .try_init()
    .is_ok();
    if let (true, Some((provider, ahead))) = (installed, provider) {
        keep(provider, ahead);
    }
    installed
}

/// The services' log lines: stock JSON, with the ids of [`LineIds`] added.
fn log_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(SpanFieldsJson)
        .event_format(TracedJson(Format::default().json()))
        .with_writer(writer)
}

/// A span's fields as the log lines show them: a JSON object, written as `JsonFields` writes
/// it, but a field recorded once the span exists is added to the end of the object, where
/// `JsonFields` parses the object and writes it again. The services record a request's status,
/// instance and command ids that way, several times a request. A log line reads the object back
/// into a map (the fields sorted, a field recorded twice shown with its last value), so the
/// lines are the same as with `JsonFields`.
struct SpanFieldsJson;

impl<'w> FormatFields<'w> for SpanFieldsJson {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut members = JsonMembers::default();
        fields.record(&mut members);
        writer.write_char('{')?;
        writer.write_str(&members.0)?;
        writer.write_char('}')
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let mut members = JsonMembers::default();
        fields.record(&mut members);
        if members.0.is_empty() {
            return Ok(());
        }
        let object = &mut current.fields;
        match object.pop() {
            Some('}') if object.ends_with('{') => {}
            Some('}') => object.push(','),
            // Not an object this formatter wrote: start one.
            _ => {
                object.clear();
                object.push('{');
            }
        }
        object.push_str(&members.0);
        object.push('}');
        Ok(())
    }
}

/// The members of a JSON object (`"name":value,…`, without the braces) for the fields
/// visited, each value as `JsonFields` writes it.
#[derive(Default)]
struct JsonMembers(String);

impl JsonMembers {
    fn member(&mut self, name: &str, value: impl serde::Serialize) {
        let (Ok(name), Ok(value)) = (serde_json::to_string(name), serde_json::to_string(&value))
        else {
            return;
        };
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(&name);
        self.0.push(':');
        self.0.push_str(&value);
    }
}

impl Visit for JsonMembers {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // What `JsonFields` writes for a number JSON has no room for (NaN, infinities): null.
        self.member(field.name(), value.is_finite().then_some(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field.name(), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field.name(), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field.name(), value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field.name(), value);
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.member(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // The names of `log` records' metadata, which the line shows already.
        if name.starts_with("log.") {
            return;
        }
        self.member(
            name.strip_prefix("r#").unwrap_or(name),
            format!("{value:?}"),
        );
    }
}

/// Sends the spans not exported yet and stops exporting; call it once, as the service stops.
/// Does nothing when tracing is off.
pub fn shutdown_tracing() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "the last spans could not be exported");
        }
    }
}

/// For tests: when `TEST_LOG` is set, prints logs (text, filtered by `RUST_LOG`) through the
/// test harness's capture; otherwise installs nothing and the tests stay quiet. Call it from
/// every test's setup: it installs the subscriber once, whatever the number of calls.
///
/// Returns whether logs are printed.
pub fn init_test_tracing() -> bool {
    if std::env::var_os(TEST_LOG).is_none() {
        return false;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_test_writer()
        .try_init();
    true
}

/// For tests: installs (once per process) a subscriber that records every span in memory, as
/// the OTLP exporter would send it, and prints logs as [`init_test_tracing`] does. Returns the
/// recorded spans' exporter.
///
/// # Panics
/// When another global subscriber was installed first.
#[cfg(feature = "testing")]
pub fn init_in_memory_tracing() -> opentelemetry_sdk::trace::InMemorySpanExporter {
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let (sampler, ahead) = configured_sampling(None);
            let provider = SdkTracerProvider::builder()
                .with_sampler(sampler)
                .with_simple_exporter(exporter.clone())
                .build();
            let logs = std::env::var_os(TEST_LOG).map(|_| {
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(filter())
            });
            tracing_subscriber::registry()
                .with(traced(&provider, unless_dropped()))
                .with(CorrelationIds)
                .with(logs)
                .try_init()
                .expect("no other subscriber is installed before the in-memory one");
            keep(provider, ahead);
            exporter
        })
        .clone()
}

/// Turns the tracing of [`init_switchable_tracing`] on and off.
#[cfg(feature = "testing")]
#[derive(Clone)]
pub struct TracingSwitch(std::sync::Arc<std::sync::atomic::AtomicBool>);

#[cfg(feature = "testing")]
impl TracingSwitch {
    pub fn set(&self, on: bool) {
        self.0.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An exporter that drops every batch: the cost of tracing up to the wire.
#[cfg(feature = "testing")]
#[derive(Debug)]
struct Discard;

#[cfg(feature = "testing")]
impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

/// For benchmarks comparing tracing on and off in one process: installs the services'
/// subscriber (JSON logs on stderr, filtered by `RUST_LOG`) with the OpenTelemetry layer behind
/// a switch, off at first. Traced spans are batched and sent by the services' OTLP exporter to
/// `endpoint`, or, without one, batched the same way and then dropped instead of sent.
///
/// # Panics
/// When another global subscriber was installed first, or the exporter cannot be built.
#[cfg(feature = "testing")]
pub fn init_switchable_tracing(endpoint: Option<&str>) -> TracingSwitch {
    let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = TracingSwitch(on.clone());
    let (sampler, ahead) = configured_sampling(Some(on.clone()));
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource());
    let provider = match endpoint {
        Some(endpoint) => builder.with_span_processor(batched(
            OtlpExporter::new(Some(endpoint)).expect("the OTLP exporter is built"),
        )),
        None => builder.with_span_processor(batched(Discard)),
    }
    .build();
    // Asked on every span (a plain `filter_fn` is asked once per callsite, and a callsite
    // first met while off would stay off).
    let switched = tracing_subscriber::filter::dynamic_filter_fn(move |_, _| {
        on.load(std::sync::atomic::Ordering::Relaxed)
    })
    .with_max_level_hint(ANY_LEVEL);
    let traces: TraceLayer = Box::new(traced(
        &provider,
        trace_filter().and(switched).and(unless_dropped()),
    ));
    services_subscriber(Some(traces), filter(), std::io::stderr)
        .try_init()
        .expect("no other subscriber is installed before the switchable one");
    keep(provider, ahead);
    switch
}

/// For benchmarks of what tracing costs a request: installs the services' subscriber (JSON
/// logs on stderr, filtered by `RUST_LOG`) and, with `ratio`, traces sampled at that ratio
/// (parent-based, as `OTEL_TRACES_SAMPLER=parentbased_traceidratio` sets), batched by the
/// services' batch processor and then dropped instead of sent.
///
/// # Panics
/// When another global subscriber was installed first.
#[cfg(feature = "testing")]
pub fn init_sampled_tracing(ratio: Option<f64>) {
    use opentelemetry_sdk::trace::Sampler;
    let provider = ratio.map(|ratio| {
        let (sampler, ahead) = crate::trace::sampling_ahead(
            Box::new(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            )))),
            None,
        );
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_span_processor(batched(Discard))
            .build();
        (provider, ahead)
    });
    assert!(
        install(provider),
        "no other subscriber is installed before the sampled one"
    );
}

/// The correlation id a span was given (its [`CORRELATION_FIELD`]), kept with the span.
struct CorrelationId(String);

/// Finds the [`CORRELATION_FIELD`] among a span's values.
#[derive(Default)]
struct FindCorrelation(Option<String>);

impl Visit for FindCorrelation {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == CORRELATION_FIELD {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == CORRELATION_FIELD {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// Keeps each span's correlation id (given when the span is created or recorded later) for the
/// log lines emitted inside it.
struct CorrelationIds;

impl CorrelationIds {
    fn keep<S>(id: &Id, ctx: &Context<'_, S>, found: FindCorrelation)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let (Some(value), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().replace(CorrelationId(value));
        }
    }
}

impl<S> Layer<S> for CorrelationIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut found = FindCorrelation::default();
        attrs.record(&mut found);
        Self::keep(id, &ctx, found);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut found = FindCorrelation::default();
        values.record(&mut found);
        Self::keep(id, &ctx, found);
    }
}

/// The ids of the innermost span of a scope: its trace and its own span (when traced), and
/// the nearest correlation id.
#[derive(Default)]
struct LineIds {
    trace_id: Option<String>,
    span_id: Option<String>,
    correlation_id: Option<String>,
}

impl LineIds {
    fn of<S>(ctx: &FmtContext<'_, S, SpanFieldsJson>) -> Self
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut ids = Self::default();
        // Inside a request whose trace was dropped before its span was made, its context.
        if let Some(unsampled) = crate::trace::unsampled_context() {
            let mut parts = unsampled.traceparent.split('-').skip(1);
            ids.trace_id = parts.next().map(str::to_owned);
            ids.span_id = parts.next().map(str::to_owned);
        }
        let Some(scope) = ctx.event_scope() else {
            return ids;
        };
        for span in scope {
            let extensions = span.extensions();
            if ids.trace_id.is_none() {
                if let Some(data) = extensions.get::<tracing_opentelemetry::OtelData>() {
                    let (trace, own) = crate::trace::otel_ids(data);
                    ids.trace_id = trace;
                    ids.span_id = own;
                }
            }
            if ids.correlation_id.is_none() {
                ids.correlation_id = extensions.get::<CorrelationId>().map(|c| c.0.clone());
            }
            if ids.trace_id.is_some() && ids.correlation_id.is_some() {
                break;
            }
        }
        ids
    }

    /// `,"trace_id":"…",…` for the ids known, to close a JSON object with.
    fn json_members(&self) -> String {
        let mut out = String::new();
        for (key, value) in [
            ("trace_id", &self.trace_id),
            ("span_id", &self.span_id),
            (CORRELATION_FIELD, &self.correlation_id),
        ] {
            if let Some(value) = value {
                let value = serde_json::Value::String(value.clone());
                let _ = write!(out, ",\"{key}\":{value}");
            }
        }
        out
    }
}

/// The stock JSON line with the ids of [`LineIds`] added as top-level members.
struct TracedJson(Format<Json>);

impl<S> FormatEvent<S, SpanFieldsJson> for TracedJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFieldsJson>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let members = LineIds::of(ctx).json_members();
        match line.trim_end().strip_suffix('}') {
            Some(object) if !members.is_empty() => writeln!(writer, "{object}{members}}}"),
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_logs_follow_test_log_and_can_be_installed_again() {
        let expected = std::env::var_os(TEST_LOG).is_some();
        assert_eq!(init_test_tracing(), expected);
        assert_eq!(init_test_tracing(), expected);
    }

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Lines {
        fn json(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    #[test]
    fn a_sampler_the_sdk_would_not_follow_is_named_with_what_it_does_instead() {
        for (sampler, arg) in [
            (None, None),
            (None, Some("0.1")),
            (Some("always_on"), None),
            (Some("parentbased_always_off"), Some("ignored")),
            (Some("parentbased_traceidratio"), Some("0.1")),
            (Some("traceidratio"), Some("0")),
            (Some("traceidratio"), Some("1")),
        ] {
            assert_eq!(sampler_problem(sampler, arg), None, "{sampler:?} {arg:?}");
        }
        let said = |sampler, arg| sampler_problem(Some(sampler), arg).unwrap();
        let missing = said("parentbased_traceidratio", None);
        assert!(
            missing.contains("without OTEL_TRACES_SAMPLER_ARG"),
            "{missing}"
        );
        assert!(missing.contains("every trace is sampled"), "{missing}");
        assert!(
            missing.ends_with("(a caller's own decision still holds)"),
            "{missing}"
        );
        let percent = said("parentbased_traceidratio", Some("10%"));
        assert!(percent.contains("\"10%\" is not a number"), "{percent}");
        assert!(percent.contains("every trace is sampled"), "{percent}");
        assert!(said("traceidratio", Some("10")).ends_with("every trace is sampled"));
        assert!(said("traceidratio", Some("-0.5")).ends_with("no trace is sampled"));
        assert!(said("traceidratio", Some("NaN")).ends_with("no trace is sampled"));
        let typo = said("ParentBased_TraceIdRatio", Some("0.1"));
        assert!(
            typo.contains("is not a sampler this service knows"),
            "{typo}"
        );
        assert!(
            typo.contains("parentbased_traceidratio"),
            "names the known ones: {typo}"
        );
        assert!(said("xray", None).contains("every trace is sampled"));
    }

    #[tokio::test]
    async fn an_endpoint_the_exporter_cannot_use_is_an_error_even_inside_a_runtime() {
        let error = OtlpExporter::new(Some("not a url")).unwrap_err();
        assert!(!error.to_string().is_empty());
    }

    #[test]
    fn an_export_queue_size_that_is_not_a_number_or_zero_is_said_with_what_is_done_instead() {
        assert_eq!(span_queue(None), 2048);
        assert_eq!(span_queue(Some(" 100 ")), 100);
        assert_eq!(span_queue(Some("lots")), 2048);
        assert_eq!(span_queue_problem(None), None);
        assert_eq!(span_queue_problem(Some("")), None, "empty is unset");
        assert_eq!(span_queue_problem(Some("100")), None);
        let lots = span_queue_problem(Some("lots")).unwrap();
        assert!(
            lots.contains("\"lots\" is not a number") && lots.contains("2048"),
            "{lots}"
        );
        let zero = span_queue_problem(Some("0")).unwrap();
        assert!(zero.contains("every span is dropped"), "{zero}");
    }

    #[test]
    fn an_otlp_protocol_other_than_grpc_is_said_to_be_sent_over_grpc_all_the_same() {
        assert_eq!(protocol_problem(None), None);
        assert_eq!(protocol_problem(Some("grpc".to_owned())), None);
        assert_eq!(protocol_problem(Some(" ".to_owned())), None);
        let http = protocol_problem(Some("http/protobuf".to_owned())).unwrap();
        assert!(http.contains("\"http/protobuf\""), "{http}");
        assert!(http.contains("over gRPC only"), "{http}");
    }

    /// The fields of the only line in `lines`, a warning whose message names `metric`.
    fn said_once_naming<'l>(lines: &'l [serde_json::Value], metric: &str) -> &'l serde_json::Value {
        assert_eq!(lines.len(), 1, "said once: {lines:?}");
        assert_eq!(lines[0]["level"], "WARN");
        let fields = &lines[0]["fields"];
        let message = fields["message"].as_str().unwrap();
        assert!(message.contains(metric), "{message}");
        fields
    }

    /// An exporter that holds every batch until it is let go, and counts the spans it got.
    #[derive(Debug, Clone, Default)]
    struct Held {
        open: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
        got: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Held {
        fn let_go(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl SpanExporter for Held {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let (open, opened) = &*self.open;
            let _open = opened
                .wait_while(open.lock().unwrap(), |open| !*open)
                .unwrap();
            self.got
                .fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    /// A provider batching into a [`Held`] exporter through a queue of `queue` spans.
    fn held_provider(
        queue: usize,
        config: opentelemetry_sdk::trace::BatchConfigBuilder,
    ) -> (Held, SdkTracerProvider) {
        let held = Held::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(bounded_batch(held.clone(), queue, config))
            .build();
        (held, provider)
    }

    /// Ends `n` spans of `provider`'s.
    fn end_spans(provider: &SdkTracerProvider, n: usize) {
        use opentelemetry::trace::{Span as _, Tracer as _};
        let tracer = provider.tracer("test");
        for _ in 0..n {
            tracer.start("span").end();
        }
    }

    /// Held by the tests that read the process's drop counter, which they would otherwise
    /// move under each other.
    static DROP_COUNTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn spans_ended_while_the_export_queue_is_full_are_dropped_and_counted() {
        let _counter = DROP_COUNTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (held, provider) =
            held_provider(4, opentelemetry_sdk::trace::BatchConfigBuilder::default());
        let before = EXPORT_METRICS.dropped.get();
        // The first four fill the queue (a full batch, which the exporter holds); the six after
        // them find no room.
        end_spans(&provider, 10);
        assert_eq!(
            EXPORT_METRICS.dropped.get() - before,
            6,
            "every drop counted"
        );
        held.let_go();
        provider.force_flush().unwrap();
        let got = held.got.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(got, 4, "the spans let through are exported");
        // Once the exporter is through with them, there is room again.
        end_spans(&provider, 1);
        provider.force_flush().unwrap();
        assert_eq!(held.got.load(std::sync::atomic::Ordering::SeqCst), 5);
        assert_eq!(EXPORT_METRICS.dropped.get() - before, 6);
        provider.shutdown().unwrap();
    }

    #[test]
    fn a_shutdown_sends_every_span_queued_not_just_one_batch() {
        let _counter = DROP_COUNTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (held, provider) = held_provider(
            8,
            opentelemetry_sdk::trace::BatchConfigBuilder::default().with_max_export_batch_size(2),
        );
        let before = EXPORT_METRICS.dropped.get();
        // The first batch of two is held; six wait in the queue, three batches' worth.
        end_spans(&provider, 8);
        held.let_go();
        provider.shutdown().unwrap();
        assert_eq!(held.got.load(std::sync::atomic::Ordering::SeqCst), 8);
        assert_eq!(EXPORT_METRICS.dropped.get(), before, "nothing dropped");
    }

    #[test]
    fn dropped_spans_are_said_when_the_exporter_is_through_at_most_once_a_minute() {
        let backlog = std::sync::Arc::new(Backlog {
            spans: std::sync::atomic::AtomicUsize::new(2),
            bound: 2,
            dropped: Loss::new(),
        });
        backlog.dropped.note(3);
        let exporter = Releasing {
            inner: Held::default(),
            backlog: backlog.clone(),
        };
        exporter.inner.let_go();
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(log_layer(lines.clone()));
        let batch = || {
            let spans = opentelemetry_sdk::trace::InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(spans.clone())
                .build();
            use opentelemetry::trace::{Span as _, Tracer as _};
            provider.tracer("test").start("sent").end();
            spans.get_finished_spans().unwrap()
        };
        tracing::subscriber::with_default(subscriber, || {
            futures::executor::block_on(exporter.export(batch())).unwrap();
            // More dropped within the minute: counted, not said again.
            backlog.dropped.note(5);
            futures::executor::block_on(exporter.export(batch())).unwrap();
        });
        assert_eq!(
            backlog.spans.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "room made for the spans exported"
        );
        let lines = lines.json();
        let fields = said_once_naming(&lines, "milestone_trace_spans_dropped_total");
        assert_eq!(fields["dropped"], 3);
        assert_eq!(fields["queue"], 2);
        assert_eq!(
            backlog
                .dropped
                .unsaid
                .load(std::sync::atomic::Ordering::SeqCst),
            5,
            "the drops not said are kept for the next warning"
        );
    }

    #[test]
    fn a_batch_the_collector_cannot_take_is_counted_and_said_at_most_once_a_minute() {
        let spans = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        {
            use opentelemetry::trace::{Span as _, Tracer as _};
            provider.tracer("test").start("lost").end();
        }
        let batch = spans.get_finished_spans().unwrap();
        assert_eq!(batch.len(), 1);
        // Nothing listens on the port once its listener is dropped.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let exporter = OtlpExporter::new(Some(&format!("http://{closed}"))).unwrap();
        let before = EXPORT_METRICS.failures.get();
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(log_layer(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                let sent = futures::executor::block_on(exporter.export(batch.clone()));
                assert!(sent.is_err(), "nothing listens on {closed}");
            }
        });
        assert_eq!(
            EXPORT_METRICS.failures.get() - before,
            3,
            "every failure counted"
        );
        // (The gRPC client's own lines are left out.)
        let lines: Vec<_> = lines
            .json()
            .into_iter()
            .filter(|line| line["target"] == module_path!().trim_end_matches("::tests"))
            .collect();
        let fields = said_once_naming(&lines, "milestone_trace_export_failures_total");
        assert_eq!(fields["spans"], 1);
        assert!(!fields["error"].as_str().unwrap().is_empty(), "{fields}");
    }

    #[test]
    fn a_log_line_inside_a_traced_request_names_its_trace_span_and_correlation_id() {
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(otel_layer(&provider))
            .with(CorrelationIds)
            .with(log_layer(lines.clone()));
        let traceparent = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", correlation_id = tracing::field::Empty);
            span.record(CORRELATION_FIELD, "corr-7");
            let _entered = span.enter();
            let inner = tracing::info_span!("append", stream = "order-1");
            inner.in_scope(|| tracing::warn!(attempt = 2, "slow append"));
            tracing::info!("outside the append");
            crate::trace::context_of(&inner).unwrap().traceparent
        });
        let parts: Vec<&str> = traceparent.split('-').collect();
        let lines = lines.json();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["trace_id"], parts[1], "{}", lines[0]);
        assert_eq!(lines[0]["span_id"], parts[2], "{}", lines[0]);
        assert_eq!(lines[0]["correlation_id"], "corr-7", "{}", lines[0]);
        assert_eq!(lines[0]["fields"]["message"], "slow append");
        assert_eq!(lines[1]["trace_id"], parts[1], "one trace for the request");
        assert_ne!(lines[1]["span_id"], parts[2], "its own span");
    }

    #[test]
    fn span_fields_recorded_after_the_span_began_show_in_the_log_lines_as_json_fields_shows_them() {
        // The same spans, fields and lines under the services' log layer and under stock JSON.
        let spans_and_lines = || {
            let outer = tracing::info_span!(
                "http.request",
                http.route = "/orders",
                r#type = ?"place",
                status = tracing::field::Empty,
                instance = tracing::field::Empty,
            );
            let _outer = outer.enter();
            outer.record("status", 201_u64);
            outer.record("instance", "order \"1\"\n\u{e9}");
            let bare = tracing::info_span!("command.execute", id = tracing::field::Empty);
            let _bare = bare.enter();
            tracing::warn!("before the id");
            bare.record("id", -7_i64);
            bare.record("id", 8_i64);
            let inner = tracing::info_span!("append", ratio = f64::NAN, ok = true);
            inner.record("ratio", 0.5);
            inner.in_scope(|| tracing::warn!(attempt = 2, "slow append"));
        };
        let lines_with = |stock: bool| {
            let lines = Lines::default();
            let layer = tracing_subscriber::fmt::layer()
                .event_format(Format::default().json().without_time())
                .with_writer(lines.clone());
            let subscriber = tracing_subscriber::registry();
            if stock {
                let layer = layer.fmt_fields(tracing_subscriber::fmt::format::JsonFields::new());
                tracing::subscriber::with_default(subscriber.with(layer), spans_and_lines);
            } else {
                let layer = layer.fmt_fields(SpanFieldsJson);
                tracing::subscriber::with_default(subscriber.with(layer), spans_and_lines);
            }
            lines.json()
        };
        let ours = lines_with(false);
        assert_eq!(ours, lines_with(true));
        assert_eq!(ours.len(), 2, "{ours:?}");
        let spans = &ours[1]["spans"];
        assert_eq!(spans[0]["instance"], "order \"1\"\n\u{e9}", "{spans}");
        assert_eq!(spans[0]["status"], 201, "{spans}");
        assert_eq!(spans[0]["type"], "\"place\"", "{spans}");
        assert_eq!(spans[1]["id"], 8, "the last value recorded: {spans}");
        assert_eq!(spans[2]["ratio"], 0.5, "{spans}");
        assert!(ours[0]["spans"][1].get("id").is_none(), "{ours:?}");
    }

    /// The services' subscriber with traces recorded in memory under `sampler`, and logs at
    /// `logs` into the returned lines. The provider records while it is kept.
    fn recording(
        sampler: opentelemetry_sdk::trace::Sampler,
        logs: &str,
    ) -> (
        SdkTracerProvider,
        opentelemetry_sdk::trace::InMemorySpanExporter,
        Lines,
        impl Subscriber + Send + Sync,
    ) {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_simple_exporter(exporter.clone())
            .build();
        let lines = Lines::default();
        let subscriber = services_subscriber(
            Some(trace_layer(&provider)),
            EnvFilter::new(logs),
            lines.clone(),
        );
        (provider, exporter, lines, subscriber)
    }

    /// The names of the spans `exporter` was sent, in the order they ended.
    fn sent(exporter: &opentelemetry_sdk::trace::InMemorySpanExporter) -> Vec<String> {
        exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .map(|s| s.name.to_string())
            .collect()
    }

    #[test]
    fn a_trace_records_the_services_spans_whatever_the_log_level() {
        // Logs at `error` only, as an operator quieting a service would set `RUST_LOG`.
        let (_provider, exporter, lines, subscriber) =
            recording(opentelemetry_sdk::trace::Sampler::AlwaysOn, "error");
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("request").in_scope(|| {
                tracing::info_span!("append").in_scope(|| tracing::info!("appended"));
                tracing::error!("refused");
            });
            tracing::debug_span!("detail").in_scope(|| {});
        });
        assert_eq!(
            sent(&exporter),
            ["append", "request"],
            "below info is not traced"
        );
        let lines = lines.json();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["fields"]["message"], "refused");
    }

    /// A request span decided on as it begins, with a span and a log line below it, under
    /// `sampler`; logs at `info`, so the span below is made for the logs whatever the trace.
    /// Returns the request's and the span's trace contexts, the spans sent and the log lines.
    fn sampled_request(
        sampler: opentelemetry_sdk::trace::Sampler,
    ) -> (String, String, Vec<String>, Vec<serde_json::Value>) {
        let (_provider, exporter, lines, subscriber) = recording(sampler, "info");
        let (request, below) = tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request");
            crate::trace::sample(&request);
            request.in_scope(|| {
                let below = tracing::info_span!("append");
                below.in_scope(|| tracing::info!("appended"));
                (
                    crate::trace::context_of(&request).unwrap().traceparent,
                    crate::trace::context_of(&below).unwrap().traceparent,
                )
            })
        });
        (request, below, sent(&exporter), lines.json())
    }

    #[test]
    fn below_a_request_whose_trace_is_dropped_no_span_is_made_and_its_context_is_handed_on() {
        use opentelemetry_sdk::trace::Sampler;
        let (request, below, spans, lines) = sampled_request(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(0.0),
        )));
        assert!(spans.is_empty(), "{spans:?}");
        assert!(request.ends_with("-00"), "not sampled: {request}");
        assert_eq!(below, request, "no span of its own: the request's context");
        let trace = request.split('-').nth(1).unwrap();
        assert_eq!(lines[0]["trace_id"], trace, "{}", lines[0]);

        let (request, below, spans, _) = sampled_request(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(1.0),
        )));
        assert_eq!(spans, ["append", "request"]);
        assert!(request.ends_with("-01"), "sampled: {request}");
        assert_ne!(below, request, "a span of its own");
        assert_eq!(
            below.split('-').nth(1),
            request.split('-').nth(1),
            "one trace"
        );
    }

    #[test]
    fn with_tracing_on_the_most_verbose_level_let_through_is_the_traces_or_the_logs() {
        use tracing_subscriber::filter::LevelFilter;
        let provider = SdkTracerProvider::builder().build();
        let hint = |logs: &str| {
            services_subscriber(
                Some(trace_layer(&provider)),
                EnvFilter::new(logs),
                Lines::default(),
            )
            .max_level_hint()
        };
        // Traces take `info`: debug records (the drivers' `log::debug!` on every query) stop
        // at the `log` crate's gate instead of being converted and filtered one by one.
        assert_eq!(hint("warn"), Some(LevelFilter::INFO));
        assert_eq!(hint("debug"), Some(LevelFilter::DEBUG));
    }

    #[test]
    fn a_log_filter_naming_a_span_lets_through_what_happens_inside_it_with_tracing_on() {
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let subscriber = services_subscriber(
            Some(trace_layer(&provider)),
            EnvFilter::new("warn,[request]=debug"),
            lines.clone(),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("request").in_scope(|| tracing::debug!("inside"));
            tracing::debug!("outside");
        });
        let lines = lines.json();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["fields"]["message"], "inside");
    }

    #[test]
    fn inside_a_request_dropped_ahead_a_span_no_log_line_would_show_is_not_made_at_all() {
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let subscriber = services_subscriber(
            Some(trace_layer(&provider)),
            EnvFilter::new("warn"),
            lines.clone(),
        );
        let request = crate::trace::TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            None,
        );
        tracing::subscriber::with_default(subscriber, || {
            let traced = tracing::info_span!("command.execute");
            assert!(!traced.is_disabled(), "outside, the traces take it");
            futures::executor::block_on(crate::trace::in_unsampled(request, async {
                let below = tracing::info_span!("command.execute");
                assert!(
                    below.is_disabled(),
                    "neither the traces nor the logs at warn take it: it must not be made"
                );
                let logged = tracing::warn_span!("retry", attempt = 2);
                assert!(!logged.is_disabled(), "the logs take a warn span");
                logged.in_scope(|| tracing::warn!("slow"));
            }));
        });
        let lines = lines.json();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["span"]["attempt"], 2, "{}", lines[0]);
        assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_log_line_inside_a_request_whose_trace_was_dropped_ahead_names_its_trace() {
        let lines = Lines::default();
        let subscriber = services_subscriber(None, EnvFilter::new("info"), lines.clone());
        let request = crate::trace::TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            None,
        );
        tracing::subscriber::with_default(subscriber, || {
            futures::executor::block_on(crate::trace::in_unsampled(request, async {
                tracing::info_span!("request", correlation_id = "corr-9")
                    .in_scope(|| tracing::warn!("slow"));
            }));
            tracing::warn!("after");
        });
        let lines = lines.json();
        assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(lines[0]["span_id"], "00f067aa0ba902b7");
        assert_eq!(lines[0]["correlation_id"], "corr-9");
        assert!(lines[1].get("trace_id").is_none(), "{}", lines[1]);
    }

    #[test]
    fn without_tracing_a_log_line_still_names_its_correlation_id_and_outside_any_span_nothing() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(CorrelationIds)
            .with(log_layer(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("batch", correlation_id = "corr-8")
                .in_scope(|| tracing::info!("applied"));
            tracing::info!("idle");
        });
        let lines = lines.json();
        assert_eq!(lines[0]["correlation_id"], "corr-8", "{}", lines[0]);
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert!(lines[1].get("correlation_id").is_none(), "{}", lines[1]);
        assert_eq!(lines[1]["fields"]["message"], "idle");
    }

    #[test]
    fn installing_the_service_logs_twice_is_harmless() {
        init_tracing();
        init_tracing();
        shutdown_tracing();
    }
}

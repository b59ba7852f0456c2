//! One trace from a REST command to the GraphQL answer that shows it: the command API's server
//! span, the event store's append, the projector's batch (by span link: one batch serves many
//! traces) and the query API's server span, with the spans recorded in memory as the OTLP
//! exporter would send them.
//!
//! A test binary of its own: it installs the process's global subscriber, with tracing on,
//! which the other query API tests must not share.

use event_store::{read_whole_stream, EventStore, StoreOptions};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

struct Stack {
    spans: InMemorySpanExporter,
    commands: String,
    queries: String,
    store: Arc<dyn EventStore>,
    projector: projector::Projector,
    http: reqwest::Client,
}

async fn start() -> Stack {
    let spans = service_kit::telemetry::init_in_memory_tracing();
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 4 })
        .await
        .unwrap();
    let projector = projector::Projector::connect(projector::Config::local(&url))
        .await
        .unwrap();
    let commands = command_api::startup::Application::with_store(
        command_api::config::Config {
            pool_size: 4,
            workers: 1,
            ..command_api::config::Config::local(&url)
        },
        store.clone(),
    )
    .unwrap();
    let commands_at = format!("http://127.0.0.1:{}", commands.port());
    tokio::spawn(commands.run_until_stopped());
    let mut config = query_api::config::Config::local(&url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.workers = 1;
    config.pool_size = 4;
    let queries = query_api::startup::Application::build(config).unwrap();
    let queries_at = format!("http://127.0.0.1:{}", queries.port());
    tokio::spawn(queries.run_until_stopped());
    Stack {
        spans,
        commands: commands_at,
        queries: queries_at,
        store,
        projector,
        http: reqwest::Client::new(),
    }
}

fn order_body(id: Uuid) -> Value {
    json!({
        "order_id": id,
        "customer_id": "customer-traced",
        "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1500}],
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Paris", "postal_code": "75001", "country": "FR"}
    })
}

/// Places a new order, its request carrying no trace context.
async fn place_new_order(stack: &Stack) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/orders", stack.commands))
        .json(&order_body(Uuid::new_v4()))
        .send()
        .await
        .unwrap()
}

/// The trace id and span id of a `traceparent` header value.
fn parse_traceparent(value: &str) -> (TraceId, SpanId) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (
        TraceId::from_hex(parts[1]).unwrap(),
        SpanId::from_hex(parts[2]).unwrap(),
    )
}

fn echoed(response: &reqwest::Response) -> (TraceId, SpanId) {
    let header = response
        .headers()
        .get("traceparent")
        .expect("the response names its trace")
        .to_str()
        .unwrap();
    parse_traceparent(header)
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// Waits (boundedly) until the recorded spans satisfy `found`, which returns what it looks for.
async fn wait_for_spans<T>(
    spans: &InMemorySpanExporter,
    what: &str,
    found: impl Fn(&[SpanData]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let finished = spans.get_finished_spans().unwrap();
        if let Some(t) = found(&finished) {
            return t;
        }
        assert!(Instant::now() < deadline, "no {what} among {finished:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn server_span<'a>(spans: &'a [SpanData], trace: TraceId, route: &str) -> Option<&'a SpanData> {
    spans.iter().find(|s| {
        s.span_context.trace_id() == trace && attribute(s, "http.route").as_deref() == Some(route)
    })
}

#[tokio::test]
async fn one_trace_links_the_rest_call_the_append_the_projector_batch_and_the_graphql_answer() {
    let stack = start().await;
    let trace = TraceId::from_hex(&Uuid::new_v4().simple().to_string()).unwrap();
    let caller = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let traceparent = format!("00-{trace}-{caller}-01");
    let id = Uuid::new_v4();

    let placed = stack
        .http
        .post(format!("{}/orders", stack.commands))
        .header("traceparent", &traceparent)
        .json(&order_body(id))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let (echoed_trace, server) = echoed(&placed);
    assert_eq!(
        echoed_trace, trace,
        "the command continues the caller's trace"
    );
    assert_ne!(server, caller, "the echoed span is the server's own");
    let token = placed.json::<Value>().await.unwrap()["consistency_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The event carries the trace, for whoever reads the log.
    let events = read_whole_stream(stack.store.as_ref(), &format!("order-{id}"))
        .await
        .unwrap();
    let stored = events[0]
        .metadata
        .traceparent
        .as_deref()
        .map(parse_traceparent);
    assert_eq!(
        stored,
        Some((trace, server)),
        "the events carry the request span's context"
    );

    // The projector applies it, in a batch of its own trace linked to the command's.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack
        .projector
        .checkpoint()
        .await
        .unwrap()
        .is_none_or(|c| c < token.parse().unwrap())
    {
        assert!(Instant::now() < deadline, "the projection did not catch up");
        stack.projector.run_once().await.unwrap();
    }

    // The GraphQL read, in the same trace (the client sends its traceparent again).
    let answer = stack
        .http
        .post(format!("{}/graphql", stack.queries))
        .header("traceparent", &traceparent)
        .header("X-Consistency-Token", &token)
        .json(&json!({"query": format!("{{ order(id: \"{id}\") {{ id status }} }}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(echoed(&answer).0, trace, "the answer names the same trace");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["data"]["order"]["id"], id.to_string(), "{body}");

    let rest = wait_for_spans(&stack.spans, "REST span", |spans| {
        server_span(spans, trace, "/orders").cloned()
    })
    .await;
    assert_eq!(
        rest.parent_span_id, caller,
        "the REST span's parent is the caller's"
    );
    assert_eq!(rest.span_context.span_id(), server);
    assert_eq!(
        attribute(&rest, "http.response.status_code").as_deref(),
        Some("201")
    );
    // The command runs in the request's span: it names the command, and the append is its child.
    assert_eq!(
        attribute(&rest, "command_id"),
        events[0].metadata.causation_id,
        "the REST span names the command whose id its events carry as their cause"
    );
    let append = wait_for_spans(&stack.spans, "append span", |spans| {
        spans
            .iter()
            .find(|s| s.name == "event_store.append" && s.span_context.trace_id() == trace)
            .cloned()
    })
    .await;
    assert_eq!(
        append.parent_span_id, server,
        "the append is the request's child"
    );
    let batch = wait_for_spans(
        &stack.spans,
        "projector batch linked to the trace",
        |spans| {
            spans
                .iter()
                .find(|s| {
                    s.name == "projector.batch"
                        && s.links.iter().any(|l| l.span_context.trace_id() == trace)
                })
                .cloned()
        },
    )
    .await;
    assert_ne!(
        batch.span_context.trace_id(),
        trace,
        "a batch is a trace of its own, linked to the traces it serves"
    );
    wait_for_spans(&stack.spans, "GraphQL span", |spans| {
        server_span(spans, trace, "/graphql").map(|_| ())
    })
    .await;
    wait_for_spans(&stack.spans, "read-model span", |spans| {
        spans
            .iter()
            .find(|s| s.name == "read_model.by_id" && s.span_context.trace_id() == trace)
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn a_request_without_traceparent_gets_a_new_trace_echoed_back() {
    let stack = start().await;
    let first = place_new_order(&stack).await;
    assert_eq!(first.status(), 201);
    let (trace, _) = echoed(&first);
    assert_ne!(trace, TraceId::INVALID);
    let second = stack
        .http
        .post(format!("{}/graphql", stack.queries))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    let (other, _) = echoed(&second);
    assert_ne!(other, trace, "each request without a trace starts its own");

    let rest = wait_for_spans(&stack.spans, "REST span", |spans| {
        server_span(spans, trace, "/orders").cloned()
    })
    .await;
    assert_eq!(
        rest.parent_span_id,
        SpanId::INVALID,
        "a new trace has no parent"
    );
}

#[tokio::test]
async fn a_request_its_caller_did_not_sample_stays_in_its_trace_unsampled_and_records_no_span() {
    let stack = start().await;
    let caller_trace = TraceId::from_hex("5e1d0c4b3a29180716253443526170f1").unwrap();
    let order = Uuid::new_v4();
    let correlation = format!("unsampled-{order}");
    let response = stack
        .http
        .post(format!("{}/orders", stack.commands))
        .header(
            "traceparent",
            format!("00-{caller_trace:032x}-00f067aa0ba902b7-00"),
        )
        .header("X-Correlation-Id", &correlation)
        .header("tracestate", "vendor=kept")
        .json(&order_body(order))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let header = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let (trace, own) = parse_traceparent(&header);
    assert_eq!(trace, caller_trace, "the caller's trace goes on");
    assert_ne!(own, SpanId::from_hex("00f067aa0ba902b7").unwrap());
    assert!(header.ends_with("-00"), "still not sampled: {header}");
    assert_eq!(response.headers()["tracestate"], "vendor=kept");

    // Its events carry the unsampled context, for the projector and the relay to leave alone.
    let events = read_whole_stream(stack.store.as_ref(), &format!("order-{order}"))
        .await
        .unwrap();
    assert_eq!(
        events[0].metadata.traceparent.as_deref(),
        Some(header.as_str())
    );

    // A sampled request made after it is recorded: the exporter has been given what ended.
    let later = place_new_order(&stack).await;
    let (sampled, _) = echoed(&later);
    wait_for_spans(&stack.spans, "the sampled request's span", |spans| {
        server_span(spans, sampled, "/orders").map(|_| ())
    })
    .await;
    let recorded = stack.spans.get_finished_spans().unwrap();
    assert!(
        !recorded.iter().any(|s| {
            s.span_context.trace_id() == caller_trace
                || attribute(s, "correlation_id").as_deref() == Some(correlation.as_str())
        }),
        "no span of the unsampled request, in its trace or any other: {recorded:#?}"
    );
}

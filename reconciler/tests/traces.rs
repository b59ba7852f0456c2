//! The reconciler's spans, recorded in memory as the OTLP exporter would send them: a run, the
//! chase of each overdue instance, and each command it sends (`command.execute`, with the
//! append below it), whose trace the recorded events carry.
//!
//! A test binary of its own: it installs the process's global subscriber, with tracing on,
//! which the other reconciler tests must not share.

use event_store::{read_whole_stream, StoreOptions};
use projector::returns::ReturnDeadlines;
use projector::{Deadlines, Projector, ReturnProjection, Runtime};
use reconciler::{Config, Reconciler};
use test_support::log::{place, Log};
use uuid::Uuid;

#[tokio::test]
async fn each_reminder_is_a_command_span_below_its_chase_and_its_event_carries_that_trace() {
    let spans = service_kit::telemetry::init_in_memory_tracing();
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 2 })
        .await
        .unwrap();
    let id = Uuid::new_v4();
    Log::new(store.as_ref())
        .order(id, vec![place(id, "cust-silent", &[("A", 1, 1000)])])
        .await;
    // The order is due at once.
    let mut projector_config = projector::Config::local(&url);
    projector_config.deadlines = Deadlines {
        placed: chrono::Duration::zero(),
        ..Deadlines::default()
    };
    let orders = Projector::connect(projector_config.clone()).await.unwrap();
    // The reconciler reads the returns' read model too.
    let returns = Runtime::start(
        projector_config,
        ReturnProjection::new(ReturnDeadlines::from_lookup(|_| None).unwrap()),
    )
    .await
    .unwrap();
    for _ in 0..5 {
        orders.run_once().await.unwrap();
        returns.run_once().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let report = Reconciler::connect(Config::local(&url))
        .await
        .unwrap()
        .run_once()
        .await
        .unwrap();
    assert!(report.reminders > 0, "{report:?}");

    let stream = format!("order-{id}");
    let history = read_whole_stream(store.as_ref(), &stream).await.unwrap();
    // The reminders (one per pending action), each a command of its own.
    let reminded: Vec<Option<String>> = history[1..]
        .iter()
        .map(|e| e.metadata.traceparent.clone())
        .collect();
    assert_eq!(reminded.len(), report.reminders);
    let recorded = spans.get_finished_spans().unwrap();
    let named = |name: &'static str| recorded.iter().filter(move |s| s.name == name);
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let commands: Vec<_> = named("command.execute")
        .filter(|s| attribute(s, "stream").as_deref() == Some(stream.as_str()))
        .collect();
    assert_eq!(commands.len(), report.reminders, "{recorded:#?}");
    for command in &commands {
        assert!(
            attribute(command, "command_id").is_some_and(|c| Uuid::parse_str(&c).is_ok()),
            "the command span names its command: {command:#?}"
        );
        let chase = named("reconciler.chase")
            .find(|s| s.span_context.span_id() == command.parent_span_id)
            .unwrap_or_else(|| panic!("the command's parent is not a chase: {recorded:#?}"));
        assert_eq!(
            attribute(chase, "instance").as_deref(),
            Some(id.to_string().as_str())
        );
        assert!(
            named("event_store.append").any(|s| s.parent_span_id == command.span_context.span_id()),
            "the append is the command's child: {recorded:#?}"
        );
        let context = &command.span_context;
        let own = format!("00-{}-{}-01", context.trace_id(), context.span_id());
        assert!(
            reminded.contains(&Some(own.clone())),
            "a reminder carries the context of the command span it was decided in, {own}: \
             {reminded:?}"
        );
    }
}

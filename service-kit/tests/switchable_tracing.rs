//! The benchmarks' switchable tracing sends the spans made while it is on, and none made while
//! it is off, even from a callsite first met while it was off and with the logs quietened. A
//! test binary of its own: it installs the process's global subscriber.
#![cfg(feature = "testing")]

fn handle(n: u32) {
    let _ = tracing::info_span!("request", n).entered();
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_sent_while_tracing_is_on_and_not_while_it_is_off() {
    let sink =
        test_support::otlp_sink::start("127.0.0.1:0".parse().unwrap(), std::future::pending())
            .unwrap();
    let switch = service_kit::telemetry::init_switchable_tracing(Some(&sink.endpoint()));
    handle(1);
    switch.set(true);
    handle(2);
    handle(3);
    switch.set(false);
    handle(4);
    tokio::task::spawn_blocking(service_kit::telemetry::shutdown_tracing)
        .await
        .unwrap();
    assert_eq!(sink.received.spans(), 2, "the two requests made while on");
}

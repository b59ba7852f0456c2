//! What tracing adds to a request, in one thread and without the network or the database: the
//! services' request middleware (`http_trace::trace_request`: the server span, the sampling
//! decision, the `traceparent` echoed) around a handler shaped like a command's (the command's
//! id recorded on the request's span, an instrumented append, a few awaits), with
//! tracing off, with every trace dropped by the sampler, with 10 % and with all sampled. Spans
//! are batched by the services' batch processor and then dropped instead of sent: this is the
//! cost up to the wire (the OTLP export is measured end to end by `scripts/bench-commands.sh`).
//!
//! Each variant runs in a process of its own (a subscriber is installed once per process, and
//! the callsites' interest is shared by every subscriber in it), the variants taking turns in
//! rounds so that a noisy neighbour weighs on each alike. Prints each variant's time per
//! request round by round, then its median and the median of what it adds to the untraced
//! one in the same round.
//!
//! `cargo bench -p service-kit --features http,testing --bench tracing`. `BENCH_ROUNDS`
//! (default 7), `BENCH_REQUESTS` (default 100000 per variant and round).

use actix_web::middleware::from_fn;
use actix_web::{test, web, App, HttpResponse};
use std::process::Command;
use std::time::Instant;

/// The variants: a label and the sampling ratio (none: tracing off).
const VARIANTS: [(&str, Option<f64>); 4] = [
    ("off", None),
    ("all dropped", Some(0.0)),
    ("10 % sampled", Some(0.1)),
    ("all sampled", Some(1.0)),
];

/// The environment variable naming the variant a child process measures.
const VARIANT: &str = "BENCH_TRACING_VARIANT";

/// Awaits that give the executor back its turn, as a request's reads and writes do.
async fn awaits(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

#[tracing::instrument(name = "event_store.append", skip_all, fields(stream = %stream, events = 1))]
async fn append(stream: &str) {
    awaits(3).await;
}

async fn place(path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    let stream = format!("order-{id}");
    let span = tracing::Span::current();
    span.record(service_kit::http_trace::INSTANCE_FIELD, id.as_str());
    span.record(service_kit::http_trace::COMMAND_FIELD, id.as_str());
    awaits(2).await;
    // The events carry the request's trace, as the command API's do.
    std::hint::black_box(service_kit::trace::context_of(&span));
    append(&stream).await;
    awaits(1).await;
    HttpResponse::Created().finish()
}

/// In a child process: installs the variant's subscriber, serves `requests` requests after a
/// warm-up, and prints the mean nanoseconds per request.
fn measure(ratio: Option<f64>, requests: usize) {
    service_kit::telemetry::init_sampled_tracing(ratio);
    actix_web::rt::System::new().block_on(async move {
        let app = test::init_service(
            App::new()
                .wrap(from_fn(service_kit::http_trace::trace_request))
                .route("/orders/{id}", web::post().to(place)),
        )
        .await;
        let run = async |n: usize| {
            let started = Instant::now();
            for i in 0..n {
                let request = test::TestRequest::post()
                    .uri(&format!("/orders/{i}"))
                    .to_request();
                let response = test::call_service(&app, request).await;
                assert_eq!(response.status(), 201);
            }
            started.elapsed()
        };
        run(requests / 10).await;
        let elapsed = run(requests).await;
        println!("{}", elapsed.as_nanos() / requests as u128);
    });
    service_kit::telemetry::shutdown_tracing();
}

fn main() {
    let requests = test_support::bench_env("BENCH_REQUESTS", 100_000);
    if let Ok(variant) = std::env::var(VARIANT) {
        let index: usize = variant.parse().expect("a variant's index");
        measure(VARIANTS[index].1, requests);
        return;
    }
    let rounds = test_support::bench_env("BENCH_ROUNDS", 7);
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut times = vec![Vec::new(); VARIANTS.len()];
    println!("{requests} requests per variant and round, {rounds} rounds (ns per request)");
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..VARIANTS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let output = Command::new(&exe)
                .env(VARIANT, index.to_string())
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or("warn".into()),
                )
                .output()
                .expect("the benchmark runs itself");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let Some(ns) = stdout
                .lines()
                .last()
                .and_then(|l| l.trim().parse::<f64>().ok())
            else {
                eprintln!(
                    "variant {} failed: {}{}",
                    VARIANTS[index].0,
                    stdout,
                    String::from_utf8_lossy(&output.stderr)
                );
                std::process::exit(1);
            };
            times[index].push(ns);
        }
        let line: Vec<String> = VARIANTS
            .iter()
            .zip(&times)
            .map(|((label, _), t)| format!("{label} {:.0}", t[round]))
            .collect();
        println!("round {}: {}", round + 1, line.join(", "));
    }
    // What a variant adds is the figure to compare with a real request's cost; the untraced
    // time here is the test harness's own, far below a request that reaches a database.
    println!("medians:");
    for ((label, _), t) in VARIANTS.iter().zip(&times) {
        let added: Vec<f64> = t.iter().zip(&times[0]).map(|(a, b)| a - b).collect();
        println!(
            "  {label:<13} {:>6.0} ns a request, adds {:>5.0} ns",
            test_support::median(t.clone()),
            test_support::median(added)
        );
    }
}

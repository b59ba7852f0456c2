//! Many websocket subscribers while orders change: `BENCH_SUBSCRIBERS` (default 10000)
//! connections, each subscribed with `orderUpdated` to an order of its own, while commands
//! change those orders at `BENCH_RATE` updates/s (default 1000) for `BENCH_SECONDS` (default
//! 20). Prints the append -> client latency (from an event's `recordedAt` to the message that
//! carries it reaching its subscriber) p50/p99, and the server's memory per idle connection.
//!
//! `cargo bench -p query-api --bench subscribers` (needs PostgreSQL; `MILESTONE_TEST_DATABASE_URL`
//! names the server). The query API runs in a process of its own (this binary, started again
//! as the server) so each side stays under the file-descriptor limit; the projector runs here,
//! on its live loop. Everything listens on 127.0.0.1; the server is killed when the bench ends.

use domain::OrderCommand;
use event_store::StoreOptions;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::bench_env;
use test_support::log::{authorize, new_order, reserve, ship, Log};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Set in the server process.
const SERVE: &str = "MILESTONE_BENCH_SERVE";

const SUBSCRIPTION: &str = "subscription($id: ID!) {
    orderUpdated(id: $id) { token order { status } events { revision recordedAt } }
}";

fn main() {
    if std::env::var_os(SERVE).is_some() {
        actix_web::rt::System::new().block_on(serve());
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

/// The query API, configured by the environment.
async fn serve() {
    let config = query_api::config::Config::from_env().unwrap();
    let app = query_api::startup::Application::build(config).unwrap();
    app.run_until_stopped().await.unwrap();
}

/// The server process; killed when dropped, even when the bench fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The commands that walk an order after it is placed, one update each.
fn step(n: usize) -> Option<OrderCommand> {
    match n {
        0 => Some(authorize("pay-1", 100)),
        1 => Some(reserve("res-1")),
        2 => Some(OrderCommand::StartFulfillment),
        3 => Some(ship("UPS", "1Z999")),
        4 => Some(OrderCommand::ConfirmDelivery),
        _ => None,
    }
}

async fn run() {
    let subscribers: usize = bench_env("BENCH_SUBSCRIBERS", 10_000);
    let rate: u64 = bench_env("BENCH_RATE", 1_000);
    let seconds: f64 = bench_env("BENCH_SECONDS", 20.0);
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 16 })
        .await
        .unwrap();
    let projector = Arc::new(
        projector::Projector::connect(projector::Config::local(&url))
            .await
            .unwrap(),
    );
    let stop_projector = Arc::new(tokio::sync::Notify::new());
    let projecting = {
        let (projector, stop) = (Arc::clone(&projector), Arc::clone(&stop_projector));
        tokio::spawn(async move { projector.run(stop.notified()).await })
    };

    // One order per subscriber, placed (and projected) before anyone subscribes.
    let ids: Vec<Uuid> = (0..subscribers).map(|_| Uuid::new_v4()).collect();
    let placing = Instant::now();
    futures::stream::iter(ids.clone())
        .for_each_concurrent(32, |id| {
            let store = Arc::clone(&store);
            async move {
                let order = new_order(id, "bench", &[("SKU-1", 1, 100)]);
                Log::new(store.as_ref())
                    .order(id, vec![OrderCommand::PlaceOrder(order)])
                    .await;
            }
        })
        .await;
    eprintln!("placed {subscribers} orders in {:?}", placing.elapsed());

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let server = Server(
        Command::new(std::env::current_exe().unwrap())
            .env(SERVE, "1")
            .env("MILESTONE_READ_MODEL_URL", &url)
            .env("MILESTONE_EVENT_STORE_URL", &url)
            .env("MILESTONE_QUERY_API_ADDR", &address)
            .env("MILESTONE_HTTP_WORKERS", "2")
            .env("MILESTONE_DB_POOL_SIZE", "16")
            .env(
                "MILESTONE_WS_MAX_CONNECTIONS",
                (subscribers + 10).to_string(),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while !http
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = server.rss_kib();

    // Every subscriber connects and subscribes; then they wait, idle.
    let measuring = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let received = Arc::new(AtomicU64::new(0));
    let subscribed = Arc::new(tokio::sync::Semaphore::new(0));
    let connecting = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let (gate, subscribed) = (Arc::clone(&gate), Arc::clone(&subscribed));
        let (measuring, latencies, received) = (
            Arc::clone(&measuring),
            Arc::clone(&latencies),
            Arc::clone(&received),
        );
        let url = format!("ws://{address}/graphql");
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let mut request = url.into_client_request().unwrap();
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static("graphql-transport-ws"),
            );
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            let send = |v: Value| Message::text(v.to_string());
            socket
                .send(send(json!({"type": "connection_init", "payload": {}})))
                .await
                .unwrap();
            socket.next().await.unwrap().unwrap();
            socket
                .send(send(json!({"id": "1", "type": "subscribe",
                    "payload": {"query": SUBSCRIPTION, "variables": {"id": id}}})))
                .await
                .unwrap();
            drop(permit);
            subscribed.add_permits(1);
            while let Some(Ok(frame)) = socket.next().await {
                let Message::Text(text) = frame else { continue };
                let arrived = chrono::Utc::now();
                let message: Value = serde_json::from_str(&text).unwrap();
                let events = &message["payload"]["data"]["orderUpdated"]["events"];
                let Some(last) = events.as_array().and_then(|e| e.last()) else {
                    continue;
                };
                received.fetch_add(1, Ordering::Relaxed);
                if measuring.load(Ordering::Relaxed) {
                    let at: chrono::DateTime<chrono::Utc> =
                        last["recordedAt"].as_str().unwrap().parse().unwrap();
                    let ms = (arrived - at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                    latencies.lock().unwrap().push(ms);
                }
            }
        }));
    }
    let _ = subscribed
        .acquire_many(u32::try_from(subscribers).unwrap())
        .await
        .unwrap();
    eprintln!("{subscribers} subscribed in {:?}", connecting.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.rss_kib();

    // Updates at the rate, round-robin over the orders, each walked a step at a time.
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let total = (rate as f64 * seconds) as usize;
    let tick = Duration::from_millis(10);
    let per_tick = ((rate as f64) * tick.as_secs_f64()).max(1.0) as usize;
    let mut interval = tokio::time::interval(tick);
    let inflight = Arc::new(tokio::sync::Semaphore::new(64));
    let (mut next, mut sent, mut late) = (0, 0, 0);
    'sending: while sent + late < total {
        interval.tick().await;
        for _ in 0..per_tick {
            let (id, n) = (ids[next % ids.len()], next / ids.len());
            next += 1;
            // Every order delivered: nothing left to change.
            let Some(command) = step(n) else {
                break 'sending;
            };
            let Ok(permit) = Arc::clone(&inflight).try_acquire_owned() else {
                late += 1;
                continue;
            };
            sent += 1;
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                Log::new(store.as_ref()).order(id, vec![command]).await;
                drop(permit);
            });
        }
    }
    let _ = inflight.acquire_many(64).await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(false, Ordering::Relaxed);

    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))];
    println!(
        "subscribers: {subscribers}, updates sent: {sent} in {elapsed:.1}s ({:.0}/s, {late} skipped: too many in flight)",
        sent as f64 / elapsed
    );
    println!(
        "messages received: {} (with {} latencies measured)",
        received.load(Ordering::Relaxed),
        all.len()
    );
    if !all.is_empty() {
        println!(
            "append -> client latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(0.50),
            pct(0.99),
            all[all.len() - 1]
        );
    }
    println!(
        "server memory: {} MiB before connections, {} MiB with {subscribers} idle subscribers: {:.1} KiB per idle connection",
        before / 1024,
        idle / 1024,
        (idle.saturating_sub(before)) as f64 / subscribers as f64
    );
    for t in tasks {
        t.abort();
    }
    drop(server);
    stop_projector.notify_one();
    let _ = projecting.await;
    test_support::drop_database(&url).await;
}

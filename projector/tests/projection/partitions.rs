//! A projection run as partitions: each with its own checkpoint, lease and fence; several
//! projector processes sharing them while some are killed or paused.

use crate::helpers::*;
use event_store::{EventStore, Position};
use projector::lease::Lease;
use projector::{Config, Partition, Projector, ProjectorError, PROJECTION};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn partitioned(url: &str, partitions: u32) -> Config {
    let mut config = config(url);
    config.partitions = partitions;
    config.lease_ttl = Duration::from_millis(1000);
    config
}

/// Every event of the log, in order.
async fn whole_log(store: &dyn EventStore) -> Vec<event_store::RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let page = store
            .read_all(
                all.last().map(|e: &event_store::RecordedEvent| e.position),
                "order-",
                1000,
            )
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The first `n` events of the log, once they are all visible (the log's visibility can trail
/// an append by a moment on PostgreSQL, longer while any transaction on the server is open).
async fn log_of(store: &dyn EventStore, n: usize) -> Vec<event_store::RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = whole_log(store).await;
        if log.len() >= n {
            return log;
        }
        assert!(Instant::now() < deadline, "{n} events never became visible");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The order read models as text, in a fixed order: what a clean replay must reproduce.
async fn read_models(projector: &Projector) -> Vec<String> {
    let client = projector.pool().get().await.unwrap();
    let mut out = Vec::new();
    for sql in [
        "select s::text from order_status s order by order_id",
        "select t::text from order_timeline t order by order_id, revision",
        "select c::text from order_status_counts c order by status",
    ] {
        for row in client.query(sql, &[]).await.unwrap() {
            out.push(row.get(0));
        }
    }
    out
}

/// The same log replayed by one instance into a read-model database of its own.
async fn clean_replay(url: &str) -> (Projector, String) {
    let replica = test_support::fresh_database().await;
    let mut config = config(url);
    config.read_model_url = replica.as_str().into();
    let projector = Projector::connect(config).await.unwrap();
    projector.run_once().await.unwrap();
    (projector, replica)
}

async fn write_orders(store: &dyn EventStore, n: usize) -> usize {
    let mut written = 0;
    for _ in 0..n {
        let id = Uuid::new_v4();
        written += Log::new(store)
            .at(t0())
            .order(id, vec![place(id), authorize("p", TOTAL), reserve("r")])
            .await
            .events();
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_run_as_four_partitions_gives_the_read_models_of_a_single_instance() {
    let env = env().await;
    let written = write_orders(env.store.as_ref(), 40).await;
    let last = log_of(env.store.as_ref(), written)
        .await
        .last()
        .unwrap()
        .position;
    let partitioned = Projector::connect(partitioned(&env.url, 4)).await.unwrap();
    assert_eq!(partitioned.run_once().await.unwrap() as usize, 4 * written);

    let applied: Vec<i64> = {
        let client = partitioned.pool().get().await.unwrap();
        client
            .query(
                "select events_applied from projection_checkpoints
                  where projection like 'order_status#%/4' order by projection",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(applied.len(), 4, "one checkpoint per partition");
    assert!(applied.iter().all(|&n| n > 0), "{applied:?}");
    assert_eq!(applied.iter().sum::<i64>() as usize, written);
    assert_eq!(partitioned.checkpoint().await.unwrap(), Some(last));

    let (replay, replica) = clean_replay(&env.url).await;
    assert_eq!(read_models(&partitioned).await, read_models(&replay).await);
    drop(replay);
    test_support::drop_database(&replica).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_former_owner_of_a_partition_cannot_commit_after_a_takeover() {
    let env = env().await;
    let written = write_orders(env.store.as_ref(), 8).await;
    let events = log_of(env.store.as_ref(), written).await;
    let projector = Projector::connect(partitioned(&env.url, 4)).await.unwrap();
    let part = projector.partition(1);
    let key = Partition { index: 1, count: 4 }.key(PROJECTION);
    let pg: tokio_postgres::Config = env.url.parse().unwrap();
    let ttl = Duration::from_millis(1000);
    let paused = Lease::try_acquire(&pg, &key, ttl).await.unwrap().unwrap();
    // The owner stops renewing (paused); its lease expires and another instance takes over.
    {
        let client = projector.pool().get().await.unwrap();
        client
            .execute(
                "update projection_leases set expires_at = now() where projection = $1",
                &[&key],
            )
            .await
            .unwrap();
    }
    let successor = Lease::try_acquire(&pg, &key, ttl).await.unwrap().unwrap();
    assert!(successor.token() > paused.token());

    let refused = part.apply_batch_holding(&paused, None, &events).await;
    assert!(
        matches!(refused, Err(ProjectorError::LeaseLost)),
        "{refused:?}"
    );
    assert_eq!(rows_in(&projector, "order_timeline").await, 0);
    assert_eq!(part.checkpoint().await.unwrap(), None);

    part.apply_batch_holding(&successor, None, &events)
        .await
        .unwrap();
    assert_eq!(
        part.checkpoint().await.unwrap(),
        Some(events.last().unwrap().position)
    );
    // The other partitions have not moved.
    assert_eq!(projector.partition(0).checkpoint().await.unwrap(), None);
}

/// A `projector run` process; killed (and resumed first, if paused) when dropped.
struct ProjectorProcess {
    child: Child,
}

impl ProjectorProcess {
    fn start(url: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_projector"))
            .arg("run")
            .env("MILESTONE_EVENT_STORE_URL", url)
            .env("MILESTONE_READ_MODEL_URL", url)
            .env("MILESTONE_PROJECTOR_PARTITIONS", "4")
            .env("MILESTONE_PROJECTOR_LEASE_TTL_MS", "1000")
            .env("MILESTONE_PROJECTOR_STANDBY_POLL_MS", "100")
            .env("MILESTONE_PROJECTOR_BATCH_SIZE", "50")
            .env("MILESTONE_PROJECTOR_CATCH_UP_BATCH_SIZE", "100")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the projector binary starts");
        Self { child }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for ProjectorProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_projector_processes_on_four_partitions_killed_and_paused_while_orders_flow_end_with_the_read_models_of_a_clean_replay(
) {
    let env = env().await;
    // Migrations and checkpoint rows before the processes start.
    let observer = Projector::connect(partitioned(&env.url, 4)).await.unwrap();
    let mut processes: Vec<ProjectorProcess> =
        (0..3).map(|_| ProjectorProcess::start(&env.url)).collect();

    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let store = env.store.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut written = 0;
            while writing.load(Ordering::Relaxed) {
                written += write_orders(store.as_ref(), 1).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            written
        })
    };
    // Every 1.5 s one process is killed and replaced, or paused past its leases' expiry
    // and then resumed (its batches under way must be refused by the fence).
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let victim = round % processes.len();
        if round % 2 == 0 {
            processes[victim].signal("-KILL");
            processes[victim] = ProjectorProcess::start(&env.url);
        } else {
            processes[victim].signal("-STOP");
            tokio::time::sleep(Duration::from_millis(1800)).await;
            processes[victim].signal("-CONT");
        }
        round += 1;
    }
    writing.store(false, Ordering::Relaxed);
    let written = writer.await.unwrap();

    let log = log_of(env.store.as_ref(), written).await;
    assert_eq!(log.len(), written);
    let last: Position = log.last().unwrap().position;
    let deadline = Instant::now() + Duration::from_secs(20);
    while observer.checkpoint().await.unwrap() < Some(last) {
        assert!(Instant::now() < deadline, "the partitions did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(processes);

    // Each event counted once: a batch committed by a fenced owner would count its events a
    // second time (or move a partition's checkpoint back).
    let applied = scalar(
        &observer,
        "select sum(events_applied)::bigint from projection_checkpoints where projection like 'order_status#%/4'",
    )
    .await;
    assert_eq!(applied as usize, written);
    let takeovers = scalar(
        &observer,
        "select max(fencing_token) - 1 from projection_leases where projection like 'order_status#%/4'",
    )
    .await;
    assert!(takeovers > 0, "no partition changed hands");
    let (replay, replica) = clean_replay(&env.url).await;
    assert_eq!(read_models(&observer).await, read_models(&replay).await);
    drop(replay);
    test_support::drop_database(&replica).await;
}

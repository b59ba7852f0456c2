//! Blue/green rebuilds: a shadow built while the live projection serves and its projector keeps
//! following the log, switched in atomically; rollback to the version it replaced.

use crate::helpers::*;
use event_store::{EventStore, Position};
use projector::{Config, Deadlines, Projector, ProjectorError};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn live_config(url: &str, partitions: u32) -> Config {
    let mut config = config(url);
    config.partitions = partitions;
    config.lease_ttl = Duration::from_millis(1000);
    config
}

/// Another version of the order projection: its orders wait for payment a day longer.
fn next_version(url: &str, partitions: u32) -> Config {
    let mut config = live_config(url, partitions);
    config.deadlines = Deadlines {
        placed: Deadlines::default().placed + chrono::Duration::days(1),
        ..Deadlines::default()
    };
    config
}

/// Places and pays `n` orders one after the other: the events written, and the log position
/// of the last (past every earlier one: positions follow the order transactions began in).
async fn write_orders(store: &dyn EventStore, n: usize) -> (usize, Option<Position>) {
    let (mut written, mut last) = (0, None);
    for _ in 0..n {
        let id = Uuid::new_v4();
        let recorded = Log::new(store)
            .order(id, vec![place(id), authorize("p", TOTAL)])
            .await;
        written += recorded.events();
        last = recorded.position();
    }
    (written, last)
}

/// The log replayed from scratch by `config`'s projection into a database of its own, as far
/// as `live` has got once both stand at the log's head (which can trail the appends by a
/// moment while transactions are open on the server).
async fn clean_replay(live: &Projector, mut config: Config) -> String {
    let replica = test_support::fresh_database().await;
    config.read_model_url = replica.as_str().into();
    config.partitions = 1;
    let projector = Projector::connect(config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        projector.run_once().await.unwrap();
        let head = projector
            .store()
            .read_all(None, "order-", 100_000)
            .await
            .unwrap()
            .last()
            .map(|e| e.position);
        let (replayed, kept) = (
            projector.checkpoint().await.unwrap(),
            live.checkpoint().await.unwrap(),
        );
        if replayed == kept && replayed >= head {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clean replay and the live projection never met"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dumped = dump(&projector).await;
    drop(projector);
    test_support::drop_database(&replica).await;
    dumped
}

/// Equal read-model dumps, or the first line where they differ.
fn assert_same(actual: &str, expected: &str) {
    if let Some((i, (a, e))) = actual
        .lines()
        .zip(expected.lines())
        .enumerate()
        .find(|(_, (a, e))| a != e)
    {
        panic!("line {i} differs from a clean replay:\n  read models: {a}\n  clean replay: {e}");
    }
    assert_eq!(
        actual.lines().count(),
        expected.lines().count(),
        "as many rows as a clean replay"
    );
}

/// The names of the read models' indexes and constraints, as migrations know them.
async fn index_names(projector: &Projector) -> Vec<String> {
    let client = projector.pool().get().await.unwrap();
    client
        .query(
            "select indexname::text from pg_indexes where schemaname = 'public'
               and tablename in ('order_status', 'order_timeline', 'order_status_counts')
             order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits until the live projector has applied the log up to `last`, the last event written.
/// (The log as a reader sees it can trail the appends while a transaction is open anywhere on
/// the server: waiting for the reader's head would stop early.)
async fn settle(projector: &Projector, last: Option<Position>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while projector.checkpoint().await.unwrap() < last {
        assert!(
            Instant::now() < deadline,
            "the live projector did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A live projector following the log until the returned sender is dropped.
fn run_live(projector: Projector) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        projector
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

async fn switch_while_orders_flow(partitions: u32) {
    let env = env().await;
    let (_, seeded) = write_orders(env.store.as_ref(), 30).await;
    let live = Projector::connect(live_config(&env.url, partitions))
        .await
        .unwrap();
    let _stop = run_live(
        Projector::connect(live_config(&env.url, partitions))
            .await
            .unwrap(),
    );
    settle(&live, seeded).await;
    let names = index_names(&live).await;

    // Orders keep coming while the shadow is built and switched in.
    let store = env.store.clone();
    let writer = tokio::spawn(async move { write_orders(store.as_ref(), 40).await });
    // The same code rebuilt (as after corrections): the live projector keeps applying it.
    let next = Projector::connect(live_config(&env.url, partitions))
        .await
        .unwrap();
    let switched = next.rebuild_blue_green(|_| {}).await.unwrap();
    assert!(switched.replayed > 0, "{switched:?}");
    writer.await.unwrap();
    // The live projector resumes on the new tables: orders written after the switch show.
    let (_, last) = write_orders(env.store.as_ref(), 5).await;
    settle(&live, last).await;

    assert_same(
        &dump(&live).await,
        &clean_replay(&live, live_config(&env.url, partitions)).await,
    );
    assert_counts_consistent(&live).await;
    assert_eq!(
        index_names(&live).await,
        names,
        "the indexes keep their names"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_rebuild_switches_in_a_clean_replay_while_the_live_projector_keeps_following()
{
    switch_while_orders_flow(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_rebuild_of_a_projection_run_as_partitions_switches_every_partition_in() {
    switch_while_orders_flow(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_puts_the_previous_version_back_caught_up_with_the_log() {
    let env = env().await;
    let (written, _) = write_orders(env.store.as_ref(), 10).await;
    let live = Projector::connect(live_config(&env.url, 1)).await.unwrap();
    assert_eq!(project(&live, written as u64).await, written as u64);
    let next = Projector::connect(next_version(&env.url, 1)).await.unwrap();
    next.rebuild_blue_green(|_| {}).await.unwrap();
    let new_version = clean_replay(&live, next_version(&env.url, 1)).await;
    assert_same(&dump(&live).await, &new_version);

    // Orders written after the switch reach the previous version before it is back.
    let (more, _) = write_orders(env.store.as_ref(), 5).await;
    assert_eq!(project(&next, more as u64).await, more as u64);
    let rolled = live.rollback(|_| {}).await.unwrap();
    assert!(rolled.replayed > 0, "the previous version was caught up");
    let old_version = clean_replay(&live, live_config(&env.url, 1)).await;
    assert_ne!(old_version, new_version, "the versions differ");
    assert_same(&dump(&live).await, &old_version);
    assert_counts_consistent(&live).await;
}

#[tokio::test]
async fn a_rollback_with_no_previous_version_is_refused() {
    let env = env().await;
    let err = env.projector.rollback(|_| {}).await.unwrap_err();
    assert!(
        matches!(err, ProjectorError::NoPreviousVersion("order_status")),
        "{err:?}"
    );
    assert!(err.to_string().contains("no previous version"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_blue_green_rebuild_while_one_runs_is_refused() {
    let env = env().await;
    let written = write_orders(env.store.as_ref(), 5).await.0 as u64;
    // The log visible (it can trail the appends), so that the shadow has batches to replay.
    assert_eq!(project(&env.projector, written).await, written);
    let (building, built) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let first = Projector::connect(live_config(&env.url, 1)).await.unwrap();
    let running = tokio::spawn(async move {
        first
            .rebuild_blue_green(|_| {
                tokio::task::block_in_place(|| {
                    let _ = building.send(());
                    let _ = released.lock().map(|r| r.recv());
                })
            })
            .await
    });
    tokio::task::spawn_blocking(move || built.recv().unwrap())
        .await
        .unwrap();
    let err = env.projector.rebuild_blue_green(|_| {}).await.unwrap_err();
    assert!(
        matches!(err, ProjectorError::BlueGreenRunning("order_status")),
        "{err:?}"
    );
    let err = env.projector.rollback(|_| {}).await.unwrap_err();
    assert!(
        matches!(err, ProjectorError::BlueGreenRunning(_)),
        "{err:?}"
    );
    drop(release);
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_rebuild_switches_in_even_when_the_log_grows_faster_than_the_shadow_replays_it(
) {
    let env = env().await;
    let (seeded, _) = write_orders(env.store.as_ref(), 20).await;
    let mut config = live_config(&env.url, 1);
    config.catch_up_batch_size = 10;
    let rebuilder = Projector::connect(config).await.unwrap();
    let store = env.store.clone();
    let handle = tokio::runtime::Handle::current();
    let written = std::sync::atomic::AtomicUsize::new(seeded);
    // After every batch the shadow applies, more events than it holds become visible in the
    // log: a shadow that replays until the log runs dry never gets to its switch.
    let grow = move |_| {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let (more, _) = write_orders(store.as_ref(), 6).await;
                let total = written.fetch_add(more, std::sync::atomic::Ordering::SeqCst) + more;
                while store.read_all(None, "order-", 100_000).await.unwrap().len() < total {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        });
    };
    let switched =
        tokio::time::timeout(Duration::from_secs(10), rebuilder.rebuild_blue_green(grow))
            .await
            .expect("the shadow stops at the log's head and is switched in")
            .unwrap();
    assert!(switched.replayed >= seeded as u64, "{switched:?}");
}

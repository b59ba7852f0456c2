use crate::helpers::*;
use domain::OrderCommand;
use projector::Projector;
use std::time::Duration;
use uuid::Uuid;

/// A mix of orders in every state, interleaved in the log.
async fn generate(env: &Env, orders: usize) -> usize {
    let mut written = 0;
    for i in 0..orders {
        let id = Uuid::new_v4();
        let mut commands = vec![
            place(id),
            authorize(&format!("p{i}"), TOTAL),
            reserve(&format!("r{i}")),
        ];
        match i % 4 {
            0 => commands.extend([
                OrderCommand::StartFulfillment,
                ship("DHL", "TRK-0001"),
                OrderCommand::ConfirmDelivery,
            ]),
            1 => commands.push(OrderCommand::CancelOrder {
                reason: reason("changed mind"),
            }),
            2 => commands.push(OrderCommand::StartFulfillment),
            _ => {}
        }
        written += Log::new(env.store.as_ref())
            .at(t0())
            .order(id, commands)
            .await
            .events();
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_run_then_resume_gives_the_same_tables_as_a_clean_replay() {
    let url = test_support::fresh_database().await;
    let mut small = config(&url);
    small.batch_size = 7;
    small.catch_up_batch_size = 7;
    let env = env_on(&url, small).await;
    let first = generate(&env, 30).await;

    // The live projector is killed (its task dropped mid-batch) while commands keep arriving.
    let live = env.projector.clone();
    let running = tokio::spawn(async move { live.run(std::future::pending()).await });
    wait_for_applied(&env.projector, 20).await;
    running.abort();
    let _ = running.await;
    let second = generate(&env, 10).await;

    let resumed = Projector::connect(config(&url)).await.unwrap();
    project_until_applied(&resumed, first + second).await;
    // Everything is applied exactly once.
    let applied = scalar(
        &resumed,
        "select events_applied from projection_checkpoints",
    )
    .await;
    assert_eq!(applied as usize, first + second);
    assert_eq!(
        rows_in(&resumed, "order_timeline").await as usize,
        first + second
    );
    assert_counts_consistent(&resumed).await;
    let incremental = dump(&resumed).await;

    resumed.rebuild(|_| {}).await.unwrap();
    assert_eq!(dump(&resumed).await, incremental);
}

#[tokio::test]
async fn a_rebuild_gives_byte_identical_tables_to_the_incremental_run() {
    let env = env().await;
    let mut total = 0;
    for _ in 0..4 {
        let n = generate(&env, 5).await;
        total += n;
        project(&env.projector, n as u64).await;
    }
    let incremental = dump(&env.projector).await;
    assert_eq!(
        rows_in(&env.projector, "order_timeline").await as usize,
        total
    );

    let mut progress_calls = 0;
    let replayed = env
        .projector
        .rebuild(|_| progress_calls += 1)
        .await
        .unwrap();
    assert_eq!(replayed as usize, total);
    assert!(progress_calls > 0, "a rebuild reports progress");
    assert_eq!(dump(&env.projector).await, incremental);
}

#[tokio::test]
async fn applying_the_same_events_again_changes_nothing() {
    let env = env().await;
    let n = generate(&env, 6).await;
    project(&env.projector, n as u64).await;
    let before = dump(&env.projector).await;
    // Re-apply the whole log on top, as a projector restored from an old checkpoint would.
    let events = env.store.read_all(None, "order-", 10_000).await.unwrap();
    let checkpoint = env.projector.checkpoint().await.unwrap();
    env.projector
        .apply_batch(checkpoint, &events)
        .await
        .unwrap();
    let after = dump(&env.projector).await;
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_caught_up_in_one_large_batch_then_live_events_come_in_small_ones() {
    let url = test_support::fresh_database().await;
    let mut cfg = config(&url);
    cfg.batch_size = 2;
    cfg.catch_up_batch_size = 1000;
    let env = env_on(&url, cfg).await;
    let backlog = generate(&env, 8).await;
    // Wait until the whole backlog is visible in the log (visibility can trail an append).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while env
        .store
        .read_all(None, "order-", 10_000)
        .await
        .unwrap()
        .len()
        < backlog
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog never became visible"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (tx, mut commits) = tokio::sync::mpsc::unbounded_channel();
    let pg: tokio_postgres::Config = url.parse().unwrap();
    let _listener = service_kit::postgres::listen_on(&pg, projector::CHANGES_CHANNEL, move |p| {
        let _ = tx.send(p);
    })
    .await
    .unwrap();
    let live = env.projector.clone();
    let running = tokio::spawn(async move { live.run(std::future::pending()).await });
    wait_for_applied(&env.projector, backlog).await;
    let mut backlog_commits = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), commits.recv()).await {
        backlog_commits += 1;
    }
    assert_eq!(
        backlog_commits, 1,
        "{backlog} backlog events in one transaction"
    );

    let more = generate(&env, 2).await;
    wait_for_applied(&env.projector, backlog + more).await;
    let mut live_commits = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), commits.recv()).await {
        live_commits += 1;
    }
    assert!(
        live_commits * 2 >= more,
        "{more} live events in batches of at most 2, yet only {live_commits} commits"
    );
    running.abort();
    let _ = running.await;
    test_support::drop_database(&url).await;
}

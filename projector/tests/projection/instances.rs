use crate::helpers::*;
use projector::lease::Lease;
use projector::{Projector, ProjectorError, PROJECTION};
use std::time::Duration;
use uuid::Uuid;

const LEASE_TTL: Duration = Duration::from_secs(3);

#[tokio::test]
async fn only_one_instance_holds_the_projection_and_a_standby_takes_over_when_it_dies() {
    let env = env().await;
    let pg: tokio_postgres::Config = env.url.parse().unwrap();
    let first = Lease::try_acquire(&pg, PROJECTION, LEASE_TTL)
        .await
        .unwrap()
        .expect("free lease");
    assert!(
        Lease::try_acquire(&pg, PROJECTION, LEASE_TTL)
            .await
            .unwrap()
            .is_none(),
        "a second instance must wait"
    );
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if Lease::try_acquire(&pg, PROJECTION, LEASE_TTL)
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_instances_never_both_apply_and_the_standby_finishes_the_work() {
    let env = env().await;
    let second = Projector::connect(config(&env.url)).await.unwrap();
    let a = env.projector.clone();
    let b = second.clone();
    let run_a = tokio::spawn(async move { a.run(std::future::pending()).await });
    let run_b = tokio::spawn(async move { b.run(std::future::pending()).await });

    let mut written = 0;
    for _ in 0..10 {
        let id = Uuid::new_v4();
        written += Log::new(env.store.as_ref())
            .at(t0())
            .order(id, vec![place(id), authorize("p", TOTAL), reserve("r")])
            .await
            .events();
    }
    wait_for_applied(&env.projector, written).await;
    // Kill whichever is active; the other takes over within seconds.
    run_a.abort();
    let _ = run_a.await;
    for _ in 0..10 {
        let id = Uuid::new_v4();
        written += Log::new(env.store.as_ref())
            .at(t0())
            .order(id, vec![place(id), authorize("p", TOTAL)])
            .await
            .events();
    }
    wait_for_applied(&second, written).await;
    run_b.abort();
    assert_eq!(rows_in(&second, "order_timeline").await as usize, written);
    assert_eq!(
        scalar(&second, "select events_applied from projection_checkpoints").await as usize,
        written
    );
    assert_counts_consistent(&second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_fences_two_writers_of_the_same_batch() {
    let env = env().await;
    let id = Uuid::new_v4();
    Log::new(env.store.as_ref())
        .at(t0())
        .order(id, vec![place(id), authorize("p", TOTAL)])
        .await;
    let mut events = Vec::new();
    while events.len() < 2 {
        events = env.store.read_all(None, "order-", 100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = Projector::connect(config(&env.url)).await.unwrap();
    let (x, y) = tokio::join!(
        env.projector.apply_batch(None, &events),
        other.apply_batch(None, &events)
    );
    let outcomes = [x, y];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, Err(ProjectorError::CheckpointMoved { .. }))));
    assert_eq!(rows_in(&other, "order_timeline").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_within_seconds_when_the_active_host_vanishes_without_closing_its_connections(
) {
    let env = env().await;
    // The active instance reaches the database through a proxy that can cut it off; the
    // standby connects directly.
    let proxy = crate::proxy::Proxy::to(&env.url).await;
    let mut cut_off = config(&proxy.url);
    cut_off.lease_ttl = LEASE_TTL;
    let active = Projector::connect(cut_off).await.unwrap();
    let standby = env.projector.clone();
    let run_active = tokio::spawn(async move { active.run(std::future::pending()).await });
    let mut written = 0;
    for _ in 0..3 {
        let id = Uuid::new_v4();
        written += Log::new(env.store.as_ref())
            .at(t0())
            .order(id, vec![place(id)])
            .await
            .events();
    }
    wait_for_applied(&standby, written).await;
    let run_standby = tokio::spawn(async move { standby.run(std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The active host freezes: its connections stay open but nothing gets through.
    proxy.freeze();
    let vanished = std::time::Instant::now();
    for _ in 0..3 {
        let id = Uuid::new_v4();
        written += Log::new(env.store.as_ref())
            .at(t0())
            .order(id, vec![place(id), authorize("p", TOTAL)])
            .await
            .events();
    }
    wait_for_applied(&env.projector, written).await;
    assert!(
        vanished.elapsed() < Duration::from_secs(12),
        "the standby took {:?} to take over",
        vanished.elapsed()
    );

    // The former active instance comes back: it finds the lease gone and writes nothing.
    proxy.thaw();
    let id = Uuid::new_v4();
    written += Log::new(env.store.as_ref())
        .at(t0())
        .order(id, vec![place(id)])
        .await
        .events();
    wait_for_applied(&env.projector, written).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    run_active.abort();
    run_standby.abort();
    assert_eq!(
        rows_in(&env.projector, "order_timeline").await as usize,
        written
    );
    assert_eq!(
        scalar(
            &env.projector,
            "select events_applied from projection_checkpoints"
        )
        .await as usize,
        written
    );
    assert_counts_consistent(&env.projector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_the_database_loses_the_lease_within_seconds_and_cannot_commit_after_a_takeover(
) {
    let env = env().await;
    let id = Uuid::new_v4();
    Log::new(env.store.as_ref())
        .at(t0())
        .order(id, vec![place(id), authorize("p", TOTAL)])
        .await;
    let mut events = Vec::new();
    while events.len() < 2 {
        events = env.store.read_all(None, "order-", 100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let direct: tokio_postgres::Config = env.url.parse().unwrap();
    let proxy = crate::proxy::Proxy::to(&env.url).await;
    let via_proxy: tokio_postgres::Config = proxy.url.parse().unwrap();
    let old = Lease::try_acquire(&via_proxy, PROJECTION, LEASE_TTL)
        .await
        .unwrap()
        .expect("free lease");

    // The holder's host freezes: its renewals stop reaching the database.
    proxy.freeze();
    let frozen = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), old.lost())
        .await
        .expect("the holder notices it lost the lease");
    assert!(!old.is_held());
    let new = loop {
        if let Some(lease) = Lease::try_acquire(&direct, PROJECTION, LEASE_TTL)
            .await
            .unwrap()
        {
            break lease;
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(10),
            "no standby could take the lease over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(new.token() > old.token(), "a takeover gets a newer token");

    // The former holder wakes and sends the batch it had prepared: refused, nothing written.
    let fenced = env.projector.apply_batch_holding(&old, None, &events).await;
    assert!(
        matches!(fenced, Err(ProjectorError::LeaseLost)),
        "{fenced:?}"
    );
    assert_eq!(rows_in(&env.projector, "order_timeline").await, 0);
    assert_eq!(env.projector.checkpoint().await.unwrap(), None);

    // The new holder's batch commits.
    env.projector
        .apply_batch_holding(&new, None, &events)
        .await
        .unwrap();
    assert_eq!(rows_in(&env.projector, "order_timeline").await, 2);
}

#[tokio::test]
async fn a_checkpoint_written_reading_the_other_event_store_is_refused_until_a_rebuild() {
    let env = env().await;
    let id = Uuid::new_v4();
    Log::new(env.store.as_ref())
        .at(t0())
        .order(id, vec![place(id)])
        .await;
    assert_eq!(project(&env.projector, 1).await, 1);
    let client = env.projector.pool().get().await.unwrap();
    // As a projector reading a KurrentDB log would have left it.
    client
        .execute(
            "update projection_checkpoints set event_store = 'kurrentdb' where projection = $1",
            &[&PROJECTION],
        )
        .await
        .unwrap();

    let err = env.projector.run_once().await.unwrap_err();
    assert!(
        matches!(err, ProjectorError::OtherEventStore { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("kurrentdb") && err.to_string().contains("projector rebuild"),
        "the message says what to do: {err}"
    );

    env.projector.rebuild(|_| {}).await.unwrap();
    assert_eq!(env.projector.run_once().await.unwrap(), 0);
    let backend: String = client
        .query_one(
            "select event_store from projection_checkpoints where projection = $1",
            &[&PROJECTION],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(backend, "postgres");
}

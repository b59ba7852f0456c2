use crate::helpers::*;
use projector::lease::Lease;
use projector::{Projector, ProjectorError, PROJECTION};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn only_one_instance_holds_the_projection_and_a_standby_takes_over_when_it_dies() {
    let env = env().await;
    let pg: tokio_postgres::Config = env.url.parse().unwrap();
    let first = Lease::try_acquire(&pg, PROJECTION)
        .await
        .unwrap()
        .expect("free lease");
    assert!(
        Lease::try_acquire(&pg, PROJECTION).await.unwrap().is_none(),
        "a second instance must wait"
    );
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if Lease::try_acquire(&pg, PROJECTION).await.unwrap().is_some() {
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
        written += record(
            env.store.as_ref(),
            id,
            vec![place(id), authorize("p"), reserve("r")],
            t0(),
        )
        .await;
    }
    wait_for_applied(&env.projector, written).await;
    // Kill whichever is active; the other takes over within seconds.
    run_a.abort();
    let _ = run_a.await;
    for _ in 0..10 {
        let id = Uuid::new_v4();
        written += record(
            env.store.as_ref(),
            id,
            vec![place(id), authorize("p")],
            t0(),
        )
        .await;
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
    record(
        env.store.as_ref(),
        id,
        vec![place(id), authorize("p")],
        t0(),
    )
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

//! Starting the PostgreSQL store: migrations under a lock, and a log copied from another
//! cluster refused.

use crate::support::{events, postgres};
use event_store::{ExpectedRevision, StoreError, StoreOptions};
use test_support::fresh_database;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_starting_at_once_on_a_fresh_database_all_succeed() {
    for _ in 0..3 {
        let url = fresh_database().await;
        let starters: Vec<_> = (0..12)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    event_store::connect(&url, &StoreOptions { pool_size: 1 })
                        .await
                        .map(|_| ())
                })
            })
            .collect();
        for starter in starters {
            starter.await.unwrap().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_copied_from_another_cluster_is_refused_at_start_up_with_what_to_do() {
    let b = postgres().await;
    let url = b.database_url.clone().unwrap();
    b.store
        .append(&b.stream("order-1"), ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    // A restart on the same cluster is fine.
    event_store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();

    // Rows as a dump from a cluster far ahead in transaction ids restores them.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let copied_tx: i64 = (7 << 32) + 1234;
    client
        .execute(
            "insert into es_events (tx_id, stream_id, revision, event_id, event_type, schema_version, data, metadata)
             values ($1, $2, 0, gen_random_uuid(), 'Copied', 1, '{}', '{}')",
            &[&copied_tx, &b.stream("order-copied")],
        )
        .await
        .unwrap();

    let err = match event_store::connect(&url, &StoreOptions::default()).await {
        Ok(_) => panic!("a store whose log is ahead of its cluster must not start"),
        Err(e) => e,
    };
    assert!(
        matches!(err, StoreError::LogFromAnotherCluster { newest, .. } if newest == copied_tx as u64),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("copied from another cluster"), "{message}");
    assert!(message.contains("pg_resetwal --epoch=8"), "{message}");
}

//! The PostgreSQL trap: transactions commit out of order. A reader must never move past an
//! event whose transaction has not committed yet.

use crate::subscriptions::{next_within, take};
use crate::support::{event, postgres, read_all_until};
use event_store::ExpectedRevision;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_commits_late_is_delivered_after_it_commits_and_nothing_is_skipped() {
    let b = postgres().await;
    let url = b.database_url.clone().unwrap();
    let early = b.stream("order-early");
    b.store
        .append(&early, ExpectedRevision::NoStream, vec![event("First", 0)])
        .await
        .unwrap();
    let start = read_all_until(b.store.as_ref(), None, &b.prefix, 1).await[0].position;
    let start = Some(start);
    let mut sub = b.store.subscribe_all(start, &b.prefix).await.unwrap();

    // Transaction A writes an event and stays open (as a slow append would).
    let (mut slow, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tx = slow.transaction().await.unwrap();
    tx.execute(
        "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
         values ($1, 0, gen_random_uuid(), 'Slow', 1, '{}', '{}')",
        &[&b.stream("order-slow")],
    )
    .await
    .unwrap();

    // Transaction B starts later and commits first.
    b.store
        .append(
            &b.stream("order-fast"),
            ExpectedRevision::NoStream,
            vec![event("Fast", 1)],
        )
        .await
        .unwrap();
    assert!(
        next_within(&mut sub, Duration::from_millis(700))
            .await
            .is_none(),
        "nothing may be delivered past a transaction still in flight"
    );
    let read = b.store.read_all(start, &b.prefix, 10).await.unwrap();
    assert!(read.is_empty(), "read_all must hold back too: {read:?}");

    tx.commit().await.unwrap();
    let got = take(&mut sub, 2).await;
    let types: Vec<_> = got.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Slow", "Fast"], "both, in commit-safe order");
    assert!(
        next_within(&mut sub, Duration::from_millis(700))
            .await
            .is_none(),
        "each event exactly once"
    );

    // A fresh reader from the same start sees the same two, in the same order.
    let again = read_all_until(b.store.as_ref(), start, &b.prefix, 2).await;
    assert_eq!(
        again.iter().map(|e| e.id).collect::<Vec<_>>(),
        got.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

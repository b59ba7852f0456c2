use crate::contract;
use crate::support::{events, read_all_until, Backend};
use event_store::{Direction, ExpectedRevision, StoreError};

async fn stream_of_five(b: &Backend, name: &str) -> String {
    let stream = b.stream(name);
    b.store
        .append(&stream, ExpectedRevision::NoStream, events(5))
        .await
        .unwrap();
    stream
}

fn revisions(events: &[event_store::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

contract!(a_stream_reads_forwards_from_a_revision_with_a_limit);
async fn a_stream_reads_forwards_from_a_revision_with_a_limit(b: Backend) {
    let stream = stream_of_five(&b, "order-r1").await;
    let all = b
        .store
        .read_stream(&stream, Direction::Forwards, None, 100)
        .await
        .unwrap();
    assert_eq!(revisions(&all), [0, 1, 2, 3, 4]);
    let page = b
        .store
        .read_stream(&stream, Direction::Forwards, Some(2), 2)
        .await
        .unwrap();
    assert_eq!(revisions(&page), [2, 3]);
}

contract!(a_stream_reads_backwards_from_the_end_or_a_revision);
async fn a_stream_reads_backwards_from_the_end_or_a_revision(b: Backend) {
    let stream = stream_of_five(&b, "order-r2").await;
    let tail = b
        .store
        .read_stream(&stream, Direction::Backwards, None, 2)
        .await
        .unwrap();
    assert_eq!(revisions(&tail), [4, 3]);
    let page = b
        .store
        .read_stream(&stream, Direction::Backwards, Some(2), 10)
        .await
        .unwrap();
    assert_eq!(revisions(&page), [2, 1, 0]);
}

contract!(reading_a_missing_stream_says_it_is_not_found);
async fn reading_a_missing_stream_says_it_is_not_found(b: Backend) {
    let err = b
        .store
        .read_stream(&b.stream("order-nothing"), Direction::Forwards, None, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StreamNotFound(_)), "{err:?}");
}

contract!(the_log_reads_after_a_position_in_order_filtered_by_prefix);
async fn the_log_reads_after_a_position_in_order_filtered_by_prefix(b: Backend) {
    let s1 = stream_of_five(&b, "order-a").await;
    let s2 = stream_of_five(&b, "order-b").await;
    // Another prefix, which the filter must leave out.
    let other = format!("x{}", b.prefix);
    b.store
        .append(
            &format!("{other}order-c"),
            ExpectedRevision::NoStream,
            events(2),
        )
        .await
        .unwrap();

    let all = read_all_until(b.store.as_ref(), None, &b.prefix, 10).await;
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert!(all[..5].iter().all(|e| e.stream_id == s1));
    assert!(all[5..].iter().all(|e| e.stream_id == s2));

    let after = read_all_until(b.store.as_ref(), Some(all[3].position), &b.prefix, 3).await;
    assert_eq!(
        after.iter().map(|e| e.id).collect::<Vec<_>>(),
        all[4..7].iter().map(|e| e.id).collect::<Vec<_>>(),
        "a read from a position starts strictly after it"
    );
    let head = b.store.head_position().await.unwrap().unwrap();
    assert!(head >= all[9].position);
}

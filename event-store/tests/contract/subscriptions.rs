use crate::contract;
use crate::support::{events, read_all_until, Backend};
use event_store::{ExpectedRevision, RecordedEvent, Subscription};
use std::time::Duration;

/// The next event, or `None` if nothing arrives in time.
pub async fn next_within(sub: &mut Subscription, wait: Duration) -> Option<RecordedEvent> {
    match tokio::time::timeout(wait, sub.next()).await {
        Ok(Some(Ok(e))) => Some(e),
        Ok(Some(Err(e))) => panic!("subscription failed: {e}"),
        Ok(None) => panic!("subscription ended"),
        Err(_) => None,
    }
}

pub async fn take(sub: &mut Subscription, n: usize) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match next_within(sub, Duration::from_secs(10)).await {
            Some(e) => out.push(e),
            None => panic!("only {} of {n} events arrived", out.len()),
        }
    }
    out
}

contract!(a_subscription_delivers_history_after_a_position_then_live_events);
async fn a_subscription_delivers_history_after_a_position_then_live_events(b: Backend) {
    let stream = b.stream("order-s1");
    b.store
        .append(&stream, ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    let history = read_all_until(b.store.as_ref(), None, &b.prefix, 3).await;

    let mut sub = b
        .store
        .subscribe_all(Some(history[0].position), &b.prefix)
        .await
        .unwrap();
    let caught_up = take(&mut sub, 2).await;
    assert_eq!(
        caught_up.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [1, 2]
    );

    let live = events(2);
    b.store
        .append(&stream, ExpectedRevision::Exact(2), live.clone())
        .await
        .unwrap();
    let got = take(&mut sub, 2).await;
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        live.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert!(next_within(&mut sub, Duration::from_millis(300))
        .await
        .is_none());
}

contract!(a_subscription_from_the_start_sees_every_stream_of_its_prefix_once);
async fn a_subscription_from_the_start_sees_every_stream_of_its_prefix_once(b: Backend) {
    let mut sub = b.store.subscribe_all(None, &b.prefix).await.unwrap();
    for i in 0..5 {
        b.store
            .append(
                &b.stream(&format!("order-m{i}")),
                ExpectedRevision::NoStream,
                events(2),
            )
            .await
            .unwrap();
    }
    let got = take(&mut sub, 10).await;
    assert!(got.windows(2).all(|w| w[0].position < w[1].position));
    assert!(next_within(&mut sub, Duration::from_millis(300))
        .await
        .is_none());
}

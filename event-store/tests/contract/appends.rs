use crate::contract;
use crate::support::{event, events, landing, Backend};
use event_store::{
    read_whole_stream, AppendResult, CurrentRevision, ExpectedRevision, GuardedAppend, StoreError,
};
use std::sync::Arc;

contract!(a_new_stream_is_created_with_no_stream_and_reads_back_with_metadata);
async fn a_new_stream_is_created_with_no_stream_and_reads_back_with_metadata(b: Backend) {
    let stream = b.stream("order-1");
    let written = events(3);
    let result = b
        .store
        .append(&stream, ExpectedRevision::NoStream, written.clone())
        .await
        .unwrap();
    assert_eq!(result.next_expected_revision, 2);
    let read = read_whole_stream(b.store.as_ref(), &stream).await.unwrap();
    assert_eq!(read.len(), 3);
    for (i, (r, w)) in read.iter().zip(&written).enumerate() {
        assert_eq!(r.revision, i as u64);
        assert_eq!(r.id, w.id);
        assert_eq!(r.event_type, w.event_type);
        assert_eq!(r.schema_version, 1);
        assert_eq!(r.data, w.data);
        assert_eq!(r.metadata, w.metadata, "metadata must round-trip");
        assert_eq!(r.stream_id, stream);
    }
    assert_eq!(read[2].position, result.position);
    assert!(read[0].position < read[1].position && read[1].position < read[2].position);
}

contract!(a_wrong_expected_revision_is_a_typed_conflict_and_writes_nothing);
async fn a_wrong_expected_revision_is_a_typed_conflict_and_writes_nothing(b: Backend) {
    let stream = b.stream("order-2");
    b.store
        .append(&stream, ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();

    let err = b
        .store
        .append(&stream, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::WrongExpectedRevision {
                actual: CurrentRevision::Current(1),
                ..
            }
        ),
        "{err:?}"
    );
    let err = b
        .store
        .append(&stream, ExpectedRevision::Exact(0), events(1))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    let err = b
        .store
        .append(&stream, ExpectedRevision::Exact(7), events(1))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    let err = b
        .store
        .append(
            &b.stream("order-missing"),
            ExpectedRevision::Exact(0),
            events(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::WrongExpectedRevision {
                actual: CurrentRevision::NoStream,
                ..
            }
        ),
        "{err:?}"
    );

    assert_eq!(b.len(&stream).await, 2);
    let ok = b
        .store
        .append(&stream, ExpectedRevision::Exact(1), events(1))
        .await
        .unwrap();
    assert_eq!(ok.next_expected_revision, 2);
}

contract!(re_sending_the_same_events_succeeds_without_writing_and_returns_the_original_result);
async fn re_sending_the_same_events_succeeds_without_writing_and_returns_the_original_result(
    b: Backend,
) {
    let stream = b.stream("order-3");
    let first = events(2);
    let original = b
        .store
        .append(&stream, ExpectedRevision::NoStream, first.clone())
        .await
        .unwrap();
    assert!(!original.already_stored);
    // A retry, as a client sends it: the same events, sent again later (other metadata).
    let mut retry = first.clone();
    for e in &mut retry {
        e.metadata.occurred_at = Some("2026-01-02T03:04:06Z".parse().unwrap());
    }
    let again = b
        .store
        .append(&stream, ExpectedRevision::NoStream, retry)
        .await
        .unwrap();
    assert!(again.already_stored, "a retry says it wrote nothing");
    let original = AppendResult {
        already_stored: true,
        ..original
    };
    assert_eq!(again, original);

    let second = events(1);
    let next = b
        .store
        .append(&stream, ExpectedRevision::Exact(1), second.clone())
        .await
        .unwrap();
    // Later appends do not change what a retry of an earlier one returns.
    b.store
        .append(&stream, ExpectedRevision::Exact(2), events(1))
        .await
        .unwrap();
    let retried = b
        .store
        .append(&stream, ExpectedRevision::Exact(1), second)
        .await
        .unwrap();
    assert_eq!(landing(&retried), landing(&next));
    let retried = b
        .store
        .append(&stream, ExpectedRevision::NoStream, first)
        .await
        .unwrap();
    assert_eq!(landing(&retried), landing(&original));
    assert_eq!(b.len(&stream).await, 4);
}

contract!(the_same_event_ids_with_other_content_are_a_conflict);
async fn the_same_event_ids_with_other_content_are_a_conflict(b: Backend) {
    let stream = b.stream("order-4");
    let original = events(2);
    b.store
        .append(&stream, ExpectedRevision::NoStream, original.clone())
        .await
        .unwrap();
    let mut altered = original.clone();
    altered[1].data = serde_json::json!({ "n": 99 });
    let err = b
        .store
        .append(&stream, ExpectedRevision::NoStream, altered)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { event_id } if event_id == original[1].id),
        "{err:?}"
    );
    let read = read_whole_stream(b.store.as_ref(), &stream).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].data, original[1].data);
}

contract!(racing_identical_appends_write_once_and_all_succeed);
async fn racing_identical_appends_write_once_and_all_succeed(b: Backend) {
    let stream = b.stream("order-5");
    let batch = events(3);
    let store = b.store.clone();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, stream, mut batch) = (Arc::clone(&store), stream.clone(), batch.clone());
            // Each racer is another request: same events, its own metadata.
            for e in &mut batch {
                e.metadata.causation_id = Some(format!("racer-{i}"));
            }
            tokio::spawn(async move {
                store
                    .append(&stream, ExpectedRevision::NoStream, batch)
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert!(
        results.windows(2).all(|w| landing(&w[0]) == landing(&w[1])),
        "{results:?}"
    );
    let fresh = results.iter().filter(|r| !r.already_stored).count();
    assert_eq!(fresh, 1, "exactly one racer wrote: {results:?}");
    assert_eq!(b.len(&stream).await, 3);
}

contract!(racing_different_appends_at_one_revision_let_exactly_one_through);
async fn racing_different_appends_at_one_revision_let_exactly_one_through(b: Backend) {
    let stream = b.stream("order-6");
    b.store
        .append(&stream, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, stream) = (Arc::clone(&b.store), stream.clone());
            tokio::spawn(async move {
                store
                    .append(
                        &stream,
                        ExpectedRevision::Exact(0),
                        vec![event("Racing", i)],
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                won += 1;
                assert_eq!(r.next_expected_revision, 1);
            }
            Err(e) => assert!(e.is_conflict(), "{e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(b.len(&stream).await, 2);
}

contract!(any_revision_appends_at_the_end);
async fn any_revision_appends_at_the_end(b: Backend) {
    let stream = b.stream("order-7");
    b.store
        .append(&stream, ExpectedRevision::Any, events(2))
        .await
        .unwrap();
    let r = b
        .store
        .append(&stream, ExpectedRevision::Any, events(1))
        .await
        .unwrap();
    assert_eq!(r.next_expected_revision, 2);
}

contract!(refused_appends_made_at_the_same_time_as_others_leave_the_others_written);
async fn refused_appends_made_at_the_same_time_as_others_leave_the_others_written(b: Backend) {
    // Streams already written before the race, each to be refused (or answered) differently.
    let taken = b.stream("taken");
    let behind = b.stream("behind");
    let retried = b.stream("retried");
    let reused = b.stream("reused");
    let retried_event = event("Placed", 1);
    let reused_event = event("Placed", 2);
    let mut reused_other = reused_event.clone();
    reused_other.data = serde_json::json!({ "other": "content" });
    let mut earlier = std::collections::HashMap::new();
    for (stream, first) in [
        (&taken, event("Placed", 3)),
        (&behind, event("Placed", 4)),
        (&retried, retried_event.clone()),
        (&reused, reused_event),
    ] {
        let result = b
            .store
            .append(stream, ExpectedRevision::NoStream, vec![first])
            .await
            .unwrap();
        earlier.insert(stream.clone(), result);
    }

    let fresh: Vec<String> = (0..24).map(|i| b.stream(&format!("fresh-{i}"))).collect();
    let mut appends: Vec<(String, ExpectedRevision, event_store::NewEvent)> = fresh
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.clone(),
                ExpectedRevision::NoStream,
                event("Placed", i as i64),
            )
        })
        .collect();
    appends.push((
        taken.clone(),
        ExpectedRevision::NoStream,
        event("Placed", 5),
    ));
    appends.push((
        behind.clone(),
        ExpectedRevision::Exact(7),
        event("Placed", 6),
    ));
    appends.push((retried.clone(), ExpectedRevision::NoStream, retried_event));
    appends.push((reused.clone(), ExpectedRevision::NoStream, reused_other));
    // Refused ones first among the rest, so that they share groups with fresh appends.
    appends.rotate_right(4);

    let start = Arc::new(tokio::sync::Barrier::new(appends.len()));
    let tasks: Vec<_> = appends
        .into_iter()
        .map(|(stream, expected, e)| {
            let (store, start) = (Arc::clone(&b.store), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let result = store.append(&stream, expected, vec![e.clone()]).await;
                (stream, e, result)
            })
        })
        .collect();
    let mut written = Vec::new();
    for task in tasks {
        let (stream, e, result) = task.await.unwrap();
        if stream == taken {
            assert!(
                matches!(
                    result,
                    Err(StoreError::WrongExpectedRevision {
                        actual: CurrentRevision::Current(0),
                        ..
                    })
                ),
                "{result:?}"
            );
        } else if stream == behind {
            assert!(
                matches!(
                    result,
                    Err(StoreError::WrongExpectedRevision {
                        expected: ExpectedRevision::Exact(7),
                        actual: CurrentRevision::Current(0),
                        ..
                    })
                ),
                "{result:?}"
            );
        } else if stream == retried {
            let result = result.unwrap();
            assert!(result.already_stored, "{result:?}");
            assert_eq!(landing(&result), landing(&earlier[&stream]));
        } else if stream == reused {
            assert!(
                matches!(result, Err(StoreError::DuplicateEventId { event_id }) if event_id == e.id),
                "{result:?}"
            );
        } else {
            let result = result.unwrap();
            assert_eq!(result.next_expected_revision, 0);
            assert!(!result.already_stored);
            let read = read_whole_stream(b.store.as_ref(), &stream).await.unwrap();
            assert_eq!(read.len(), 1, "{stream}");
            assert_eq!((read[0].id, read[0].position), (e.id, result.position));
            written.push(result.position);
        }
    }
    assert_eq!(written.len(), fresh.len());
    for stream in [&taken, &behind, &retried, &reused] {
        let read = read_whole_stream(b.store.as_ref(), stream).await.unwrap();
        assert_eq!(read.len(), 1, "{stream} was changed");
        assert_eq!(read[0].position, earlier[stream].position);
    }
    if b.group_commit {
        // With group commit, appends made at the same time share a transaction.
        let mut commits: Vec<u64> = written.iter().map(|p| p.commit).collect();
        commits.sort_unstable();
        commits.dedup();
        assert!(
            commits.len() < written.len(),
            "every append had a commit of its own: {written:?}"
        );
    }
}

contract!(a_guarded_append_writes_only_while_its_guard_stream_is_empty);
async fn a_guarded_append_writes_only_while_its_guard_stream_is_empty(b: Backend) {
    let recorded_guard = b.stream("guard-recorded");
    b.store
        .append(&recorded_guard, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let empty_guard = b.stream("guard-empty");
    // Made at the same time, so that on PostgreSQL they share groups.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&b.store);
            let stream = b.stream(&format!("guarded-{i}"));
            let guard = if i % 2 == 0 {
                empty_guard.clone()
            } else {
                recorded_guard.clone()
            };
            tokio::spawn(async move {
                let e = event("Placed", i);
                let outcome = store
                    .append_guarded(&stream, ExpectedRevision::NoStream, vec![e], &guard)
                    .await;
                (i, stream, outcome)
            })
        })
        .collect();
    for task in tasks {
        let (i, stream, outcome) = task.await.unwrap();
        if i % 2 == 0 {
            let result = match outcome {
                Ok(GuardedAppend::Appended(result)) => result,
                other => panic!("{stream}: {other:?}"),
            };
            assert_eq!(result.next_expected_revision, 0);
            assert!(!result.already_stored);
            assert_eq!(b.len(&stream).await, 1);
        } else {
            assert!(
                matches!(outcome, Ok(GuardedAppend::GuardHasEvents)),
                "{outcome:?}"
            );
            assert_eq!(b.len(&stream).await, 0, "{stream} was written");
        }
    }

    // A guard holding events wins over the stream's own refusal, for several events too.
    let existing = b.stream("guarded-existing");
    b.store
        .append(&existing, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    for (expected, batch) in [
        (ExpectedRevision::NoStream, events(1)),
        (ExpectedRevision::Exact(0), events(2)),
    ] {
        let outcome = b
            .store
            .append_guarded(&existing, expected, batch, &recorded_guard)
            .await;
        assert!(
            matches!(outcome, Ok(GuardedAppend::GuardHasEvents)),
            "{outcome:?}"
        );
    }
    assert_eq!(b.len(&existing).await, 1);
    // With an empty guard, the stream's own answers are unchanged.
    let outcome = b
        .store
        .append_guarded(
            &existing,
            ExpectedRevision::NoStream,
            events(1),
            &empty_guard,
        )
        .await;
    assert!(
        matches!(outcome, Err(StoreError::WrongExpectedRevision { .. })),
        "{outcome:?}"
    );
    let outcome = b
        .store
        .append_guarded(
            &existing,
            ExpectedRevision::Exact(0),
            events(2),
            &empty_guard,
        )
        .await;
    assert!(
        matches!(outcome, Ok(GuardedAppend::Appended(r)) if r.next_expected_revision == 2),
        "{outcome:?}"
    );
}

use crate::helpers::*;
use event_store::Position;
use query_api::consistency::CheckpointWatch;
use query_api::schema::PROJECTION;
use serde_json::json;
use std::time::{Duration, Instant};

impl TestApp {
    /// What `projector rebuild` does first: empties the order read models and starts the
    /// checkpoint over.
    async fn start_rebuild(&self) {
        let mut client = self.projector.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        projector::db::reset_projection(
            &tx,
            projector::PROJECTION,
            &[projector::PROJECTION],
            <projector::OrderProjection as projector::projection::Projection>::TABLES,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    /// Appends an event to a stream no projection follows; returns its position.
    async fn append_elsewhere(&self) -> Position {
        self.store
            .append(
                &format!("ledger-{}", uuid::Uuid::new_v4()),
                event_store::ExpectedRevision::NoStream,
                vec![event_store::NewEvent {
                    id: uuid::Uuid::new_v4(),
                    event_type: "Noted".into(),
                    schema_version: 1,
                    data: json!({}),
                    metadata: event_store::Metadata::default(),
                }],
            )
            .await
            .unwrap()
            .position
    }
}

const Q: &str = "query($id: ID!) { order(id: $id) { status revision } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_a_fresh_token_waits_for_the_projection_and_sees_the_write() {
    let app = spawn_app().await;
    let live = app.projector.clone();
    let projector = tokio::spawn(async move { live.run(std::future::pending()).await });
    let id = app.order("c", vec![]).await;
    let token = app.command(id, authorize("pay-1", TOTAL)).await;
    let token2 = app.command(id, reserve("res-1")).await;
    assert!(token2 > token);
    let (status, body) = app
        .query_with(Q, json!({"id": id}), Some(&token2.to_string()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["order"]["status"], "ACCEPTED", "{body}");
    assert_eq!(body["extensions"]["consistency"]["reached"], true);
    assert_eq!(body["extensions"]["consistency"]["stale"], false);
    projector.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_partitions_a_token_is_reached_once_every_partition_has_passed_it_and_the_status_sums_them(
) {
    let app = spawn_with(Options {
        partitions: 4,
        read_your_writes_timeout: Duration::from_millis(400),
        ..Options::default()
    })
    .await;
    let mut written = 0;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.order("c", vec![]).await);
        written += 1;
    }
    let id = ids[0];
    let token = app.command(id, authorize("pay-1", TOTAL)).await;
    written += 1;
    // Only the partition of the order's stream applies the log: the others have not passed
    // the token, so the answer is marked stale after the wait.
    let own = (0..4)
        .find(|&i| projector::Partition { index: i, count: 4 }.owns(&format!("order-{id}")))
        .unwrap();
    app.projector.partition(own).run_once().await.unwrap();
    let (_, body) = app
        .query_with(Q, json!({"id": id}), Some(&token.to_string()))
        .await;
    assert_eq!(body["extensions"]["consistency"]["stale"], true, "{body}");

    app.project_all().await;
    let (_, body) = app
        .query_with(Q, json!({"id": id}), Some(&token.to_string()))
        .await;
    assert_eq!(body["data"]["order"]["revision"], 1, "{body}");
    assert_eq!(body["extensions"]["consistency"]["reached"], true, "{body}");
    assert_eq!(body["extensions"]["consistency"]["stale"], false, "{body}");

    let body = app
        .query(
            "{ projectionStatus { checkpoint eventsApplied } }",
            json!({}),
        )
        .await;
    let status = &body["data"]["projectionStatus"];
    assert_eq!(status["eventsApplied"], written, "{body}");
    assert_eq!(
        status["checkpoint"],
        app.projector
            .checkpoint()
            .await
            .unwrap()
            .unwrap()
            .to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_partitions_a_live_projector_s_commits_answer_a_waiting_query_well_before_the_timeout()
{
    let app = spawn_with(Options {
        partitions: 4,
        read_your_writes_timeout: Duration::from_secs(5),
        ..Options::default()
    })
    .await;
    let live = app.projector.clone();
    let projector = tokio::spawn(async move { live.run(std::future::pending()).await });
    let id = app.order("c", vec![]).await;
    let placed = app.command(id, authorize("pay-1", TOTAL)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.projector.checkpoint().await.unwrap() < Some(placed) {
        assert!(Instant::now() < deadline, "the partitions did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each partition's lease is held and its catch-up done; now the write.
    let token = app.command(id, reserve("res-1")).await;
    let started = Instant::now();
    let (_, body) = app
        .query_with(Q, json!({"id": id}), Some(&token.to_string()))
        .await;
    assert_eq!(body["extensions"]["consistency"]["reached"], true, "{body}");
    assert_eq!(body["data"]["order"]["status"], "ACCEPTED", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered after {:?}",
        started.elapsed()
    );
    projector.abort();
}

#[tokio::test]
async fn an_unreachable_token_answers_after_the_timeout_marked_stale() {
    let app = spawn_with(Options {
        read_your_writes_timeout: std::time::Duration::from_millis(400),
        ..Options::default()
    })
    .await;
    let id = app.order("c", vec![]).await;
    app.project_all().await;
    let started = std::time::Instant::now();
    let (status, body) = app
        .query_with(Q, json!({"id": id}), Some("999999999999-1"))
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "waited the bound"
    );
    assert_eq!(body["data"]["order"]["status"], "PLACED", "still answers");
    assert_eq!(body["extensions"]["consistency"]["stale"], true);
}

#[tokio::test]
async fn a_malformed_token_is_a_clear_error() {
    let app = spawn_app().await;
    let (status, body) = app
        .query_with("{ statusCounts { orders } }", json!({}), Some("yesterday"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INVALID_CONSISTENCY_TOKEN");
}

/// The race: a refresh reads the stored checkpoint, the projector commits further and announces
/// it, then the refresh's older answer lands. Here the announcement comes first, so the refresh
/// reads a checkpoint behind it every time.
#[tokio::test]
async fn a_refresh_never_lowers_a_checkpoint_already_announced() {
    let app = spawn_app().await;
    app.order("c", vec![]).await;
    app.project_all().await;
    let stored = app.projector.checkpoint().await.unwrap().unwrap();
    let (pool, pg_config) = service_kit::postgres::build_pool(&app.url, 2).unwrap();
    let watch = CheckpointWatch::start(pool, pg_config, &app.url);
    assert!(watch.wait_for(stored, Duration::from_secs(5)).await.reached);

    let ahead = Position::new(stored.commit + 1, 1);
    app.database()
        .await
        .execute(
            "select pg_notify('milestone_projection', $1)",
            &[&json!({ "projection": PROJECTION, "position": ahead.to_string() }).to_string()],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while watch.known(PROJECTION) != Some(ahead) {
        assert!(Instant::now() < deadline, "the announcement never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(
        watch.refresh().await.unwrap()[PROJECTION],
        Some(stored),
        "the table is behind"
    );
    assert_eq!(watch.known(PROJECTION), Some(ahead));
    let outcome = watch.wait_for(ahead, Duration::from_secs(2)).await;
    assert!(outcome.reached, "{outcome:?}");
    assert!(outcome.waited < Duration::from_millis(500), "{outcome:?}");
}

#[tokio::test]
async fn a_token_whose_event_was_dead_lettered_says_its_order_is_parked() {
    let app = spawn_app().await;
    let healthy = app.order("c", vec![]).await;
    let id = app.order("c", vec![]).await;
    let poison = app
        .append_raw(
            id,
            0,
            "PaymentAuthorized",
            json!({"payment": "p-1", "amount": 2100}),
        )
        .await;
    let fine = app.command(healthy, authorize("pay-1", TOTAL)).await;
    app.project_all().await;

    let (status, body) = app
        .query_with(Q, json!({"id": id}), Some(&poison.to_string()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["order"]["status"], "PLACED", "{body}");
    let consistency = &body["extensions"]["consistency"];
    assert_eq!(consistency["reached"], true, "{body}");
    assert_eq!(consistency["stale"], true, "{body}");
    assert_eq!(consistency["parked"], json!([id.to_string()]), "{body}");

    let (_, body) = app
        .query_with(Q, json!({"id": healthy}), Some(&fine.to_string()))
        .await;
    assert_eq!(body["data"]["order"]["revision"], 1, "{body}");
    let consistency = &body["extensions"]["consistency"];
    assert_eq!(consistency["stale"], false, "{body}");
    assert_eq!(consistency["parked"], json!([]), "{body}");
}

#[tokio::test]
async fn a_rebuild_in_progress_makes_earlier_tokens_wait_again_instead_of_reading_empty_models() {
    let app = spawn_with(Options {
        read_your_writes_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let id = app.order("c", vec![]).await;
    let token = app.command(id, authorize("pay-1", TOTAL)).await;
    app.project_all().await;
    let (_, body) = app
        .query_with(Q, json!({"id": id}), Some(&token.to_string()))
        .await;
    assert_eq!(body["extensions"]["consistency"]["stale"], false, "{body}");

    app.start_rebuild().await;

    let (_, body) = app
        .query_with(Q, json!({"id": id}), Some(&token.to_string()))
        .await;
    assert_eq!(body["data"]["order"], json!(null), "{body}");
    assert_eq!(
        body["extensions"]["consistency"]["stale"], true,
        "an empty read model must not be reported as current: {body}"
    );

    app.project_all().await;
    let (_, body) = app
        .query_with(Q, json!({"id": id}), Some(&token.to_string()))
        .await;
    assert_eq!(body["data"]["order"]["revision"], 1, "{body}");
    assert_eq!(body["extensions"]["consistency"]["stale"], false, "{body}");
}

/// A wait that found none of a projection's events up to a token remembers it, so that later
/// waits look at the log only from there (a matter of speed, shown by the visibility
/// benchmark); this checks that a rebuild of the projection forgets it.
#[tokio::test]
async fn a_rebuild_forgets_how_far_earlier_waits_found_the_log_settled_for_the_projection() {
    let app = spawn_with(Options {
        read_your_writes_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let id = app.order("c", vec![]).await;
    app.command(id, authorize("pay-1", TOTAL)).await;
    app.project_all().await;
    // The order projection has nothing of its own up to this token: settled up to it.
    let elsewhere = app.append_elsewhere().await;
    let (_, body) = app
        .query_with(Q, json!({"id": id}), Some(&elsewhere.to_string()))
        .await;
    assert_eq!(body["extensions"]["consistency"]["reached"], true, "{body}");
    assert_eq!(body["data"]["order"]["revision"], 1, "{body}");

    app.start_rebuild().await;

    let (_, body) = app
        .query_with(Q, json!({"id": id}), Some(&elsewhere.to_string()))
        .await;
    assert_eq!(body["data"]["order"], json!(null), "{body}");
    assert_eq!(
        body["extensions"]["consistency"]["stale"], true,
        "the rebuilt projection has not applied the order before the token yet: {body}"
    );
}

/// One token serves every workflow: a projection waits only when the log holds events of its
/// own streams up to the token. Here the token names an event no projection follows, so the
/// order projection (behind on an order of its own, after the token) holds nothing up.
#[tokio::test]
async fn a_token_of_a_stream_no_projection_follows_is_reached_without_waiting() {
    let app = spawn_with(Options {
        read_your_writes_timeout: Duration::from_secs(5),
        ..Options::default()
    })
    .await;
    let projected = app.order("c", vec![]).await;
    app.project_all().await;
    let elsewhere = app.append_elsewhere().await;
    // An order the projection is behind on, after the token.
    app.order("c", vec![]).await;

    let started = Instant::now();
    let (status, body) = app
        .query_with(Q, json!({"id": projected}), Some(&elsewhere.to_string()))
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered without waiting for the timeout: {body}"
    );
    assert_eq!(body["extensions"]["consistency"]["reached"], true, "{body}");
    assert_eq!(body["extensions"]["consistency"]["stale"], false, "{body}");
}

/// A projection behind on events before the token is waited for only until it has applied
/// them: it then stops short of the token (its last event is before it), and the wait ends
/// there rather than at the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_waits_for_a_projection_behind_only_until_it_has_applied_its_events_before_it() {
    let app = spawn_with(Options {
        read_your_writes_timeout: Duration::from_secs(10),
        ..Options::default()
    })
    .await;
    let id = app.order("c", vec![]).await;
    let token = app.append_elsewhere().await;
    let live = app.projector.clone();
    let projector = tokio::spawn(async move {
        // Started after the query begins waiting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        live.run(std::future::pending()).await
    });

    let started = Instant::now();
    let (status, body) = app
        .query_with(Q, json!({"id": id}), Some(&token.to_string()))
        .await;
    projector.abort();
    assert_eq!(status, 200);
    assert_eq!(body["extensions"]["consistency"]["reached"], true, "{body}");
    assert_eq!(body["data"]["order"]["status"], "PLACED", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait ended when the order projection caught up, not at the timeout: {:?} {body}",
        started.elapsed()
    );
}

//! A blue/green rebuild and its rollback seen through GraphQL: queried at a steady rate while
//! the shadow is built and switched in and commands keep flowing, every answer is without
//! error and none is older than one before it; an in-place rebuild fails the same watch.

use crate::helpers::*;
use event_store::Position;
use projector::Projector;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Queries per second the watch sends, and the most it sends in all.
const RATE: u64 = 50;
const MAX_QUERIES: usize = 3000;

/// The latest order a writer placed and authorized (revision 1), and the token of that write.
type Latest = Arc<Mutex<Option<(Uuid, Position)>>>;

/// What the watch saw.
#[derive(Debug, Default)]
struct Watched {
    answers: usize,
    /// Errors, and answers older than one before them.
    problems: Vec<String>,
}

/// Queries the tracked orders, the latest written order (with its consistency token) and the
/// projection's status every 1/RATE s until `stop`; checks each answer against those before.
fn watch(
    app: &TestApp,
    tracked: Vec<Uuid>,
    latest: Latest,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Watched> {
    let client = app.client.clone();
    let url = format!("{}/graphql", app.address);
    let aliases: String = (0..tracked.len())
        .map(|i| format!("o{i}: order(id: $o{i}) {{ status revision }} "))
        .collect();
    let params: String = (0..tracked.len())
        .map(|i| format!("$o{i}: ID!, "))
        .collect();
    let query = format!(
        "query({params}$latest: ID!) {{ {aliases} latest: order(id: $latest) {{ revision }} \
         projectionStatus {{ checkpoint }} }}"
    );
    tokio::spawn(async move {
        let mut watched = Watched::default();
        let mut revisions: HashMap<usize, i64> = HashMap::new();
        let mut checkpoint: Option<Position> = None;
        let mut every = tokio::time::interval(Duration::from_millis(1000 / RATE));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::SeqCst) && watched.answers < MAX_QUERIES {
            every.tick().await;
            let mut variables = json!({});
            for (i, id) in tracked.iter().enumerate() {
                variables[format!("o{i}")] = json!(id);
            }
            let written = *latest.lock().unwrap();
            variables["latest"] = json!(written.map_or(Uuid::nil(), |(id, _)| id));
            let mut request = client
                .post(&url)
                .json(&json!({"query": query, "variables": variables}));
            if let Some((_, token)) = written {
                request = request.header("X-Consistency-Token", token.to_string());
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            watched.answers += 1;
            if status != 200 || body.get("errors").is_some() {
                watched.problems.push(format!("{status}: {body}"));
                continue;
            }
            let data = &body["data"];
            for i in 0..tracked.len() {
                let Some(revision) = data[format!("o{i}")]["revision"].as_i64() else {
                    watched.problems.push(format!("order {i} vanished: {body}"));
                    continue;
                };
                let seen = revisions.entry(i).or_insert(revision);
                if revision < *seen {
                    watched
                        .problems
                        .push(format!("order {i} went back from revision {seen}: {body}"));
                }
                *seen = revision.max(*seen);
            }
            match data["projectionStatus"]["checkpoint"]
                .as_str()
                .map(str::parse::<Position>)
            {
                Some(Ok(at)) => {
                    if checkpoint.is_some_and(|c| at < c) {
                        watched.problems.push(format!(
                            "the checkpoint went back from {checkpoint:?}: {body}"
                        ));
                    }
                    checkpoint = checkpoint.max(Some(at));
                }
                _ => watched.problems.push(format!("no checkpoint: {body}")),
            }
            // Read-your-writes: once the token is reached, the write shows.
            if written.is_some()
                && body["extensions"]["consistency"]["reached"] == true
                && data["latest"]["revision"].as_i64() != Some(1)
            {
                watched
                    .problems
                    .push(format!("a reached token without its write: {body}"));
            }
        }
        watched
    })
}

/// Places orders (placed, then paid) every 40 ms until `stop`, taking one tracked order a
/// step further every fifth time; each write is remembered in `latest`.
fn write_while(
    app: &TestApp,
    tracked: Vec<Uuid>,
    latest: Latest,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let store = app.store.clone();
    tokio::spawn(async move {
        let mut written = 0;
        let mut steps = tracked
            .iter()
            .flat_map(|&id| [(id, authorize("pay", TOTAL)), (id, reserve("res"))])
            .collect::<Vec<_>>()
            .into_iter();
        while !stop.load(Ordering::SeqCst) {
            let id = Uuid::new_v4();
            let recorded = Log::new(store.as_ref())
                .order(id, vec![place(id, "flow"), authorize("pay", TOTAL)])
                .await;
            *latest.lock().unwrap() = recorded.position().map(|p| (id, p));
            written += 1;
            if written % 5 == 0 {
                if let Some((id, step)) = steps.next() {
                    Log::new(store.as_ref()).order(id, vec![step]).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        written
    })
}

/// Orders for the shadow to replay, and the ones the watch follows; all projected.
async fn seed(app: &TestApp, orders: usize) -> Vec<Uuid> {
    for _ in 0..orders {
        app.order("seed", vec![authorize("pay", TOTAL)]).await;
    }
    let mut tracked = Vec::new();
    for _ in 0..4 {
        tracked.push(app.order("tracked", vec![]).await);
    }
    app.project_all().await;
    tracked
}

/// A projector on the test's databases that replays in small pages, slowly (a long rebuild
/// in little time): `deadlines` make it another version of the projection.
async fn slow_rebuilder(app: &TestApp, deadlines: projector::Deadlines) -> Projector {
    let mut config = app.projector_config();
    config.catch_up_batch_size = 25;
    config.deadlines = deadlines;
    Projector::connect(config).await.unwrap()
}

fn pause(_: projector::Progress) {
    tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(100)));
}

/// The live projector following the log until the returned sender is dropped.
fn run_live(app: &TestApp) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let live = app.projector.clone();
    tokio::spawn(async move {
        live.run(async {
            let _ = stopped.await;
        })
        .await;
    });
    stop
}

/// The order read models as text, in a stable order.
async fn dump(client: &impl deadpool_postgres::GenericClient) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "select s::text from order_status s order by order_id",
        "select t::text from order_timeline t order by order_id, revision",
        "select c::text from order_status_counts c order by status",
    ] {
        for row in client.query(sql, &[]).await.unwrap() {
            out.push(row.get(0));
        }
    }
    out
}

async fn settle(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = app.store.read_all(None, "order-", 100_000).await.unwrap();
        if app.projector.checkpoint().await.unwrap() >= log.last().map(|e| e.position) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the live projector did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `action` while orders flow and GraphQL is watched; returns what the watch saw.
async fn watched_while<T>(
    app: &TestApp,
    tracked: &[Uuid],
    flow: bool,
    action: impl std::future::Future<Output = T>,
) -> (T, Watched) {
    let latest: Latest = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(app, tracked.to_vec(), latest.clone(), stop.clone());
    let writer = flow.then(|| write_while(app, tracked.to_vec(), latest, stop.clone()));
    // A second of answers before the action, to compare with.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = tokio::time::timeout(Duration::from_secs(60), action)
        .await
        .expect("the rebuild finishes within a minute while orders flow");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    if let Some(writer) = writer {
        assert!(writer.await.unwrap() > 0, "orders flowed");
    }
    (out, watcher.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_blue_green_rebuild_and_its_switch_every_answer_is_whole_and_none_older_than_the_one_before_and_after_it_the_read_models_are_a_clean_replay(
) {
    let app = spawn_app().await;
    let tracked = seed(&app, 150).await;
    let _live = run_live(&app);
    let rebuilder = slow_rebuilder(&app, projector::Deadlines::default()).await;
    let (switched, watched) =
        watched_while(&app, &tracked, true, rebuilder.rebuild_blue_green(pause)).await;
    let switched = switched.unwrap();
    assert!(switched.replayed >= 300, "{switched:?}");
    assert!(watched.answers >= RATE as usize, "{watched:?}");
    assert!(watched.problems.is_empty(), "{:#?}", watched.problems);

    settle(&app).await;
    let replica = test_support::fresh_database().await;
    let mut config = app.projector_config();
    config.read_model_url = replica.as_str().into();
    let clean = Projector::connect(config).await.unwrap();
    // Both at the log's head, which can trail the appends while transactions are open.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        clean.run_once().await.unwrap();
        let head = app.store.read_all(None, "order-", 100_000).await.unwrap();
        let (replayed, kept) = (
            clean.checkpoint().await.unwrap(),
            app.projector.checkpoint().await.unwrap(),
        );
        if replayed == kept && replayed >= head.last().map(|e| e.position) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clean replay and the live projection never met"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = app.projector.pool().get().await.unwrap();
    let replayed = clean.pool().get().await.unwrap();
    assert!(
        dump(&live).await == dump(&replayed).await,
        "the read models differ from a clean replay"
    );
    drop((replayed, clean));
    test_support::drop_database(&replica).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_rebuild_is_seen_by_readers_as_orders_vanishing() {
    let app = spawn_app().await;
    let tracked = seed(&app, 150).await;
    let rebuilder = slow_rebuilder(&app, projector::Deadlines::default()).await;
    let (rebuilt, watched) = watched_while(&app, &tracked, false, rebuilder.rebuild(pause)).await;
    rebuilt.unwrap();
    assert!(
        watched
            .problems
            .iter()
            .any(|p| p.contains("vanished") || p.contains("went back")),
        "{watched:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_brings_the_previous_versions_answers_back_without_a_restart() {
    let app = spawn_app().await;
    let tracked = seed(&app, 60).await;
    let _live = run_live(&app);
    let deadline = async |id: Uuid| -> String {
        let body = app
            .query(
                "query($id: ID!) { order(id: $id) { deadlineAt } }",
                json!({"id": id}),
            )
            .await;
        body["data"]["order"]["deadlineAt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = deadline(tracked[0]).await;

    // The next version gives payment a day longer.
    let longer = projector::Deadlines {
        placed: projector::Deadlines::default().placed + chrono::Duration::days(1),
        ..projector::Deadlines::default()
    };
    let next = slow_rebuilder(&app, longer).await;
    let (switched, watched) =
        watched_while(&app, &tracked, false, next.rebuild_blue_green(pause)).await;
    switched.unwrap();
    assert!(watched.problems.is_empty(), "{:#?}", watched.problems);
    let after = deadline(tracked[0]).await;
    let day = chrono::Duration::days(1);
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert_eq!(
        parse(&after) - parse(&before),
        day,
        "the new version's answer"
    );

    let previous = slow_rebuilder(&app, projector::Deadlines::default()).await;
    let (rolled, watched) = watched_while(&app, &tracked, false, previous.rollback(pause)).await;
    rolled.unwrap();
    assert!(watched.problems.is_empty(), "{:#?}", watched.problems);
    assert_eq!(
        deadline(tracked[0]).await,
        before,
        "the previous version's answer is back"
    );
}

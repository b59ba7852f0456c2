//! The returns projection, registered like any projection: its rows, timeline, counts and
//! deadlines, its poison handling and its rebuild, beside the order projection on one log.

use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use domain::*;
use event_store::{ExpectedRevision, Metadata, NewEvent};
use projector::returns::ReturnDeadlines;
use projector::{Projection, ReturnProjection, Runtime};
use serde_json::json;
use uuid::Uuid;

type Returns = Runtime<ReturnProjection>;

async fn returns_projector(url: &str, deadlines: ReturnDeadlines) -> Returns {
    Runtime::start(config(url), ReturnProjection::new(deadlines))
        .await
        .unwrap()
}

/// A return of the whole order (A 2 x 1000, B 1 x 250), delivered three days before `t0()`.
fn request(id: Uuid) -> ReturnCommand {
    request_return(
        &order(id),
        t0() - Duration::days(3),
        t0(),
        &[("A", 2), ("B", 1)],
        "does not fit",
    )
}

/// A accepted, B refused: the accepted lines refund 2000.
fn receive() -> ReturnCommand {
    test_support::log::receive(&[
        ("A", InspectionOutcome::Accepted),
        ("B", InspectionOutcome::Refused),
    ])
}

const ACCEPTED: i64 = 2000;

fn escalate(why: &str) -> ReturnCommand {
    ReturnCommand::EscalateReturn {
        reason: reason(why),
    }
}

fn ship_back() -> ReturnCommand {
    ReturnCommand::RecordItemsShippedBack {
        carrier: Carrier::parse("UPS").unwrap(),
        tracking_number: TrackingNumber::parse("BACK-1").unwrap(),
    }
}

/// Runs a projection until it has applied at least `n` more events (or 10 s pass).
async fn drive<P: Projection>(runtime: &Runtime<P>, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut total = 0;
    while total < n && std::time::Instant::now() < deadline {
        total += runtime.run_once().await.unwrap();
        if total < n {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    total
}

async fn query_json(pool: &deadpool_postgres::Pool, sql: &str, id: Uuid) -> serde_json::Value {
    let client = pool.get().await.unwrap();
    client.query_one(sql, &[&id]).await.unwrap().get(0)
}

async fn return_row(returns: &Returns, id: Uuid) -> serde_json::Value {
    query_json(
        returns.pool(),
        "select to_jsonb(s) from return_status s where order_id = $1",
        id,
    )
    .await
}

async fn count_of(returns: &Returns, status: &str) -> i64 {
    let client = returns.pool().get().await.unwrap();
    client
        .query_opt(
            "select returns from return_status_counts where status = $1",
            &[&status],
        )
        .await
        .unwrap()
        .map_or(0, |r| r.get(0))
}

/// Counts kept by the projection must equal counting the rows.
async fn assert_return_counts_consistent(returns: &Returns) {
    let client = returns.pool().get().await.unwrap();
    let differing: i64 = client
        .query_one(
            "select count(*) from (
                (select status, returns from return_status_counts
                 except select status, count(*) from return_status group by status)
                union all
                (select status, count(*) from return_status group by status
                 except select status, returns from return_status_counts)) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        differing, 0,
        "return_status_counts disagrees with return_status"
    );
}

/// The returns read models as text, in a stable order: equal dumps mean identical tables.
async fn dump_returns(returns: &Returns) -> String {
    let client = returns.pool().get().await.unwrap();
    let mut out = String::new();
    for sql in [
        "select coalesce(string_agg(s::text, E'\\n' order by order_id), '') from return_status s",
        "select coalesce(string_agg(t::text, E'\\n' order by order_id, revision), '') from return_timeline t",
        "select coalesce(string_agg(c::text, E'\\n' order by status), '') from return_status_counts c",
    ] {
        let text: String = client.query_one(sql, &[]).await.unwrap().get(0);
        out.push_str(&text);
        out.push_str("\n--\n");
    }
    out
}

fn at(row: &serde_json::Value, column: &str) -> DateTime<Utc> {
    row[column]
        .as_str()
        .unwrap_or_else(|| panic!("{column} is not set: {row}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_return_walked_to_its_refund_shows_each_step_its_refund_amounts_timeline_and_counts() {
    let url = test_support::fresh_database().await;
    let env = env_on(&url, config(&url)).await;
    let returns = returns_projector(&url, ReturnDeadlines::default()).await;
    let (id, waiting) = (Uuid::new_v4(), Uuid::new_v4());
    let store = env.store.as_ref();

    Log::new(store)
        .at(t0())
        .record::<domain::Returns>(waiting, vec![request(waiting)])
        .await;
    Log::new(store)
        .at(t0())
        .record::<domain::Returns>(id, vec![request(id)])
        .await;
    assert_eq!(drive(&returns, 2).await, 2);
    let r = return_row(&returns, id).await;
    assert_eq!(r["status"], "REQUESTED");
    assert_eq!(r["pending_actions"], json!(["DECIDE_RETURN"]));
    assert_eq!(r["currency"], "EUR");
    assert_eq!(r["reason"], "does not fit");
    assert_eq!(r["line_count"], 2);
    assert_eq!(r["refund_due_minor"], TOTAL);
    assert!(
        r["refund_accepted_minor"].is_null(),
        "nothing inspected yet"
    );
    assert_eq!(r["refunded_minor"], 0);
    assert_eq!(
        r["lines"],
        json!([
            {"sku": "A", "quantity": 2, "unit_price_minor": 1000,
             "accepted_quantity": null, "refused_quantity": null},
            {"sku": "B", "quantity": 1, "unit_price_minor": 250,
             "accepted_quantity": null, "refused_quantity": null},
        ])
    );
    assert_eq!(at(&r, "requested_at"), t0());

    Log::new(store)
        .at(t0() + Duration::hours(1))
        .record::<domain::Returns>(
            id,
            vec![escalate("customer called twice"), approve("RMA-7")],
        )
        .await;
    drive(&returns, 2).await;
    let r = return_row(&returns, id).await;
    assert_eq!(r["status"], "APPROVED");
    assert_eq!(r["pending_actions"], json!(["RECEIVE_ITEMS"]));
    assert_eq!(r["rma_number"], "RMA-7");
    assert_eq!(r["escalation_count"], 1);
    assert_eq!(r["escalation_reason"], "customer called twice");

    Log::new(store)
        .at(t0() + Duration::days(2))
        .record::<domain::Returns>(id, vec![receive()])
        .await;
    drive(&returns, 1).await;
    let r = return_row(&returns, id).await;
    assert_eq!(r["status"], "RECEIVED");
    assert_eq!(r["pending_actions"], json!(["ISSUE_REFUND"]));
    assert_eq!(r["refund_accepted_minor"], ACCEPTED);
    assert_eq!(r["refund_due_minor"], TOTAL, "still what was requested");
    assert_eq!(
        r["lines"],
        json!([
            {"sku": "A", "quantity": 2, "unit_price_minor": 1000,
             "accepted_quantity": 2, "refused_quantity": 0},
            {"sku": "B", "quantity": 1, "unit_price_minor": 250,
             "accepted_quantity": 0, "refused_quantity": 1},
        ])
    );

    Log::new(store)
        .at(t0() + Duration::days(3))
        .record::<domain::Returns>(id, vec![refund("rf-9", ACCEPTED)])
        .await;
    drive(&returns, 1).await;
    let r = return_row(&returns, id).await;
    assert_eq!(r["status"], "REFUNDED");
    assert_eq!(r["pending_actions"], json!([]));
    assert_eq!(r["refunded_minor"], ACCEPTED);
    assert_eq!(r["refund_id"], "rf-9");
    assert_eq!(r["rma_number"], "RMA-7");
    assert_eq!(r["last_milestone"], "RefundIssued");
    assert_eq!(r["stream_revision"], 4);
    assert_eq!(r["correlation_id"], format!("corr-return-{id}"));
    assert!(
        r["deadline_at"].is_null(),
        "a refunded return waits for nothing"
    );
    assert!(r["failure_reason"].is_null());
    assert_eq!(at(&r, "approved_at"), t0() + Duration::minutes(61));
    assert_eq!(at(&r, "escalated_at"), t0() + Duration::hours(1));
    assert_eq!(at(&r, "received_at"), t0() + Duration::days(2));
    assert_eq!(at(&r, "refunded_at"), t0() + Duration::days(3));
    assert_eq!(at(&r, "last_milestone_at"), t0() + Duration::days(3));
    for never in ["rejected_at", "cancelled_at", "shipped_back_at"] {
        assert!(r[never].is_null(), "{never} is set: {r}");
    }

    let client = returns.pool().get().await.unwrap();
    let timeline = client
        .query(
            "select event_type, summary, causation_id from return_timeline where order_id = $1 order by revision",
            &[&id],
        )
        .await
        .unwrap();
    let types: Vec<String> = timeline.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        types,
        [
            "ReturnRequested",
            "ReturnEscalated",
            "ReturnApproved",
            "ReturnItemsReceived",
            "RefundIssued"
        ]
    );
    assert_eq!(
        timeline[3].get::<_, String>(1),
        "items received: 1 of 2 line(s) accepted, refund due 2000"
    );
    assert_eq!(count_of(&returns, "REFUNDED").await, 1);
    assert_eq!(count_of(&returns, "REQUESTED").await, 1, "the other return");
    assert_eq!(count_of(&returns, "APPROVED").await, 0);
    assert_return_counts_consistent(&returns).await;
}

#[tokio::test]
async fn a_cancelled_return_whose_items_arrive_late_owes_shipping_them_back_until_they_are() {
    let url = test_support::fresh_database().await;
    let env = env_on(&url, config(&url)).await;
    let returns = returns_projector(&url, ReturnDeadlines::default()).await;
    let id = Uuid::new_v4();
    let store = env.store.as_ref();

    Log::new(store)
        .at(t0())
        .record::<domain::Returns>(
            id,
            vec![
                request(id),
                approve("RMA-8"),
                cancel_return("bought elsewhere"),
            ],
        )
        .await;
    drive(&returns, 3).await;
    let r = return_row(&returns, id).await;
    assert_eq!(r["status"], "CANCELLED");
    assert_eq!(r["pending_actions"], json!([]));
    assert_eq!(r["compensations_owed"], json!([]));
    assert_eq!(r["failure_reason"], "cancelled: bought elsewhere");
    assert_eq!(r["rma_number"], "RMA-8", "the RMA it was approved with");
    assert!(r["deadline_at"].is_null());

    let parcel = t0() + Duration::days(5);
    Log::new(store)
        .at(parcel)
        .record::<domain::Returns>(id, vec![receive()])
        .await;
    drive(&returns, 1).await;
    let r = return_row(&returns, id).await;
    assert_eq!(r["status"], "CANCELLED", "a late parcel does not revive it");
    assert_eq!(r["pending_actions"], json!(["SHIP_ITEMS_BACK"]));
    assert_eq!(r["compensations_owed"], json!(["SHIP_ITEMS_BACK"]));
    assert_eq!(r["compensations_done"], json!([]));
    assert_eq!(at(&r, "received_at"), parcel);
    assert_eq!(r["refunded_minor"], 0);
    assert_eq!(
        at(&r, "deadline_at"),
        parcel + ReturnDeadlines::default().for_step(COMPENSATION_STEP),
        "the clock to ship back starts when the items arrive"
    );

    Log::new(store)
        .at(parcel + Duration::hours(3))
        .record::<domain::Returns>(id, vec![ship_back()])
        .await;
    drive(&returns, 1).await;
    let r = return_row(&returns, id).await;
    assert_eq!(r["pending_actions"], json!([]));
    assert_eq!(r["compensations_owed"], json!([]));
    assert_eq!(r["compensations_done"], json!(["SHIP_ITEMS_BACK"]));
    assert_eq!(at(&r, "shipped_back_at"), parcel + Duration::hours(3));
    assert_eq!(r["last_milestone"], "ReturnItemsShippedBack");
    assert!(r["deadline_at"].is_null(), "nothing owed any more");
    assert_eq!(count_of(&returns, "CANCELLED").await, 1);
    assert_return_counts_consistent(&returns).await;
}

#[tokio::test]
async fn a_rebuild_of_the_returns_projection_gives_identical_tables_to_the_incremental_run() {
    let url = test_support::fresh_database().await;
    let env = env_on(&url, config(&url)).await;
    let returns = returns_projector(&url, ReturnDeadlines::default()).await;
    let store = env.store.as_ref();
    let mut events = 0;
    for (i, commands) in [
        vec![approve("RMA-1"), receive(), refund("rf-1", ACCEPTED)],
        vec![
            approve("RMA-2"),
            cancel_return("changed mind"),
            receive(),
            ship_back(),
        ],
        vec![escalate("slow"), cancel_return("changed mind")],
        vec![],
    ]
    .into_iter()
    .enumerate()
    {
        let id = Uuid::new_v4();
        let mut all = vec![request(id)];
        all.extend(commands);
        events += Log::new(store)
            .at(t0() + Duration::hours(i as i64))
            .record::<domain::Returns>(id, all)
            .await
            .events();
        // Batches end at different places in the incremental run than in the rebuild.
        drive(&returns, 1).await;
    }
    let applied = scalar(
        &env.projector,
        "select events_applied from projection_checkpoints where projection = 'return_status'",
    )
    .await as usize;
    drive(&returns, (events - applied) as u64).await;
    let incremental = dump_returns(&returns).await;
    assert_eq!(rows_in(&env.projector, "return_status").await, 4);
    assert_eq!(
        rows_in(&env.projector, "return_timeline").await,
        events as i64
    );

    returns.rebuild(|_| {}).await.unwrap();
    assert_eq!(dump_returns(&returns).await, incremental);
    assert_eq!(
        returns.run_once().await.unwrap(),
        0,
        "nothing is applied twice after the rebuild"
    );
    assert_eq!(dump_returns(&returns).await, incremental);
    assert_return_counts_consistent(&returns).await;
}

#[tokio::test]
async fn an_event_the_returns_projection_cannot_apply_parks_only_that_return_while_orders_keep_flowing(
) {
    let url = test_support::fresh_database().await;
    let env = env_on(&url, config(&url)).await;
    let returns = returns_projector(&url, ReturnDeadlines::default()).await;
    let store = env.store.as_ref();
    let (bad, good, order) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());

    Log::new(store)
        .at(t0())
        .record::<domain::Returns>(bad, vec![request(bad)])
        .await;
    let raw = |event_type: &str, data| NewEvent {
        id: Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version: 1,
        data,
        metadata: Metadata::default(),
    };
    store
        .append(
            &format!("return-{bad}"),
            ExpectedRevision::Exact(0),
            vec![
                raw("ReturnApproved", json!({"rma": 7})),
                raw("ReturnEscalated", json!({"reason": "stuck"})),
            ],
        )
        .await
        .unwrap();
    Log::new(store)
        .at(t0())
        .record::<domain::Returns>(good, vec![request(good), approve("RMA-3")])
        .await;
    Log::new(store)
        .at(t0())
        .order(order, vec![place(order), authorize("pay-1", TOTAL)])
        .await;
    // Every return event is read, the two the projection cannot apply included: a pass that
    // sees only the bad return's three events must not end the drive before the good one's.
    drive(&returns, 5).await;
    project(&env.projector, 2).await;

    let b = return_row(&returns, bad).await;
    assert_eq!(
        b["status"], "REQUESTED",
        "the return stops before the bad event"
    );
    assert_eq!(b["stream_revision"], 0);
    assert_eq!(return_row(&returns, good).await["status"], "APPROVED");
    assert_eq!(row(&env.projector, order).await["status"], "PLACED");

    let client = returns.pool().get().await.unwrap();
    let dead: Vec<(String, String, String)> = client
        .query(
            "select projection, stream_id, error from projection_dead_letters order by revision",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead
        .iter()
        .all(|(p, s, _)| p == "return_status" && *s == format!("return-{bad}")));
    assert!(dead[0].2.contains("ReturnApproved"), "{dead:?}");
    assert!(dead[1].2.contains("parked behind"), "{dead:?}");
    let parked: Vec<(String, String)> = client
        .query(
            "select projection, stream_id from projection_parked_streams",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        parked,
        [("return_status".to_owned(), format!("return-{bad}"))]
    );

    // Both keep going after the poison.
    Log::new(store)
        .at(t0() + Duration::days(1))
        .record::<domain::Returns>(good, vec![receive()])
        .await;
    Log::new(store)
        .at(t0())
        .order(order, vec![reserve("res-1")])
        .await;
    drive(&returns, 1).await;
    project(&env.projector, 2).await;
    assert_eq!(return_row(&returns, good).await["status"], "RECEIVED");
    assert_eq!(row(&env.projector, order).await["status"], "ACCEPTED");
}

#[tokio::test]
async fn each_step_of_a_return_is_due_after_its_configured_deadline() {
    let url = test_support::fresh_database().await;
    let env = env_on(&url, config(&url)).await;
    let deadlines = ReturnDeadlines::default()
        .with("REQUESTED", Duration::seconds(600))
        .with("APPROVED", Duration::seconds(7200))
        .with("RECEIVED", Duration::seconds(30));
    let returns = returns_projector(&url, deadlines).await;
    let store = env.store.as_ref();
    let id = Uuid::new_v4();

    Log::new(store)
        .at(t0())
        .record::<domain::Returns>(id, vec![request(id)])
        .await;
    drive(&returns, 1).await;
    let r = return_row(&returns, id).await;
    assert_eq!(at(&r, "deadline_at"), t0() + Duration::seconds(600));

    let approved = t0() + Duration::minutes(5);
    Log::new(store)
        .at(approved)
        .record::<domain::Returns>(id, vec![approve("RMA-4"), escalate("no parcel yet")])
        .await;
    drive(&returns, 2).await;
    let r = return_row(&returns, id).await;
    assert_eq!(
        at(&r, "deadline_at"),
        approved + Duration::seconds(7200),
        "an escalation does not restart the clock"
    );

    let received = t0() + Duration::days(1);
    Log::new(store)
        .at(received)
        .record::<domain::Returns>(id, vec![receive()])
        .await;
    drive(&returns, 1).await;
    let r = return_row(&returns, id).await;
    assert_eq!(at(&r, "deadline_at"), received + Duration::seconds(30));
}

#[tokio::test]
async fn the_order_and_returns_projections_read_one_log_side_by_side_with_their_own_checkpoints() {
    let url = test_support::fresh_database().await;
    let env = env_on(&url, config(&url)).await;
    let returns = returns_projector(&url, ReturnDeadlines::default()).await;
    let store = env.store.as_ref();
    let id = Uuid::new_v4();

    let order_events = Log::new(store)
        .at(t0() - Duration::days(4))
        .delivered_order(order(id))
        .await
        .events();
    let return_events = Log::new(store)
        .at(t0())
        .record::<domain::Returns>(id, vec![request(id), approve("RMA-5")])
        .await
        .events();
    assert_eq!(
        drive(&returns, return_events as u64).await as usize,
        return_events
    );
    assert_eq!(
        scalar(
            &env.projector,
            "select count(*) from projection_checkpoints where projection = 'order_status' and events_applied > 0"
        )
        .await,
        0,
        "the returns projection moved only its own checkpoint"
    );
    assert_eq!(
        project(&env.projector, order_events as u64).await as usize,
        order_events
    );

    let client = returns.pool().get().await.unwrap();
    let checkpoints: Vec<(String, i64)> = client
        .query(
            "select projection, events_applied from projection_checkpoints order by projection",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        checkpoints,
        [
            ("order_status".to_owned(), order_events as i64),
            ("return_status".to_owned(), return_events as i64),
        ]
    );
    assert_eq!(row(&env.projector, id).await["status"], "DELIVERED");
    assert_eq!(return_row(&returns, id).await["status"], "APPROVED");
    assert_eq!(
        rows_in(&env.projector, "order_timeline").await,
        order_events as i64
    );
    assert_eq!(
        rows_in(&env.projector, "return_timeline").await,
        return_events as i64
    );
    // Nothing left for either.
    assert_eq!(returns.run_once().await.unwrap(), 0);
    assert_eq!(env.projector.run_once().await.unwrap(), 0);
}

#[tokio::test]
async fn the_exported_column_list_of_return_status_names_the_table_s_columns_in_order_with_their_types(
) {
    let url = test_support::fresh_database().await;
    let returns = returns_projector(&url, ReturnDeadlines::default()).await;
    let client = returns.pool().get().await.unwrap();
    let table: Vec<(String, String)> = client
        .query(
            "select attname::text, format_type(atttypid, atttypmod) from pg_attribute
              where attrelid = 'return_status'::regclass and attnum > 0 and not attisdropped
              order by attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let listed: Vec<(String, String)> = projector::RETURN_STATUS_COLUMNS
        .iter()
        .map(|(name, sql)| {
            let sql = sql.replace("timestamptz", "timestamp with time zone");
            ((*name).to_owned(), sql)
        })
        .collect();
    assert_eq!(listed, table);
}

#[tokio::test]
async fn a_returns_projection_started_alone_creates_its_own_and_the_runtime_tables_but_no_order_tables(
) {
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &event_store::StoreOptions { pool_size: 2 })
        .await
        .unwrap();
    let returns = returns_projector(&url, ReturnDeadlines::default()).await;
    let id = Uuid::new_v4();
    let n = Log::new(store.as_ref())
        .at(t0())
        .record::<domain::Returns>(id, vec![request(id)])
        .await
        .events();
    assert_eq!(drive(&returns, n as u64).await as usize, n);
    assert_eq!(return_row(&returns, id).await["status"], "REQUESTED");

    let client = returns.pool().get().await.unwrap();
    let tables: Vec<String> = client
        .query(
            "select tablename::text from pg_tables where schemaname = 'public' \
             and (tablename like 'order%' or tablename like 'projection%') order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "projection_checkpoints",
            "projection_corrections",
            "projection_dead_letters",
            "projection_leases",
            "projection_parked_streams",
        ]
    );
}

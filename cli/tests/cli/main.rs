//! The `milestone` binary against a real PostgreSQL event store holding a known log.

use chrono::{DateTime, TimeZone, Utc};
use domain::*;
use event_store::{ExpectedRevision, StoreOptions};
use std::process::{Command, Output};
use test_support::log::{
    approve, authorize, cancel_order, new_order, place, receive, refund, request_return, reserve,
    ship, Log,
};
use uuid::Uuid;

struct KnownLog {
    url: String,
    order: Uuid,
    other: Uuid,
}

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap()
}

/// An order of four SKU-9 at 2.50 EUR.
fn place_order(id: Uuid) -> OrderCommand {
    place(id, "analyst-c", &[("SKU-9", 4, 250)])
}

/// Two orders: `order` placed 09:00, paid 09:10, reserved (accepted) 09:20, shipped after
/// fulfilment at 10:00 and 10:30; `other` placed 09:05 then cancelled 09:15.
async fn known_log() -> KnownLog {
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 2 })
        .await
        .unwrap();
    let (order, other) = (Uuid::new_v4(), Uuid::new_v4());
    let steps: Vec<(Uuid, OrderCommand, DateTime<Utc>)> = vec![
        (order, place_order(order), t(9, 0)),
        (other, place_order(other), t(9, 5)),
        (order, authorize("pay-1", 1000), t(9, 10)),
        (other, cancel_order("changed mind"), t(9, 15)),
        (order, reserve("res-1"), t(9, 20)),
        (order, OrderCommand::StartFulfillment, t(10, 0)),
        (order, ship("DHL", "TRK-42"), t(10, 30)),
    ];
    for (id, command, at) in steps {
        Log::new(store.as_ref())
            .at(at)
            .order(id, vec![command])
            .await;
    }
    KnownLog { url, order, other }
}

/// The schema version the code writes an event type with.
fn current_version(event_type: &serde_json::Value) -> u32 {
    OrderEvent::TYPES
        .iter()
        .find(|t| t.name == event_type.as_str().unwrap())
        .unwrap()
        .version
}

fn milestone(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_milestone"))
        .args(args)
        .env("MILESTONE_EVENT_STORE_URL", url)
        .env_remove("MILESTONE_READ_MODEL_URL")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `event_type` of each row.
fn event_types(rows: &[serde_json::Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect()
}

/// Waits until the whole log is visible to readers (an append's visibility can trail it by a
/// moment on PostgreSQL when other transactions run).
async fn settle(url: &str, n: usize) {
    let store = event_store::connect(url, &StoreOptions { pool_size: 1 })
        .await
        .unwrap();
    // Events become visible once every older transaction on the server has ended; other tests
    // running beside this one can hold that back for a while.
    let mut visible = 0;
    for _ in 0..1500 {
        visible = store.read_all(None, "", 100).await.unwrap().len();
        if visible >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("only {visible} of {n} events became visible in 30 s");
}

#[tokio::test]
async fn history_lists_an_orders_events_in_order_with_their_fields() {
    let log = known_log().await;
    let table = stdout(&milestone(&log.url, &["history", &log.order.to_string()]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("position") && lines[0].contains("summary"));
    assert_eq!(lines.len(), 1 + 6);
    assert!(lines[1].contains("OrderPlaced") && lines[1].contains("2026-03-01T09:00:00.000Z"));
    assert!(lines[6].contains("shipped with DHL, tracking TRK-42"));

    let rows = json_lines(&stdout(&milestone(
        &log.url,
        &["history", &log.order.to_string(), "--json"],
    )));
    let types = event_types(&rows);
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "PaymentAuthorized",
            "InventoryReserved",
            "OrderAccepted",
            "FulfillmentStarted",
            "OrderShipped"
        ]
    );
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["revision"], i);
        assert_eq!(r["correlation_id"], format!("corr-{}", log.order));
        assert!(r["causation_id"].is_string());
        assert_eq!(r["schema_version"], current_version(&r["event_type"]));
    }
    let positions: Vec<event_store::Position> = rows
        .iter()
        .map(|r| r["position"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn state_at_a_revision_or_a_time_folds_the_history_up_to_it() {
    let log = known_log().await;
    let id = log.order.to_string();
    let at = |arg: &str| -> serde_json::Value {
        serde_json::from_str(&stdout(&milestone(
            &log.url,
            &["state", &id, "--at", arg, "--json"],
        )))
        .unwrap()
    };
    let s = at("0");
    assert_eq!(
        (s["status"].as_str(), s["as_of_revision"].as_u64()),
        (Some("PLACED"), Some(0))
    );
    assert_eq!(
        s["pending_actions"],
        serde_json::json!(["AUTHORIZE_PAYMENT", "RESERVE_INVENTORY"])
    );
    assert_eq!(
        at("1")["pending_actions"],
        serde_json::json!(["RESERVE_INVENTORY"])
    );
    assert_eq!(at("3")["status"], "ACCEPTED");
    assert_eq!(at("2026-03-01T09:15:00Z")["status"], "PLACED");
    assert_eq!(at("2026-03-01T09:20:00Z")["status"], "ACCEPTED");
    assert_eq!(
        at("2026-03-01T11:00:00+01:00")["status"],
        "IN_FULFILLMENT",
        "10:00 UTC is the start of fulfilment"
    );
    assert_eq!(at("2026-03-02T00:00:00Z")["status"], "SHIPPED");
    let cancelled: serde_json::Value = serde_json::from_str(&stdout(&milestone(
        &log.url,
        &["state", &log.other.to_string(), "--json"],
    )))
    .unwrap();
    assert_eq!(cancelled["status"], "CANCELLED");
    let text = stdout(&milestone(&log.url, &["state", &id, "--at", "3"]));
    assert!(text.contains("status             ACCEPTED"), "{text}");
}

/// Two instances with different clocks: the payment is recorded at 09:30 by one, the
/// cancellation after it at 09:20 by the other.
#[tokio::test]
async fn state_at_a_time_folds_every_event_before_the_last_one_recorded_by_then() {
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 1 })
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let steps = [
        (place_order(id), t(9, 0)),
        (authorize("pay-skew", 1000), t(9, 30)),
        (cancel_order("changed mind"), t(9, 20)),
    ];
    for (command, at) in steps {
        Log::new(store.as_ref())
            .at(at)
            .order(id, vec![command])
            .await;
    }
    let id = id.to_string();
    let at = |arg: &str| -> serde_json::Value {
        serde_json::from_str(&stdout(&milestone(
            &url,
            &["state", &id, "--at", arg, "--json"],
        )))
        .unwrap()
    };
    let s = at("2026-03-01T09:25:00Z");
    assert_eq!(s["as_of_revision"], 2, "{s}");
    assert_eq!(s["status"], "CANCELLED", "{s}");
    assert_eq!(
        s["compensations_owed"],
        serde_json::json!(["VOID_PAYMENT"]),
        "the payment recorded before the cancellation is folded too: {s}"
    );
    assert_eq!(s["pending_actions"], serde_json::json!(["VOID_PAYMENT"]));
    let s = at("2026-03-01T09:15:00Z");
    assert_eq!(
        (s["status"].as_str(), s["as_of_revision"].as_u64()),
        (Some("PLACED"), Some(0))
    );
}

#[tokio::test]
async fn exports_every_format_with_filters() {
    let log = known_log().await;
    settle(&log.url, 8).await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();

    let all = json_lines(&stdout(&milestone(&log.url, &["export", "--quiet"])));
    assert_eq!(all.len(), 8);
    assert!(
        all.iter()
            .all(|r| r["schema_version"] == current_version(&r["event_type"])
                && r["data"].is_object())
    );

    let placed = json_lines(&stdout(&milestone(
        &log.url,
        &["export", "--quiet", "--type", "OrderPlaced"],
    )));
    assert_eq!(placed.len(), 2);
    let window = json_lines(&stdout(&milestone(
        &log.url,
        &[
            "export",
            "--quiet",
            "--since",
            "2026-03-01T09:10:00Z",
            "--until",
            "2026-03-01T09:20:00Z",
        ],
    )));
    assert_eq!(
        window
            .iter()
            .map(|r| r["event_type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["PaymentAuthorized", "OrderCancelled"]
    );
    let after = json_lines(&stdout(&milestone(
        &log.url,
        &[
            "export",
            "--quiet",
            "--after",
            all[6]["position"].as_str().unwrap(),
        ],
    )));
    assert_eq!(
        after.len(),
        1,
        "strictly after the position: resumes an interrupted export"
    );
    let range = json_lines(&stdout(&milestone(
        &log.url,
        &[
            "export",
            "--quiet",
            "--after",
            all[1]["position"].as_str().unwrap(),
            "--until-position",
            all[3]["position"].as_str().unwrap(),
        ],
    )));
    assert_eq!(range.len(), 2);

    let csv_out = milestone(
        &log.url,
        &[
            "export",
            "--quiet",
            "--format",
            "csv",
            "--out",
            &path("events.csv"),
        ],
    );
    assert!(csv_out.status.success());
    assert!(String::from_utf8_lossy(&csv_out.stderr).contains("exported 8 of 8"));
    let csv = std::fs::read_to_string(path("events.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>()[..6],
        [
            "position",
            "stream_id",
            "revision",
            "event_id",
            "event_type",
            "schema_version"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 8);
    assert_eq!(&records[0][4], "OrderPlaced");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&records[0][10]).unwrap()["total_minor"],
        1000
    );

    assert!(milestone(
        &log.url,
        &[
            "export",
            "--quiet",
            "--format",
            "parquet",
            "--type",
            "OrderShipped",
            "--type",
            "OrderPlaced",
            "--out",
            &path("events.parquet")
        ]
    )
    .status
    .success());
    let file = std::fs::File::open(path("events.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let types = batches[0].column_by_name("event_type").unwrap();
    let types = types
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    assert_eq!(
        types.iter().flatten().collect::<Vec<_>>(),
        ["OrderPlaced", "OrderPlaced", "OrderShipped"]
    );
    let versions = batches[0].column_by_name("schema_version").unwrap();
    assert_eq!(
        versions
            .as_any()
            .downcast_ref::<arrow_array::UInt32Array>()
            .unwrap()
            .value(0),
        1
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".milestone-export"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[tokio::test]
async fn an_export_of_every_stream_leaves_out_the_services_bookkeeping() {
    let log = known_log().await;
    let store = event_store::connect(&log.url, &StoreOptions { pool_size: 1 })
        .await
        .unwrap();
    let bookkeeping = format!(
        "{}idempotency-order-{}-key",
        event_store::BOOKKEEPING_STREAM_PREFIX,
        log.order
    );
    Log::new(store.as_ref())
        .append_raw(
            &bookkeeping,
            ExpectedRevision::NoStream,
            "IdempotentRequestAnswered",
            1,
            serde_json::json!({"request_hash": "h", "kind": "claimed"}),
        )
        .await;
    let mut visible = 0;
    for _ in 0..1500 {
        visible = store.read_all(None, "", 100).await.unwrap().len();
        if visible >= 9 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        visible, 9,
        "the bookkeeping event must be in the log the export reads"
    );

    for prefix in ["--stream-prefix=", "--stream-prefix=_"] {
        let exported = json_lines(&stdout(&milestone(
            &log.url,
            &["export", "--quiet", prefix],
        )));
        let streams: Vec<&str> = exported
            .iter()
            .map(|r| r["stream_id"].as_str().unwrap())
            .collect();
        assert!(
            streams.iter().all(|s| s.starts_with("order-")),
            "{prefix}: {streams:?}"
        );
        assert_eq!(exported.len(), if prefix.ends_with('_') { 0 } else { 8 });
    }
}

#[tokio::test]
async fn rebuild_replays_the_log_into_the_read_models() {
    let log = known_log().await;
    settle(&log.url, 8).await;
    let out = milestone(&log.url, &["rebuild", "order_status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 events replayed"));
    let (client, conn) = tokio_postgres::connect(&log.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let status: String = client
        .query_one(
            "select status from order_status where order_id = $1",
            &[&log.order],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "SHIPPED");
    let unknown = milestone(&log.url, &["rebuild", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("order_status"),
        "the error lists the projector's projections"
    );
}

#[tokio::test]
async fn rebuild_blue_green_switches_a_new_version_in_and_rollback_puts_the_previous_back() {
    let log = known_log().await;
    settle(&log.url, 8).await;
    let never_switched = milestone(&log.url, &["rebuild", "order_status", "--rollback"]);
    assert_eq!(never_switched.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&never_switched.stderr).contains("no previous version"),
        "{}",
        String::from_utf8_lossy(&never_switched.stderr)
    );

    let built = milestone(&log.url, &["rebuild", "order_status", "--blue-green"]);
    let said = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{said}");
    assert!(said.contains("8 events replayed"), "{said}");
    assert!(said.contains("--rollback"), "{said}");
    let (client, conn) = tokio_postgres::connect(&log.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let status = async || -> String {
        client
            .query_one(
                "select status from order_status where order_id = $1",
                &[&log.order],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(status().await, "SHIPPED");

    let rolled = milestone(&log.url, &["rebuild", "order_status", "--rollback"]);
    assert!(
        rolled.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
    assert_eq!(status().await, "SHIPPED");

    let both = milestone(
        &log.url,
        &["rebuild", "order_status", "--blue-green", "--rollback"],
    );
    assert_eq!(both.status.code(), Some(2));
    let unknown = milestone(&log.url, &["rebuild", "nope", "--blue-green"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown projection"));
}

#[test]
fn rebuild_help_tells_the_in_place_rebuild_from_the_blue_green_one() {
    let help = Command::new(env!("CARGO_BIN_EXE_milestone"))
        .args(["rebuild", "--help"])
        .output()
        .unwrap();
    let help = stdout(&help);
    for said in [
        "in place",
        "development",
        "--blue-green",
        "production",
        "--rollback",
    ] {
        assert!(help.contains(said), "{said}: {help}");
    }
}

#[tokio::test]
async fn errors_are_clear_and_leave_no_partial_file() {
    let log = known_log().await;
    let missing = milestone(&log.url, &["history", &Uuid::new_v4().to_string()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let bad_id = milestone(&log.url, &["state", "not-an-id"]);
    assert_eq!(bad_id.status.code(), Some(2));

    let down = milestone(
        "postgres://postgres:postgres@127.0.0.1:1/nothing",
        &["history", &log.order.to_string()],
    );
    assert_eq!(down.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot be reached"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );

    let bad_time = milestone(
        &log.url,
        &["state", &log.order.to_string(), "--at", "yesterday"],
    );
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("RFC 3339"));
    let beyond = milestone(&log.url, &["state", &log.order.to_string(), "--at", "99"]);
    assert_eq!(beyond.status.code(), Some(2));
    let before = milestone(
        &log.url,
        &[
            "state",
            &log.order.to_string(),
            "--at",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert!(String::from_utf8_lossy(&before.stderr).contains("did not exist yet"));
    let backwards = milestone(
        &log.url,
        &[
            "export",
            "--since",
            "2026-03-02T00:00:00Z",
            "--until",
            "2026-03-01T00:00:00Z",
        ],
    );
    assert_eq!(backwards.status.code(), Some(2));
    let bad_position = milestone(&log.url, &["export", "--after", "soon"]);
    assert_eq!(bad_position.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("no-such-dir").join("out.jsonl");
    let unwritable = milestone(
        &log.url,
        &["export", "--quiet", "--out", &target.to_string_lossy()],
    );
    assert_eq!(unwritable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unwritable.stderr).contains("cannot write"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

/// A store holding one order paid by a version 1 `PaymentAuthorized`.
async fn v1_log() -> (String, Uuid) {
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 1 })
        .await
        .unwrap();
    let id = test_support::v1_payment::order_paid_in_v1(store.as_ref()).await;
    settle(&url, 2).await;
    (url, id)
}

#[tokio::test]
async fn history_summarises_a_version_1_payment_with_its_amount() {
    let (url, id) = v1_log().await;
    let rows = json_lines(&stdout(&milestone(
        &url,
        &["history", &id.to_string(), "--json"],
    )));
    assert_eq!(rows[1]["event_type"], "PaymentAuthorized");
    assert_eq!(
        rows[1]["summary"], "payment pay-v1 authorized for 2250 EUR (minor units)",
        "{}",
        rows[1]
    );
    // The row itself shows the event as stored.
    assert_eq!(rows[1]["schema_version"], 1);
    assert_eq!(
        rows[1]["data"],
        test_support::v1_payment::payment_authorized_v1_data()
    );
}

#[tokio::test]
async fn export_writes_a_version_1_payment_in_the_current_layout() {
    let (url, _) = v1_log().await;
    let rows = json_lines(&stdout(&milestone(
        &url,
        &["export", "--quiet", "--type", "PaymentAuthorized"],
    )));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["schema_version"], 2, "{}", rows[0]);
    assert_eq!(
        rows[0]["data"],
        serde_json::json!({"payment_id": "pay-v1", "amount_minor": 2250, "currency": "EUR"})
    );
}

#[tokio::test]
async fn the_workflow_is_chosen_by_name_and_an_unknown_one_is_a_usage_error() {
    let log = known_log().await;
    let id = log.order.to_string();
    let named = json_lines(&stdout(&milestone(
        &log.url,
        &["state", &id, "--workflow", "orders", "--json"],
    )));
    assert_eq!(named[0]["status"], "SHIPPED");
    assert_eq!(named[0]["order_id"], id);
    let history = stdout(&milestone(
        &log.url,
        &["history", &id, "--workflow", "orders"],
    ));
    assert_eq!(history.lines().count(), 1 + 6);
    let exported = json_lines(&stdout(&milestone(
        &log.url,
        &["export", "--quiet", "--workflow", "orders"],
    )));
    assert_eq!(exported.len(), 8);

    for args in [
        vec!["history", id.as_str(), "--workflow", "invoices"],
        vec!["state", id.as_str(), "--workflow", "invoices"],
        vec!["export", "--quiet", "--workflow", "invoices"],
    ] {
        let unknown = milestone(&log.url, &args);
        assert_eq!(unknown.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&unknown.stderr);
        assert!(
            err.contains("unknown workflow 'invoices'") && err.contains("orders"),
            "{err}"
        );
    }
}

/// A delivered order of four SKU-9 at 2.50 EUR (placed 09:00, seven events) and its return of
/// three: requested on 3 March at 09:00, approved 09:01, received 09:02 with every item
/// accepted, refunded 750 at 09:03 (revisions 0 to 3).
async fn return_log() -> (String, Uuid) {
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 1 })
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let order = new_order(id, "analyst-c", &[("SKU-9", 4, 250)]);
    let log = Log::new(store.as_ref());
    log.at(t(9, 0)).delivered_order(order.clone()).await;
    let requested = Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0).unwrap();
    let commands = vec![
        request_return(&order, t(9, 5), requested, &[("SKU-9", 3)], "too big"),
        approve("RMA-9"),
        receive(&[("SKU-9", InspectionOutcome::Accepted)]),
        refund("rf-9", 750),
    ];
    log.at(requested).record::<Returns>(id, commands).await;
    settle(&url, 7 + 4).await;
    (url, id)
}

#[tokio::test]
async fn history_lists_a_returns_events_in_order_with_their_summaries() {
    let (url, id) = return_log().await;
    let id = id.to_string();
    let rows = json_lines(&stdout(&milestone(
        &url,
        &["history", &id, "--workflow", "returns", "--json"],
    )));
    let types = event_types(&rows);
    assert_eq!(
        types,
        [
            "ReturnRequested",
            "ReturnApproved",
            "ReturnItemsReceived",
            "RefundIssued"
        ]
    );
    assert_eq!(rows[0]["occurred_at"], "2026-03-03T09:00:00.000Z");
    assert_eq!(rows[3]["correlation_id"], format!("corr-return-{id}"));
    assert!(
        rows[3]["summary"].as_str().unwrap().contains("750"),
        "{}",
        rows[3]
    );
    let table = stdout(&milestone(&url, &["history", &id, "--workflow", "returns"]));
    assert_eq!(table.lines().count(), 1 + 4, "{table}");
    assert!(table.lines().nth(2).unwrap().contains("ReturnApproved"));
}

#[tokio::test]
async fn state_of_a_return_at_a_revision_shows_its_status_pending_actions_and_refund() {
    let (url, id) = return_log().await;
    let id = id.to_string();
    let at = |revision: &str| -> serde_json::Value {
        serde_json::from_str(&stdout(&milestone(
            &url,
            &[
                "state",
                &id,
                "--workflow",
                "returns",
                "--at",
                revision,
                "--json",
            ],
        )))
        .unwrap()
    };
    let approved = at("1");
    assert_eq!(approved["status"], "APPROVED", "{approved}");
    assert_eq!(approved["as_of_revision"], 1);
    assert_eq!(
        approved["pending_actions"],
        serde_json::json!(["RECEIVE_ITEMS"])
    );
    assert_eq!(approved["refund_due_minor"], 750);
    assert_eq!(approved["refunded_minor"], 0);
    assert_eq!(approved["currency"], "EUR");
    let refunded = at("3");
    assert_eq!(refunded["status"], "REFUNDED", "{refunded}");
    assert_eq!(refunded["pending_actions"], serde_json::json!([]));
    assert_eq!(refunded["refunded_minor"], 750);
    let text = stdout(&milestone(
        &url,
        &["state", &id, "--workflow", "returns", "--at", "2"],
    ));
    assert!(text.contains("RECEIVED"), "{text}");
    assert!(text.contains("750 EUR (minor units)"), "{text}");
    let beyond = milestone(&url, &["state", &id, "--workflow", "returns", "--at", "4"]);
    assert_eq!(beyond.status.code(), Some(2));
}

#[tokio::test]
async fn export_of_the_returns_workflow_writes_only_the_return_events() {
    let (url, id) = return_log().await;
    let rows = json_lines(&stdout(&milestone(
        &url,
        &["export", "--quiet", "--workflow", "returns"],
    )));
    assert_eq!(rows.len(), 4, "the order's seven events are left out");
    assert!(
        rows.iter()
            .all(|r| r["stream_id"] == format!("return-{id}") && r["data"].is_object()),
        "{rows:?}"
    );
    assert_eq!(rows[3]["event_type"], "RefundIssued");
    assert_eq!(
        rows[3]["data"]["amount"]["amount_minor"], 750,
        "{}",
        rows[3]
    );
}

/// An order placed by `shop-7` through the `web-shop` client, then paid with no principal
/// recorded (authentication disabled).
async fn log_with_principals() -> (String, Uuid) {
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 2 })
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let shop = event_store::Principal {
        subject: "shop-7".to_owned(),
        role: "shop".to_owned(),
        client: Some("web-shop".to_owned()),
    };
    let log = Log::new(store.as_ref()).at(t(9, 0));
    log.by(&shop).order(id, vec![place_order(id)]).await;
    log.order(id, vec![authorize("pay-1", 1000)]).await;
    (url, id)
}

#[tokio::test]
async fn history_shows_who_caused_each_event() {
    let (url, id) = log_with_principals().await;
    let table = stdout(&milestone(&url, &["history", &id.to_string()]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("principal"), "{table}");
    assert!(lines[1].contains("shop-7 (shop) via web-shop"), "{table}");
    assert!(!lines[2].contains("shop-7"), "{table}");

    let rows = json_lines(&stdout(&milestone(
        &url,
        &["history", &id.to_string(), "--json"],
    )));
    assert_eq!(
        rows[0]["principal"],
        serde_json::json!({"subject": "shop-7", "role": "shop", "client": "web-shop"})
    );
    assert!(rows[1]["principal"].is_null());
}

#[tokio::test]
async fn exports_end_each_row_with_the_principal_who_caused_the_event() {
    let (url, _) = log_with_principals().await;
    settle(&url, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();

    let rows = json_lines(&stdout(&milestone(&url, &["export", "--quiet"])));
    assert_eq!(
        (
            &rows[0]["principal_subject"],
            &rows[0]["principal_role"],
            &rows[0]["principal_client"]
        ),
        (
            &serde_json::json!("shop-7"),
            &serde_json::json!("shop"),
            &serde_json::json!("web-shop")
        )
    );
    assert!(rows[1]["principal_subject"].is_null());

    let csv_path = path("events.csv");
    stdout(&milestone(
        &url,
        &["export", "--quiet", "--format", "csv", "--out", &csv_path],
    ));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers,
        [
            "position",
            "stream_id",
            "revision",
            "event_id",
            "event_type",
            "schema_version",
            "occurred_at",
            "recorded_at",
            "correlation_id",
            "causation_id",
            "data",
            "principal_subject",
            "principal_role",
            "principal_client"
        ],
        "the earlier columns keep their order"
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        &records[0].iter().collect::<Vec<_>>()[11..],
        ["shop-7", "shop", "web-shop"]
    );
    assert_eq!(&records[1].iter().collect::<Vec<_>>()[11..], ["", "", ""]);

    let parquet_path = path("events.parquet");
    stdout(&milestone(
        &url,
        &[
            "export",
            "--quiet",
            "--format",
            "parquet",
            "--out",
            &parquet_path,
        ],
    ));
    let file = std::fs::File::open(&parquet_path).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names[names.len() - 4..],
        [
            "data",
            "principal_subject",
            "principal_role",
            "principal_client"
        ]
    );
    let column = |name: &str| -> Vec<Option<String>> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    };
    assert_eq!(
        column("principal_subject"),
        [Some("shop-7".to_owned()), None]
    );
    assert_eq!(column("principal_role"), [Some("shop".to_owned()), None]);
    assert_eq!(
        column("principal_client"),
        [Some("web-shop".to_owned()), None]
    );
}

#[test]
fn the_help_never_shows_the_passwords_of_the_urls_in_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_milestone"))
        .arg("--help")
        .env(
            "MILESTONE_EVENT_STORE_URL",
            "postgres://app:StoreSecret42@db/milestone",
        )
        .env(
            "MILESTONE_READ_MODEL_URL",
            "postgres://app:ReadSecret42@db/milestone",
        )
        .output()
        .unwrap();
    let help = stdout(&output);
    assert!(help.contains("MILESTONE_EVENT_STORE_URL"), "{help}");
    let rebuild = Command::new(env!("CARGO_BIN_EXE_milestone"))
        .args(["rebuild", "--help"])
        .env(
            "MILESTONE_READ_MODEL_URL",
            "postgres://app:ReadSecret42@db/milestone",
        )
        .output()
        .unwrap();
    let rebuild = stdout(&rebuild);
    for shown in [&help, &rebuild] {
        assert!(!shown.contains("Secret42"), "{shown}");
    }
}

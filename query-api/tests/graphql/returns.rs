//! The returns workflow on GraphQL: return cases decided by the domain, appended to the real
//! event store and kept by the real returns projection.

use crate::helpers::*;
use chrono::Utc;
use domain::*;
use event_store::Position;
use projector::returns::ReturnDeadlines;
use projector::{ReturnProjection, Runtime};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

const RETURN_FIELDS: &str = "orderId status currency reason
    lines { sku quantity unitPriceMinor refundMinor acceptedQuantity refusedQuantity } lineCount
    refundDueMinor refundAcceptedMinor refundedMinor refundId rmaNumber lastMilestone lastMilestoneAt
    pendingActions failureReason compensationsOwed compensationsDone
    milestones { requestedAt approvedAt rejectedAt receivedAt refundedAt cancelledAt shippedBackAt escalatedAt }
    deadlineAt overdue escalated escalationCount correlationId revision lastPosition
    timeline { revision eventType summary position correlationId }";

/// The returns side of a test: the returns projection's runtime over the test's databases, and
/// the token of the latest return command.
struct Returns {
    projector: Runtime<ReturnProjection>,
    last_token: std::sync::Mutex<Option<Position>>,
}

impl Returns {
    async fn start(app: &TestApp, deadlines: ReturnDeadlines) -> Self {
        let projector = Runtime::start(
            projector::Config::local(&app.url),
            ReturnProjection::new(deadlines),
        )
        .await
        .unwrap();
        Self {
            projector,
            last_token: Default::default(),
        }
    }

    /// Records a return command on the order's return case; returns its consistency token.
    async fn command(&self, app: &TestApp, order_id: Uuid, command: ReturnCommand) -> Position {
        self.record(Log::new(app.store.as_ref()), order_id, command)
            .await
    }

    /// Records a return command through `log` (e.g. as sent by a principal); returns its
    /// consistency token.
    async fn record(&self, log: Log<'_>, order_id: Uuid, command: ReturnCommand) -> Position {
        let token = log
            .record::<domain::Returns>(order_id, vec![command])
            .await
            .position()
            .expect("the command changes the return");
        let mut last = self.last_token.lock().unwrap();
        *last = (*last).max(Some(token));
        token
    }

    /// Runs the returns projection until it has applied every return command so far.
    async fn project_all(&self) {
        let Some(token) = *self.last_token.lock().unwrap() else {
            return;
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self
            .projector
            .checkpoint()
            .await
            .unwrap()
            .is_none_or(|c| c < token)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the returns projection did not reach {token}"
            );
            self.projector.run_once().await.unwrap();
        }
    }
}

/// An order placed, paid, reserved, shipped and delivered: 3 units of SKU-1 at 700 EUR cents.
async fn delivered_order(app: &TestApp) -> Uuid {
    let id = Uuid::new_v4();
    let recorded = Log::new(app.store.as_ref())
        .delivered_order(known_order(id, "cust-r"))
        .await;
    app.wrote(recorded.position().expect("the order is recorded"));
    id
}

/// Asks to return `quantity` units of SKU-1 of the delivered order `order_id`.
fn request(order_id: Uuid, quantity: i64) -> ReturnCommand {
    request_return(
        &known_order(order_id, "cust-r"),
        Utc::now(),
        Utc::now(),
        &[("SKU-1", quantity)],
        "too small",
    )
}

fn approve() -> ReturnCommand {
    test_support::log::approve("RMA-1")
}

fn receive(outcome: InspectionOutcome) -> ReturnCommand {
    test_support::log::receive(&[("SKU-1", outcome)])
}

fn cancel() -> ReturnCommand {
    cancel_return("changed my mind")
}

/// A delivered order with a return requested and then given `commands`.
async fn return_case(app: &TestApp, returns: &Returns, commands: Vec<ReturnCommand>) -> Uuid {
    let id = delivered_order(app).await;
    returns.command(app, id, request(id, 2)).await;
    for c in commands {
        returns.command(app, id, c).await;
    }
    id
}

fn default_deadlines() -> ReturnDeadlines {
    ReturnDeadlines::default()
}

#[tokio::test]
async fn a_refunded_return_reads_back_by_its_order_id_with_its_amounts_and_timeline() {
    let app = spawn_app().await;
    let returns = Returns::start(&app, default_deadlines()).await;
    let id = return_case(
        &app,
        &returns,
        vec![
            approve(),
            receive(InspectionOutcome::Accepted),
            refund("rf-1", 1400),
        ],
    )
    .await;
    returns.project_all().await;
    let body = app
        .query(
            &format!("query($id: ID!) {{ return(orderId: $id) {{ {RETURN_FIELDS} }} }}"),
            json!({"id": id}),
        )
        .await;
    let r = &body["data"]["return"];
    assert_eq!(r["orderId"], id.to_string(), "{body}");
    assert_eq!(r["status"], "REFUNDED");
    assert_eq!(r["currency"], "EUR");
    assert_eq!(r["reason"], "too small");
    assert_eq!(
        r["lines"],
        json!([{"sku": "SKU-1", "quantity": 2, "unitPriceMinor": 700, "refundMinor": 1400,
                "acceptedQuantity": 2, "refusedQuantity": 0}])
    );
    assert_eq!(r["lineCount"], 1);
    assert_eq!(r["refundDueMinor"], 1400);
    assert_eq!(r["refundAcceptedMinor"], 1400);
    assert_eq!(r["refundedMinor"], 1400);
    assert_eq!(r["refundId"], "rf-1");
    assert_eq!(r["rmaNumber"], "RMA-1");
    assert_eq!(r["lastMilestone"], "RefundIssued");
    assert_eq!(r["pendingActions"], json!([]));
    assert_eq!(r["compensationsOwed"], json!([]));
    assert!(r["milestones"]["approvedAt"].is_string());
    assert!(r["milestones"]["receivedAt"].is_string());
    assert!(r["milestones"]["refundedAt"].is_string());
    assert!(r["milestones"]["cancelledAt"].is_null());
    assert!(
        r["deadlineAt"].is_null(),
        "a refunded return waits for nothing"
    );
    assert_eq!(r["overdue"], false);
    assert_eq!(r["escalated"], false);
    assert_eq!(r["revision"], 3);
    assert_eq!(r["correlationId"], format!("corr-return-{id}"));
    let timeline: Vec<&str> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        timeline,
        [
            "ReturnRequested",
            "ReturnApproved",
            "ReturnItemsReceived",
            "RefundIssued"
        ]
    );
    assert_eq!(r["timeline"][3]["position"], r["lastPosition"]);

    let missing = app
        .query(
            "{ return(orderId: \"6a1f9a4e-0000-4000-8000-000000000000\") { status } }",
            json!({}),
        )
        .await;
    assert!(missing["data"]["return"].is_null(), "{missing}");
    assert!(missing["errors"].is_null(), "{missing}");
    let bad = app
        .query("{ return(orderId: \"nope\") { status } }", json!({}))
        .await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_return_refused_at_inspection_owes_no_refund() {
    let app = spawn_app().await;
    let returns = Returns::start(&app, default_deadlines()).await;
    let id = return_case(
        &app,
        &returns,
        vec![approve(), receive(InspectionOutcome::Refused)],
    )
    .await;
    returns.project_all().await;
    let body = app
        .query(
            "query($id: ID!) { return(orderId: $id) { status refundDueMinor refundAcceptedMinor
               refundedMinor failureReason lines { acceptedQuantity refusedQuantity } } }",
            json!({"id": id}),
        )
        .await;
    let r = &body["data"]["return"];
    assert_eq!(r["status"], "REJECTED", "{body}");
    assert_eq!(r["refundDueMinor"], 1400);
    assert_eq!(r["refundAcceptedMinor"], 0);
    assert_eq!(r["refundedMinor"], 0);
    assert_eq!(
        r["lines"],
        json!([{"acceptedQuantity": 0, "refusedQuantity": 2}])
    );
    assert_eq!(
        r["failureReason"],
        domain::returns::ALL_LINES_REFUSED,
        "{body}"
    );
}

#[tokio::test]
async fn an_order_shows_its_return_and_null_when_it_has_none() {
    let app = spawn_app().await;
    let returns = Returns::start(&app, default_deadlines()).await;
    let without = delivered_order(&app).await;
    let with = return_case(&app, &returns, vec![]).await;
    app.project_all().await;
    returns.project_all().await;
    let body = app
        .query(
            "{ orders(first: 10) { edges { node { id return { orderId status pendingActions
               timeline { eventType } } } } } }",
            json!({}),
        )
        .await;
    let edges = body["data"]["orders"]["edges"].as_array().unwrap();
    let node = |id: Uuid| {
        edges
            .iter()
            .find(|e| e["node"]["id"] == id.to_string())
            .unwrap_or_else(|| panic!("{id} missing: {body}"))["node"]
            .clone()
    };
    assert!(node(without)["return"].is_null(), "{body}");
    assert_eq!(
        node(with)["return"],
        json!({"orderId": with.to_string(), "status": "REQUESTED",
               "pendingActions": ["DECIDE_RETURN"],
               "timeline": [{"eventType": "ReturnRequested"}]})
    );
}

#[tokio::test]
async fn returns_filter_by_status_and_request_time_and_page_with_cursors() {
    let app = spawn_app().await;
    let returns = Returns::start(&app, default_deadlines()).await;
    let a = return_case(&app, &returns, vec![]).await;
    let b = return_case(&app, &returns, vec![approve()]).await;
    let c = return_case(&app, &returns, vec![]).await;
    returns.project_all().await;
    let ids = |body: &Value| -> Vec<String> {
        body["data"]["returns"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|e| e["node"]["orderId"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = "query($f: ReturnFilter, $first: Int, $after: String) {
        returns(filter: $f, first: $first, after: $after) {
          edges { cursor node { orderId } } pageInfo { hasNextPage endCursor } } }";
    assert_eq!(
        ids(&app.query(q, json!({"f": {"status": "APPROVED"}})).await),
        [b.to_string()]
    );
    assert_eq!(
        ids(&app.query(q, json!({"f": {"status": "REQUESTED"}})).await),
        [c.to_string(), a.to_string()],
        "newest request first"
    );
    let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(ids(&app.query(q, json!({"f": {"requestedFrom": future}})).await).is_empty());
    assert_eq!(
        ids(&app.query(q, json!({"f": {"requestedTo": future}})).await).len(),
        3
    );

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = app.query(q, json!({"first": 2, "after": after})).await;
        seen.extend(ids(&body));
        let page = &body["data"]["returns"]["pageInfo"];
        if page["hasNextPage"] == false {
            break;
        }
        after = Some(page["endCursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, [c.to_string(), b.to_string(), a.to_string()]);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 3);

    let bad_cursor = app.query(q, json!({"after": "nope"})).await;
    assert_eq!(error_code(&bad_cursor), "BAD_USER_INPUT");
    let too_few = app.query(q, json!({"first": 0})).await;
    assert_eq!(error_code(&too_few), "BAD_USER_INPUT");
    let too_early = app
        .query(
            q,
            json!({"f": {"requestedFrom": "-262143-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(error_code(&too_early), "BAD_USER_INPUT", "{too_early}");
    let unknown_status = app.query(q, json!({"f": {"status": "LOST"}})).await;
    assert!(unknown_status["errors"].is_array(), "{unknown_status}");
}

#[tokio::test]
async fn return_counts_stalled_returns_and_items_owed_back_answer() {
    let app = spawn_app().await;
    let deadlines = ReturnDeadlines::default().with("REQUESTED", chrono::Duration::zero());
    let returns = Returns::start(&app, deadlines).await;
    let stuck = return_case(&app, &returns, vec![]).await;
    return_case(&app, &returns, vec![approve()]).await;
    let owed = return_case(
        &app,
        &returns,
        vec![approve(), cancel(), receive(InspectionOutcome::Accepted)],
    )
    .await;
    returns.project_all().await;
    let body = app
        .query(
            "{ returnStatusCounts { status returns }
               stalledReturns { orderId overdue pendingActions } }",
            json!({}),
        )
        .await;
    let counts = body["data"]["returnStatusCounts"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    let count = |s: &str| {
        counts.iter().find(|c| c["status"] == s).unwrap()["returns"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        (
            count("REQUESTED"),
            count("APPROVED"),
            count("CANCELLED"),
            count("REFUNDED")
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(counts.len(), 6, "every status, zero included");
    let stalled = body["data"]["stalledReturns"].as_array().unwrap();
    assert_eq!(stalled.len(), 1, "{body}");
    assert_eq!(stalled[0]["orderId"], stuck.to_string());
    assert_eq!(stalled[0]["overdue"], true);
    assert_eq!(stalled[0]["pendingActions"], json!(["DECIDE_RETURN"]));

    let body = app
        .query(
            "query($id: ID!) { return(orderId: $id) { status pendingActions compensationsOwed
               compensationsDone } }",
            json!({"id": owed}),
        )
        .await;
    assert_eq!(
        body["data"]["return"],
        json!({"status": "CANCELLED", "pendingActions": ["SHIP_ITEMS_BACK"],
               "compensationsOwed": ["SHIP_ITEMS_BACK"], "compensationsDone": []}),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_carrying_a_return_commands_token_sees_that_command() {
    let app = spawn_app().await;
    let returns = Returns::start(&app, default_deadlines()).await;
    let id = delivered_order(&app).await;
    app.project_all().await;
    let live = returns.projector.clone();
    let projector = tokio::spawn(async move { live.run(std::future::pending()).await });
    returns.command(&app, id, request(id, 1)).await;
    let token = returns.command(&app, id, approve()).await;
    let (status, body) = app
        .query_with(
            "query($id: ID!) { return(orderId: $id) { status rmaNumber revision } }",
            json!({"id": id}),
            Some(&token.to_string()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["return"],
        json!({"status": "APPROVED", "rmaNumber": "RMA-1", "revision": 1}),
        "{body}"
    );
    assert_eq!(body["extensions"]["consistency"]["reached"], true);
    assert_eq!(body["extensions"]["consistency"]["stale"], false);
    projector.abort();
}

#[tokio::test]
async fn each_return_timeline_entry_shows_the_principal_who_caused_it_or_null() {
    let app = spawn_app().await;
    let returns = Returns::start(&app, default_deadlines()).await;
    let id = delivered_order(&app).await;
    let customer = event_store::Principal {
        subject: "cust-r".to_owned(),
        role: "customer".to_owned(),
        client: Some("mobile-app".to_owned()),
    };
    let log = Log::new(app.store.as_ref());
    returns.record(log.by(&customer), id, request(id, 2)).await;
    returns.record(log, id, approve()).await;
    returns.project_all().await;

    let body = app
        .query(
            "query($id: ID!) { return(orderId: $id) { timeline { eventType principal { subject role client } } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        body["data"]["return"]["timeline"],
        json!([
            {"eventType": "ReturnRequested",
             "principal": {"subject": "cust-r", "role": "customer", "client": "mobile-app"}},
            {"eventType": "ReturnApproved", "principal": null},
        ]),
        "{body}"
    );
}

//! The reconciler as a real process beside the other services, the relay and a real
//! `nats-server`: an order whose payment never answers is reminded K times, each reminder going
//! out once as the payment's work request again, then escalated once, and a reconciler killed
//! mid-way and started again records (and so sends) no attempt twice.

use crate::integration::{jetstream, stored_messages, stream};
use crate::stack::*;
use relay::nats_server::NatsServer;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const K: usize = 3;

/// Deadlines and spacing in seconds, so the whole chase takes a few.
fn settings() -> Vec<(&'static str, String)> {
    vec![
        ("MILESTONE_DEADLINE_PLACED_SECS", "2".to_owned()),
        ("MILESTONE_REMINDER_SPACING_SECS", "1".to_owned()),
    ]
}

fn reconciler_settings() -> Vec<(&'static str, String)> {
    let mut s = settings();
    s.push(("MILESTONE_RECONCILER_INTERVAL_MS", "200".to_owned()));
    s.push(("MILESTONE_RECONCILER_MAX_REMINDERS", K.to_string()));
    s.push(("MILESTONE_RECONCILER_LEASE_TTL_MS", "1000".to_owned()));
    s
}

/// The order's events of `event_type`, in order: their data.
async fn recorded(stack: &Stack, order: &str, event_type: &str) -> Vec<Value> {
    let (client, conn) = tokio_postgres::connect(&stack.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query(
            "select data from es_events where stream_id = $1 and event_type = $2 order by revision",
            &[&format!("order-{order}"), &event_type],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn wait_for(stack: &Stack, order: &str, event_type: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorded(stack, order, event_type).await.len() < count {
        assert!(
            Instant::now() < deadline,
            "{event_type} x{count} was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn graphql(stack: &Stack, query: &str) -> Value {
    stack
        .http
        .post(format!("{}/graphql", stack.queries))
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_nobody_pays_gets_k_reminder_work_requests_then_one_escalation_even_across_a_reconciler_crash(
) {
    let stack = Stack::start_with(&settings()).await;
    let nats = NatsServer::start();
    let _relay = stack.relay(&nats.url(), &[]);
    let js = jetstream(&nats.url()).await;
    stream(&js).await;
    let (status, placed) = stack.command("/orders", order_body()).await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["order_id"].as_str().unwrap().to_owned();
    // The stock answers; the payment service never does.
    let (status, _) = stack
        .command(
            &format!("/orders/{id}/inventory-reserved"),
            json!({"reservation_id": "res-1"}),
        )
        .await;
    assert_eq!(status, 200);

    let mut reconciler = stack.start_reconciler(&reconciler_settings());
    // kill -9 as soon as each reminder but the last is recorded, possibly mid-run, and start
    // another at once.
    for n in 1..K {
        wait_for(&stack, &id, "OrderReminded", n).await;
        reconciler.kill();
        reconciler = stack.start_reconciler(&reconciler_settings());
    }
    wait_for(&stack, &id, "OrderEscalated", 1).await;
    // Runs keep going every 200 ms: nothing more is due for this order.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let attempts: Vec<Value> = (2..2 + K)
        .map(|attempt| json!({"action": "AUTHORIZE_PAYMENT", "attempt": attempt}))
        .collect();
    assert_eq!(recorded(&stack, &id, "OrderReminded").await, attempts);
    let escalations = recorded(&stack, &id, "OrderEscalated").await;
    assert_eq!(escalations.len(), 1, "{escalations:?}");
    assert_eq!(
        escalations[0]["reason"],
        format!("AUTHORIZE_PAYMENT unanswered after {K} reminder(s)")
    );

    let query = format!(
        r#"{{ order(id: "{id}") {{ status pendingActions reminderAttempts lastReminderAt
            nextReminderAt escalated escalationCount milestones {{ escalatedAt }}
            timeline {{ eventType summary }} }} }}"#
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let order = loop {
        let body = graphql(&stack, &query).await;
        let order = body["data"]["order"].clone();
        if order["escalated"] == true {
            break order;
        }
        assert!(
            Instant::now() < deadline,
            "not escalated in GraphQL: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(order["status"], "PLACED");
    assert_eq!(order["pendingActions"], json!(["AUTHORIZE_PAYMENT"]));
    assert_eq!(order["reminderAttempts"], K);
    assert!(order["lastReminderAt"].is_string());
    assert!(
        order["nextReminderAt"].is_null(),
        "an escalated step is not chased again"
    );
    assert_eq!(order["escalationCount"], 1);
    assert!(order["milestones"]["escalatedAt"].is_string());
    let chase: Vec<&str> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .filter(|t| *t == "OrderReminded" || *t == "OrderEscalated")
        .collect();
    let mut expected = vec!["OrderReminded"; K];
    expected.push("OrderEscalated");
    assert_eq!(chase, expected);
    // What left on JetStream for this order: the payment's work request attempts 1..=K+1, each
    // once with its own message id, and one public escalation.
    let deadline = Instant::now() + Duration::from_secs(15);
    let messages = loop {
        let messages: Vec<(String, String, Value)> = stored_messages(&js)
            .await
            .into_iter()
            .filter(|(_, _, body)| body["subject"] == id.as_str())
            .collect();
        if messages
            .iter()
            .any(|(s, _, _)| s == "milestone.order.escalated")
        {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "the escalation was not published: {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let payments: Vec<&(String, String, Value)> = messages
        .iter()
        .filter(|(s, _, _)| s == "milestone.order.work.authorize-payment")
        .collect();
    let attempts: Vec<&Value> = payments
        .iter()
        .map(|(_, _, b)| &b["data"]["attempt"])
        .collect();
    let expected: Vec<usize> = (1..=K + 1).collect();
    assert_eq!(attempts, expected, "each attempt once, in order");
    let ids: HashSet<&str> = payments.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), K + 1, "a message id twice");
    let escalations: Vec<&Value> = messages
        .iter()
        .filter(|(s, _, _)| s == "milestone.order.escalated")
        .map(|(_, _, b)| &b["data"])
        .collect();
    assert_eq!(escalations.len(), 1, "{escalations:?}");
    assert_eq!(
        escalations[0]["reason"],
        format!("AUTHORIZE_PAYMENT unanswered after {K} reminder(s)")
    );
    assert_eq!(
        messages.last().map(|(s, _, _)| s.as_str()),
        Some("milestone.order.escalated"),
        "nothing is sent after the escalation"
    );
}

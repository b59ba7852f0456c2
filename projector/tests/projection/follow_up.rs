//! The follow-up columns every status table has: reminders, the last one's time, and when the
//! reconciler next chases the instance.

use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use domain::*;
use projector::returns::ReturnDeadlines;
use projector::{ReturnProjection, Runtime};
use uuid::Uuid;

fn time(row: &serde_json::Value, column: &str) -> Option<DateTime<Utc>> {
    row[column]
        .as_str()
        .map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

fn remind(action: PendingAction, attempt: u32) -> OrderCommand {
    OrderCommand::RecordReminder { action, attempt }
}

fn escalate() -> OrderCommand {
    OrderCommand::EscalateOrder {
        reason: reason("payment service silent"),
    }
}

#[tokio::test]
async fn an_unanswered_order_is_first_chased_at_its_deadline() {
    let env = env().await;
    let id = Uuid::new_v4();
    Log::new(env.store.as_ref())
        .at(t0())
        .order(id, vec![place(id)])
        .await;
    project(&env.projector, 1).await;

    let r = row(&env.projector, id).await;
    assert_eq!(r["reminder_attempts"], 0);
    assert!(r["last_reminder_at"].is_null());
    assert_eq!(time(&r, "next_reminder_at"), time(&r, "deadline_at"));
    assert_eq!(time(&r, "deadline_at"), Some(t0() + Duration::minutes(30)));
}

#[tokio::test]
async fn reminders_count_their_attempts_and_space_the_next_one_until_the_step_is_escalated() {
    let env = env().await;
    let id = Uuid::new_v4();
    // Each command a minute after the previous one, from t0.
    Log::new(env.store.as_ref())
        .at(t0())
        .order(
            id,
            vec![
                place(id),
                remind(PendingAction::AuthorizePayment, 2),
                remind(PendingAction::ReserveInventory, 2),
                remind(PendingAction::AuthorizePayment, 3),
            ],
        )
        .await;
    project(&env.projector, 4).await;

    let r = row(&env.projector, id).await;
    assert_eq!(r["reminder_attempts"], 2);
    assert_eq!(
        time(&r, "last_reminder_at"),
        Some(t0() + Duration::minutes(3))
    );
    assert_eq!(
        time(&r, "next_reminder_at"),
        Some(t0() + Duration::minutes(3) + Duration::minutes(15)),
        "the default spacing is 15 minutes"
    );

    Log::new(env.store.as_ref())
        .at(t0() + Duration::minutes(20))
        .order(id, vec![escalate()])
        .await;
    project(&env.projector, 1).await;
    let r = row(&env.projector, id).await;
    assert!(
        r["next_reminder_at"].is_null(),
        "an escalated step is not chased again"
    );
    assert_eq!(r["escalation_count"], 1);
    assert_eq!(r["reminder_attempts"], 2);

    let client = env.projector.pool().get().await.unwrap();
    let summaries: Vec<String> = client
        .query(
            "select summary from order_timeline where order_id = $1 and event_type = 'OrderReminded' order by revision",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        summaries,
        [
            "reminder: AUTHORIZE_PAYMENT, attempt 2",
            "reminder: RESERVE_INVENTORY, attempt 2",
            "reminder: AUTHORIZE_PAYMENT, attempt 3",
        ]
    );
}

#[tokio::test]
async fn a_new_step_starts_the_follow_up_again() {
    let env = env().await;
    let id = Uuid::new_v4();
    Log::new(env.store.as_ref())
        .at(t0())
        .order(
            id,
            vec![
                place(id),
                remind(PendingAction::AuthorizePayment, 2),
                escalate(),
                authorize("pay-1", TOTAL),
                reserve("res-1"),
            ],
        )
        .await;
    project(&env.projector, 6).await;

    let r = row(&env.projector, id).await;
    assert_eq!(r["status"], "ACCEPTED");
    assert_eq!(r["reminder_attempts"], 0);
    assert_eq!(
        time(&r, "last_reminder_at"),
        Some(t0() + Duration::minutes(1))
    );
    assert_eq!(time(&r, "next_reminder_at"), time(&r, "deadline_at"));
}

#[tokio::test]
async fn a_return_has_the_same_follow_up_columns() {
    let url = test_support::fresh_database().await;
    let returns = Runtime::start(
        config(&url),
        ReturnProjection::new(ReturnDeadlines::default())
            .with_reminder_spacing(Duration::seconds(40)),
    )
    .await
    .unwrap();
    let store = event_store::connect(&url, &event_store::StoreOptions { pool_size: 2 })
        .await
        .unwrap();
    let id = Uuid::new_v4();
    Log::new(store.as_ref())
        .at(t0())
        .record::<Returns>(
            id,
            vec![
                request_return(
                    &order(id),
                    t0() - Duration::days(3),
                    t0(),
                    &[("A", 1)],
                    "does not fit",
                ),
                ReturnCommand::RecordReminder {
                    action: ReturnAction::DecideReturn,
                    attempt: 2,
                },
            ],
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut applied = 0;
    while applied < 2 && std::time::Instant::now() < deadline {
        applied += returns.run_once().await.unwrap();
    }
    let client = returns.pool().get().await.unwrap();
    let r: serde_json::Value = client
        .query_one(
            "select to_jsonb(s) from return_status s where order_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(r["reminder_attempts"], 1);
    assert_eq!(
        time(&r, "last_reminder_at"),
        Some(t0() + Duration::minutes(1))
    );
    assert_eq!(
        time(&r, "next_reminder_at"),
        Some(t0() + Duration::minutes(1) + Duration::seconds(40))
    );
}

//! Reminders and escalations: the escalate route escalates a step once, and the pipeline records
//! a reminder once per attempt with the causation its caller names.

use crate::helpers::*;
use command_api::service::{execute, CommandContext};
use domain::{OrderCommand, OrderId, PendingAction};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn escalating_the_same_step_twice_records_one_escalation() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    let body = json!({"reason": "payment service silent"});

    let first = app.action(&id, "escalate", body.clone()).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["events"], json!(["OrderEscalated"]));
    let second = app.action(&id, "escalate", body).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body["events"], json!([]));

    let escalations = app
        .stream(&id)
        .await
        .iter()
        .filter(|e| e.event_type == "OrderEscalated")
        .count();
    assert_eq!(escalations, 1);
}

fn run(causation: &str, correlation: &str) -> CommandContext {
    CommandContext {
        idempotency_key: None,
        if_match: None,
        correlation_id: correlation.to_owned(),
        request_hash: None,
        causation_id: Some(causation.to_owned()),
        principal: None,
    }
}

#[tokio::test]
async fn a_reminder_is_recorded_once_per_attempt_caused_by_the_run_that_recorded_it() {
    let app = spawn_app().await;
    let id = app.placed_order().await;
    let order = OrderId::new(Uuid::parse_str(&id).unwrap());
    let remind = |attempt| OrderCommand::RecordReminder {
        action: PendingAction::AuthorizePayment,
        attempt,
    };

    let first = execute(
        app.store.as_ref(),
        order,
        remind(2),
        &run("run-1", "corr-of-the-order"),
    )
    .await
    .unwrap();
    assert_eq!(first.outcome.events, ["OrderReminded"]);
    // A run that crashed before seeing its answer records the same attempt again: nothing.
    let again = execute(
        app.store.as_ref(),
        order,
        remind(2),
        &run("run-2", "corr-of-the-order"),
    )
    .await
    .unwrap();
    assert!(again.outcome.events.is_empty());
    let skipped = execute(
        app.store.as_ref(),
        order,
        remind(4),
        &run("run-2", "corr-of-the-order"),
    )
    .await
    .unwrap_err();
    assert_eq!(actix_web::ResponseError::status_code(&skipped), 409);

    let reminders: Vec<_> = app
        .stream(&id)
        .await
        .into_iter()
        .filter(|e| e.event_type == "OrderReminded")
        .collect();
    assert_eq!(reminders.len(), 1);
    assert_eq!(
        reminders[0].data,
        json!({"action": "AUTHORIZE_PAYMENT", "attempt": 2})
    );
    assert_eq!(reminders[0].metadata.causation_id.as_deref(), Some("run-1"));
    assert_eq!(
        reminders[0].metadata.correlation_id.as_deref(),
        Some("corr-of-the-order")
    );
}

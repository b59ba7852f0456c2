use crate::helpers::*;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Every scalar field of `Order`, with the `order_status` column it comes from.
const SCALARS: &[(&str, &str)] = &[
    ("customerId", "customer_id"),
    ("currency", "currency"),
    ("totalMinor", "total_minor"),
    ("lastMilestone", "last_milestone"),
    ("failureReason", "failure_reason"),
    ("paymentId", "payment_id"),
    ("reservationId", "reservation_id"),
    ("carrier", "carrier"),
    ("trackingNumber", "tracking_number"),
    ("escalationCount", "escalation_count"),
    ("escalationReason", "escalation_reason"),
    ("correlationId", "correlation_id"),
    ("revision", "stream_revision"),
    ("lastPosition", "last_position"),
];

/// Every moment `Order` exposes, with its column.
const MOMENTS: &[(&str, &str)] = &[
    ("lastMilestoneAt", "last_milestone_at"),
    ("deadlineAt", "deadline_at"),
    ("milestones.placedAt", "placed_at"),
    ("milestones.paymentAuthorizedAt", "payment_authorized_at"),
    ("milestones.inventoryReservedAt", "inventory_reserved_at"),
    ("milestones.acceptedAt", "accepted_at"),
    ("milestones.rejectedAt", "rejected_at"),
    ("milestones.fulfillmentStartedAt", "fulfillment_started_at"),
    ("milestones.shippedAt", "shipped_at"),
    ("milestones.deliveredAt", "delivered_at"),
    ("milestones.cancelledAt", "cancelled_at"),
    ("milestones.paymentVoidedAt", "payment_voided_at"),
    ("milestones.inventoryReleasedAt", "inventory_released_at"),
    ("milestones.escalatedAt", "escalated_at"),
];

const LABELS: &[(&str, &str)] = &[
    ("pendingActions", "pending_actions"),
    ("compensationsOwed", "compensations_owed"),
    ("compensationsDone", "compensations_done"),
];

fn field<'a>(order: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(order, |v, key| &v[key])
}

/// The value of `column` in `row`, as JSON, whatever its type.
fn column_json(row: &tokio_postgres::Row, column: &str) -> Value {
    if let Ok(v) = row.try_get::<_, Option<String>>(column) {
        return json!(v);
    }
    if let Ok(v) = row.try_get::<_, i64>(column) {
        return json!(v);
    }
    if let Ok(v) = row.try_get::<_, i32>(column) {
        return json!(v);
    }
    panic!("column {column} is neither text nor an integer");
}

#[tokio::test]
async fn every_order_field_shows_the_column_of_the_same_name_in_the_read_model() {
    let app = spawn_app().await;
    let id = app
        .order(
            "cust-named",
            vec![
                authorize("pay-1", TOTAL),
                reserve("res-1"),
                cancel_order("changed my mind"),
            ],
        )
        .await;
    app.project_all().await;
    let moments: Vec<&str> = MOMENTS.iter().map(|(f, _)| *f).collect();
    let selection = SCALARS
        .iter()
        .chain(LABELS)
        .map(|(f, _)| *f)
        .chain(moments.iter().filter(|f| !f.contains('.')).copied())
        .collect::<Vec<_>>()
        .join(" ");
    let milestones = moments
        .iter()
        .filter_map(|f| f.strip_prefix("milestones."))
        .collect::<Vec<_>>()
        .join(" ");
    let body = app
        .query(
            &format!(
                "query($id: ID!) {{ order(id: $id) {{ id status overdue {selection} milestones {{ {milestones} }} }} }}"
            ),
            json!({ "id": id }),
        )
        .await;
    let order = &body["data"]["order"];
    assert!(order.is_object(), "{body}");

    let row = app
        .database()
        .await
        .query_one(
            "select *, coalesce(deadline_at < now(), false) as overdue_now from order_status where order_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        order["id"],
        row.get::<_, uuid::Uuid>("order_id").to_string()
    );
    assert_eq!(order["status"], row.get::<_, String>("status"));
    assert_eq!(order["overdue"], row.get::<_, bool>("overdue_now"));
    for (graphql, column) in SCALARS {
        assert_eq!(
            field(order, graphql),
            &column_json(&row, column),
            "{graphql} should show {column}"
        );
    }
    for (graphql, column) in LABELS {
        assert_eq!(
            field(order, graphql),
            &json!(row.get::<_, Vec<String>>(column)),
            "{graphql} should show {column}"
        );
    }
    for (graphql, column) in MOMENTS {
        let shown = field(order, graphql)
            .as_str()
            .map(|t| t.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(
            shown,
            row.get::<_, Option<DateTime<Utc>>>(column),
            "{graphql} should show {column}"
        );
    }
    // The order went through enough to tell the columns apart.
    assert_eq!(order["status"], "CANCELLED", "{body}");
    assert!(order["milestones"]["cancelledAt"].is_string(), "{body}");
    assert!(order["milestones"]["shippedAt"].is_null(), "{body}");
}

#[tokio::test]
async fn a_status_the_domain_does_not_know_is_an_error_with_a_code_not_a_guess() {
    let app = spawn_app().await;
    let id = app.order("cust-odd", vec![]).await;
    app.project_all().await;
    app.database()
        .await
        .execute(
            "update order_status set status = 'ARCHIVED' where order_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let body = app
        .query(
            "query($id: ID!) { order(id: $id) { id status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), "READ_MODEL_INVALID", "{body}");
    assert!(body["data"]["order"].is_null(), "{body}");
}

#[tokio::test]
async fn a_pending_action_the_domain_does_not_know_is_an_error_with_a_code() {
    let app = spawn_app().await;
    let id = app.order("cust-odd", vec![]).await;
    app.project_all().await;
    app.database()
        .await
        .execute(
            "update order_status set pending_actions = array['WAIT_FOR_GODOT'] where order_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let body = app
        .query(
            "{ orders { edges { node { id pendingActions } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "READ_MODEL_INVALID", "{body}");
}

#[tokio::test]
async fn the_projection_lag_is_measured_on_the_event_store_even_apart_from_the_read_models() {
    let app = spawn_with(Options {
        separate_read_models: true,
        ..Options::default()
    })
    .await;
    let first = app.order("cust-lag", vec![]).await;
    app.project_all().await;
    app.command(first, authorize("pay-1", TOTAL)).await;
    app.order("cust-lag", vec![]).await;
    // An append shows in the log once every older transaction of the cluster has ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let body = app
            .query(
                "{ projectionStatus { eventsApplied lagEvents lagSeconds } }",
                json!({}),
            )
            .await;
        let status = body["data"]["projectionStatus"].clone();
        if status["lagEvents"] == 2 || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status["eventsApplied"], 1, "{status}");
    assert_eq!(status["lagEvents"], 2, "{status}");
    assert!(
        status["lagSeconds"].as_f64().is_some_and(|s| s >= 0.0),
        "{status}"
    );

    app.project_all().await;
    let body = app
        .query("{ projectionStatus { lagEvents lagSeconds } }", json!({}))
        .await;
    assert_eq!(body["data"]["projectionStatus"]["lagEvents"], 0, "{body}");
    assert_eq!(
        body["data"]["projectionStatus"]["lagSeconds"], 0.0,
        "{body}"
    );
}

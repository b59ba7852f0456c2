use crate::helpers::*;
use domain::OrderCommand;
use serde_json::{json, Value};
use std::collections::HashSet;

const ORDER_FIELDS: &str = "id status customerId currency totalMinor lines { sku quantity unitPriceMinor totalMinor }
    shippingAddress { name line1 line2 city postalCode country } lastMilestone lastMilestoneAt pendingActions
    failureReason compensationsOwed compensationsDone paymentId reservationId carrier trackingNumber
    milestones { placedAt paymentAuthorizedAt inventoryReservedAt acceptedAt shippedAt cancelledAt }
    deadlineAt overdue escalated escalationCount correlationId revision lastPosition
    timeline { revision eventType summary position correlationId causationId }";

#[tokio::test]
async fn an_order_reads_back_with_every_field_and_its_timeline() {
    let app = spawn_app().await;
    let id = app
        .order(
            "cust-1",
            vec![
                authorize("pay-1", TOTAL),
                reserve("res-1"),
                OrderCommand::StartFulfillment,
            ],
        )
        .await;
    app.project_all().await;
    let body = app
        .query(
            &format!("query($id: ID!) {{ order(id: $id) {{ {ORDER_FIELDS} }} }}"),
            json!({"id": id}),
        )
        .await;
    let o = &body["data"]["order"];
    assert_eq!(o["id"], id.to_string(), "{body}");
    assert_eq!(o["status"], "IN_FULFILLMENT");
    assert_eq!(o["customerId"], "cust-1");
    assert_eq!(o["totalMinor"], 2100);
    assert_eq!(
        o["lines"],
        json!([{"sku": "SKU-1", "quantity": 3, "unitPriceMinor": 700, "totalMinor": 2100}])
    );
    assert_eq!(o["shippingAddress"]["line2"], "Flat 2");
    assert_eq!(o["pendingActions"], json!(["SHIP"]));
    assert_eq!(o["paymentId"], "pay-1");
    assert_eq!(o["lastMilestone"], "FulfillmentStarted");
    assert!(o["milestones"]["acceptedAt"].is_string());
    assert!(o["milestones"]["shippedAt"].is_null());
    assert_eq!(o["overdue"], false);
    assert!(o["deadlineAt"].is_string());
    assert_eq!(o["revision"], 4);
    assert_eq!(o["correlationId"], format!("corr-{id}"));
    let timeline: Vec<&str> = o["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        timeline,
        [
            "OrderPlaced",
            "PaymentAuthorized",
            "InventoryReserved",
            "OrderAccepted",
            "FulfillmentStarted"
        ]
    );

    let missing = app
        .query(
            "{ order(id: \"6a1f9a4e-0000-4000-8000-000000000000\") { id } }",
            json!({}),
        )
        .await;
    assert!(missing["data"]["order"].is_null());
    let bad = app.query("{ order(id: \"nope\") { id } }", json!({})).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
}

#[tokio::test]
async fn orders_filter_by_status_customer_and_placement_time() {
    let app = spawn_app().await;
    let a = app.order("alice", vec![]).await;
    let b = app
        .order("bob", vec![authorize("pay-1", TOTAL), reserve("res-1")])
        .await;
    let c = app.order("alice", vec![cancel_order("no")]).await;
    app.project_all().await;
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["data"]["orders"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = "query($f: OrderFilter) { orders(filter: $f, first: 10) { edges { node { id } } } }";
    assert_eq!(
        ids(&app.query(q, json!({"f": {"status": "ACCEPTED"}})).await),
        [b.to_string()]
    );
    assert_eq!(
        ids(&app.query(q, json!({"f": {"customerId": "alice"}})).await),
        [c.to_string(), a.to_string()],
        "newest first"
    );
    assert_eq!(
        ids(&app
            .query(q, json!({"f": {"customerId": "alice", "status": "PLACED"}}))
            .await),
        [a.to_string()]
    );
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(ids(&app.query(q, json!({"f": {"placedFrom": future}})).await).is_empty());
    assert_eq!(
        ids(&app.query(q, json!({"f": {"placedTo": future}})).await).len(),
        3
    );
    assert!(ids(&app.query(q, json!({"f": {"overdue": true}})).await).is_empty());
}

#[tokio::test]
async fn pages_of_orders_cover_every_order_once() {
    let app = spawn_app().await;
    let mut all = HashSet::new();
    for i in 0..23 {
        all.insert(app.order(&format!("c{}", i % 3), vec![]).await.to_string());
    }
    app.project_all().await;
    let q = "query($after: String) { orders(first: 5, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let (mut seen, mut after, mut pages) = (Vec::new(), serde_json::Value::Null, 0);
    loop {
        let body = app.query(q, json!({"after": after})).await;
        let page = &body["data"]["orders"];
        for e in page["edges"].as_array().unwrap() {
            seen.push(e["node"]["id"].as_str().unwrap().to_owned());
        }
        pages += 1;
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23, "no repeats");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), all, "no gaps");
    let bad = app.query(q, json!({"after": "garbage"})).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
}

#[tokio::test]
async fn counts_stalled_orders_and_projection_status_answer() {
    let app = spawn_with(Options {
        deadlines: projector::Deadlines {
            placed: chrono::Duration::zero(),
            ..projector::Deadlines::default()
        },
        ..Options::default()
    })
    .await;
    let stuck = app.order("c", vec![]).await;
    app.order("c", vec![authorize("pay-1", TOTAL), reserve("res-1")])
        .await;
    app.project_all().await;
    let body = app
        .query(
            "{ statusCounts { status orders } stalledOrders { id overdue pendingActions }
               projectionStatus { checkpoint eventsApplied lagEvents lagSeconds deadLetters parkedOrders } }",
            json!({}),
        )
        .await;
    let counts = body["data"]["statusCounts"].as_array().unwrap();
    let count = |s: &str| {
        counts.iter().find(|c| c["status"] == s).unwrap()["orders"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        (count("PLACED"), count("ACCEPTED"), count("DELIVERED")),
        (1, 1, 0)
    );
    let stalled = body["data"]["stalledOrders"].as_array().unwrap();
    assert_eq!(stalled.len(), 1, "{body}");
    assert_eq!(stalled[0]["id"], stuck.to_string());
    assert_eq!(stalled[0]["overdue"], true);
    let p = &body["data"]["projectionStatus"];
    assert_eq!(p["eventsApplied"], 5);
    assert_eq!(p["lagEvents"], 0);
    assert_eq!(p["deadLetters"], 0);
    assert_eq!(
        p["checkpoint"],
        app.projector
            .checkpoint()
            .await
            .unwrap()
            .unwrap()
            .to_string()
    );
}

/// A cursor as this API writes them, around any moment and id.
fn cursor_at(micros: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{micros}|{}", uuid::Uuid::new_v4()))
}

#[tokio::test]
async fn arguments_the_database_cannot_hold_are_bad_input_naming_the_argument() {
    let app = spawn_app().await;
    app.order("alice", vec![]).await;
    app.project_all().await;
    let q = "query($f: OrderFilter, $after: String) { orders(filter: $f, first: 5, after: $after) { edges { node { id } } } }";
    let earliest = chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp_micros();
    let mut wrong = Vec::new();
    for (variables, argument) in [
        (json!({"f": {"customerId": "ali\u{0}ce"}}), "customerId"),
        (json!({"after": cursor_at(earliest)}), "after"),
        (
            json!({"f": {"placedFrom": "-10000-01-01T00:00:00Z"}}),
            "placedFrom",
        ),
        (
            json!({"f": {"placedTo": "-10000-01-01T00:00:00Z"}}),
            "placedTo",
        ),
    ] {
        let body = app.query(q, variables.clone()).await;
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        if error_code(&body) != "BAD_USER_INPUT" || !message.contains(argument) {
            wrong.push(format!("{variables}: {body}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let fine = app
        .query(
            q,
            json!({"f": {"customerId": "alice"}, "after": cursor_at(0)}),
        )
        .await;
    assert!(fine["errors"].is_null(), "{fine}");
}

/// The projector commits an order's next event (row and timeline entry in one transaction)
/// after the query has read the row but before it reads the timeline: a lock on the timeline
/// holds the query between the two, and the commit is written here by hand under that lock.
#[tokio::test]
async fn an_order_and_its_timeline_are_read_at_the_same_revision() {
    let app = spawn_app().await;
    let id = app.order("c", vec![]).await;
    app.project_all().await;

    let mut projector_tx = app.database().await;
    let tx = projector_tx.transaction().await.unwrap();
    tx.batch_execute("lock table order_timeline in access exclusive mode")
        .await
        .unwrap();
    let query = {
        let (client, address) = (app.client.clone(), app.address.clone());
        tokio::spawn(async move {
            client
                .post(format!("{address}/graphql"))
                .json(&json!({
                    "query": "query($id: ID!) { order(id: $id) { revision timeline { revision } } }",
                    "variables": {"id": id},
                }))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    let observer = app.database().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = observer
            .query_one(
                "select count(*) from pg_locks l join pg_class c on c.oid = l.relation
                 where c.relname = 'order_timeline' and not l.granted
                   and l.database = (select oid from pg_database where datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the query never reached the timeline"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tx.batch_execute(&format!(
        "insert into order_timeline (order_id, revision, event_type, occurred_at, recorded_at, position, event_id, summary)
           values ('{id}', 1, 'PaymentAuthorized', now(), now(), '999999999-1', gen_random_uuid(), 'payment authorized');
         update order_status set stream_revision = 1, payment_id = 'pay-1' where order_id = '{id}'"
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let body = query.await.unwrap();
    let order = &body["data"]["order"];
    let timeline: Vec<i64> = order["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(
        timeline.last().copied(),
        order["revision"].as_i64(),
        "{body}"
    );
}

#[tokio::test]
async fn an_order_shows_its_reminder_attempts_last_reminder_and_next_reminder() {
    let app = spawn_app().await;
    let remind = |action, attempt| OrderCommand::RecordReminder { action, attempt };
    let id = app
        .order(
            "cust-chased",
            vec![
                remind(domain::PendingAction::AuthorizePayment, 2),
                remind(domain::PendingAction::AuthorizePayment, 3),
            ],
        )
        .await;
    let quiet = app.order("cust-quiet", vec![]).await;
    app.project_all().await;
    let q = "query($id: ID!) { order(id: $id) { reminderAttempts lastReminderAt nextReminderAt deadlineAt timeline { eventType summary } } }";

    let chased = &app.query(q, json!({"id": id})).await["data"]["order"];
    assert_eq!(chased["reminderAttempts"], 2);
    let last: chrono::DateTime<chrono::Utc> =
        chased["lastReminderAt"].as_str().unwrap().parse().unwrap();
    let next: chrono::DateTime<chrono::Utc> =
        chased["nextReminderAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(next - last, chrono::Duration::minutes(15));
    let reminders: Vec<&Value> = chased["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["eventType"] == "OrderReminded")
        .map(|e| &e["summary"])
        .collect();
    assert_eq!(
        reminders,
        [
            "reminder: AUTHORIZE_PAYMENT, attempt 2",
            "reminder: AUTHORIZE_PAYMENT, attempt 3"
        ]
    );

    let quiet = &app.query(q, json!({"id": quiet})).await["data"]["order"];
    assert_eq!(quiet["reminderAttempts"], 0);
    assert!(quiet["lastReminderAt"].is_null());
    assert_eq!(quiet["nextReminderAt"], quiet["deadlineAt"]);
}

#[tokio::test]
async fn each_order_timeline_entry_shows_the_principal_who_caused_it_or_null() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();
    let shop = event_store::Principal {
        subject: "shop-7".to_owned(),
        role: "shop".to_owned(),
        client: None,
    };
    let payment = event_store::Principal {
        subject: "psp-1".to_owned(),
        role: "payment".to_owned(),
        client: Some("psp-gateway".to_owned()),
    };
    let log = Log::new(app.store.as_ref());
    log.by(&shop).order(id, vec![place(id, "cust-1")]).await;
    log.by(&payment)
        .order(id, vec![authorize("pay-1", TOTAL)])
        .await;
    app.command(id, reserve("res-1")).await;
    app.project_all().await;

    let body = app
        .query(
            "query($id: ID!) { order(id: $id) { timeline { eventType principal { subject role client } } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        body["data"]["order"]["timeline"],
        json!([
            {"eventType": "OrderPlaced",
             "principal": {"subject": "shop-7", "role": "shop", "client": null}},
            {"eventType": "PaymentAuthorized",
             "principal": {"subject": "psp-1", "role": "payment", "client": "psp-gateway"}},
            {"eventType": "InventoryReserved", "principal": null},
            {"eventType": "OrderAccepted", "principal": null},
        ]),
        "{body}"
    );
}

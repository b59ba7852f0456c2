use crate::helpers::*;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_requests_with_one_key_place_one_order() {
    let app = Arc::new(spawn_app().await);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.send(
                    app.post("/orders")
                        .header("Idempotency-Key", "race-1")
                        .json(&order_body()),
                )
                .await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    assert!(replies.iter().all(|r| r.status == 201), "{replies:?}");
    let id = replies[0].body["order_id"].as_str().unwrap().to_owned();
    assert!(replies.iter().all(|r| r.body == replies[0].body));
    // One request placed the order; every other one says it is a replay of that one.
    let fresh = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1, "{fresh} replies claim to have placed the order");
    assert_eq!(types(&app.stream(&id).await), ["OrderPlaced"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_conflicting_milestones_record_exactly_one() {
    let app = Arc::new(spawn_app().await);
    let id = app.placed_order().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move {
                app.action(&id, "payment-authorized", payment(&format!("pay-{i}")))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let reply = t.await.unwrap();
        match reply.status {
            200 => ok += 1,
            409 => assert_eq!(reply.code(), "payment_already_authorized", "{reply:?}"),
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_eq!(ok, 1);
    let events = app.stream(&id).await;
    assert_eq!(types(&events), ["OrderPlaced", "PaymentAuthorized"]);
    let next = app
        .action(&id, "inventory-reserved", json!({"reservation_id": "r"}))
        .await;
    assert_eq!(
        next.body["status"], "ACCEPTED",
        "the stream stays consistent"
    );
}

/// Sends `requests` at once and returns the replies in the same order.
async fn all_at_once(
    app: &Arc<TestApp>,
    requests: Vec<(String, &'static str, serde_json::Value)>,
) -> Vec<Reply> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(path, key, body)| {
            let app = app.clone();
            tokio::spawn(async move { app.keyed(&path, key, body).await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_identical_keyed_refusals_at_once_give_one_answer_and_keep_it() {
    let app = Arc::new(spawn_app().await);
    let id = app.placed_order().await;
    let path = format!("/orders/{id}/start-fulfillment");
    let replies = all_at_once(&app, vec![(path.clone(), "start", json!({})); 20]).await;
    assert!(replies.iter().all(|r| r.status == 409), "{replies:?}");
    assert!(replies.iter().all(|r| r.text == replies[0].text));
    let fresh = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1, "{fresh} replies claim to be the original");

    app.action(&id, "payment-authorized", payment("pay-1"))
        .await;
    app.action(&id, "inventory-reserved", json!({"reservation_id": "r1"}))
        .await;
    let again = app.keyed(&path, "start", json!({})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.text, replies[0].text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_sent_at_once_with_a_refused_and_an_allowed_body_answers_only_one_of_them() {
    let app = Arc::new(spawn_app().await);
    let id = app.placed_order().await;
    let refused = format!("/orders/{id}/start-fulfillment");
    let allowed = format!("/orders/{id}/payment-authorized");
    let requests = (0..20)
        .map(|i| match i % 2 {
            0 => (refused.clone(), "shared", json!({})),
            _ => (allowed.clone(), "shared", payment("pay-1")),
        })
        .collect();
    let replies = all_at_once(&app, requests).await;
    let (starts, payments): (Vec<_>, Vec<_>) =
        replies.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let statuses = |rs: &[(usize, &Reply)]| rs.iter().map(|(_, r)| r.status).collect::<Vec<_>>();
    let paid = types(&app.stream(&id).await).contains(&"PaymentAuthorized");
    if paid {
        assert!(statuses(&payments).iter().all(|&s| s == 200), "{replies:?}");
        assert!(statuses(&starts).iter().all(|&s| s == 422), "{replies:?}");
    } else {
        assert!(statuses(&starts).iter().all(|&s| s == 409), "{replies:?}");
        assert!(statuses(&payments).iter().all(|&s| s == 422), "{replies:?}");
    }
    let answered: Vec<&Reply> = replies.iter().filter(|r| r.status != 422).collect();
    assert!(answered.iter().all(|r| r.text == answered[0].text));
    let again = app
        .keyed(
            if paid { &allowed } else { &refused },
            "shared",
            if paid { payment("pay-1") } else { json!({}) },
        )
        .await;
    assert_eq!(
        again.text, answered[0].text,
        "a later retry gets the same answer"
    );
    assert!(types(&app.stream(&id).await).len() <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_refusal_racing_the_change_that_would_allow_it_keeps_its_first_answer() {
    for round in 0..5 {
        let app = Arc::new(spawn_app().await);
        let id = app.placed_order().await;
        app.action(&id, "payment-authorized", payment("pay-1"))
            .await;
        let start = format!("/orders/{id}/start-fulfillment");
        let reserve = format!("/orders/{id}/inventory-reserved");
        let replies = all_at_once(
            &app,
            vec![
                (start.clone(), "start", json!({})),
                (reserve, "reserve", json!({"reservation_id": "r1"})),
            ],
        )
        .await;
        let first = &replies[0];
        assert!(
            [200, 409].contains(&first.status),
            "round {round}: {first:?}"
        );
        let again = app.keyed(&start, "start", json!({})).await;
        assert_eq!(again.status, first.status, "round {round}");
        assert_eq!(again.text, first.text, "round {round}");
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        let started = types(&app.stream(&id).await)
            .iter()
            .filter(|t| **t == "FulfillmentStarted")
            .count();
        assert_eq!(started, usize::from(first.status == 200), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_re_report_racing_later_events_keeps_its_first_answer() {
    for round in 0..5 {
        let app = Arc::new(spawn_app().await);
        let id = app.placed_order().await;
        app.action(&id, "payment-authorized", payment("pay-1"))
            .await;
        let again_path = format!("/orders/{id}/payment-authorized");
        let replies = all_at_once(
            &app,
            vec![
                (again_path.clone(), "again", payment("pay-1")),
                (
                    format!("/orders/{id}/inventory-reserved"),
                    "reserve",
                    json!({"reservation_id": "r1"}),
                ),
            ],
        )
        .await;
        let first = &replies[0];
        assert_eq!(first.status, 200, "round {round}: {first:?}");
        assert_eq!(first.body["events"], json!([]));
        app.action(&id, "start-fulfillment", json!({})).await;
        let again = app.keyed(&again_path, "again", payment("pay-1")).await;
        assert_eq!(again.text, first.text, "round {round}");
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
}

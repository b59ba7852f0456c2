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

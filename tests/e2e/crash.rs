use crate::stack::*;
use serde_json::json;
use std::time::Duration;

async fn place_and_pay(stack: &Stack, n: usize) -> String {
    let mut last = String::new();
    for _ in 0..n {
        let (status, placed) = stack.command("/orders", order_body()).await;
        assert_eq!(status, 201);
        let id = placed["order_id"].as_str().unwrap();
        let (_, paid) = stack
            .command(
                &format!("/orders/{id}/payment-authorized"),
                json!({"payment_id": "p", "amount_minor": TOTAL, "currency": "EUR"}),
            )
            .await;
        last = token(&paid);
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_projector_mid_stream_then_restarting_it_equals_a_clean_replay() {
    let mut stack = Stack::start().await;
    place_and_pay(&stack, 10).await;
    // kill -9 while commands keep arriving.
    let writer = {
        let commands = stack.commands.clone();
        let http = stack.http.clone();
        tokio::spawn(async move {
            for _ in 0..30 {
                let r = http
                    .post(format!("{commands}/orders"))
                    .json(&order_body())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    stack.projectors[0].kill();
    writer.await.unwrap();
    let last = place_and_pay(&stack, 5).await;
    stack.start_projector();
    let body = stack
        .query_fresh("{ statusCounts { status orders } }", &last)
        .await;
    let total: i64 = body["data"]["statusCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["orders"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 45, "every order exactly once: {body}");
    let incremental = stack.dump().await;

    for p in &mut stack.projectors {
        p.kill();
    }
    stack.rebuild();
    assert_eq!(
        stack.dump().await,
        incremental,
        "the read models equal a clean replay of the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_projector_takes_over_when_the_active_one_dies() {
    let mut stack = Stack::start().await;
    let first = place_and_pay(&stack, 3).await;
    stack
        .query_fresh("{ statusCounts { orders } }", &first)
        .await;
    // The first projector is active (it has been applying); the second waits.
    stack.start_projector();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.projectors[0].kill();
    let after = place_and_pay(&stack, 3).await;
    let body = stack
        .query_fresh(
            "{ projectionStatus { eventsApplied parkedOrders } }",
            &after,
        )
        .await;
    assert_eq!(body["data"]["projectionStatus"]["eventsApplied"], 12);
}

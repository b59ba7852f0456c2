//! Authentication and authorisation of every GraphQL root field, generated from the schema's
//! introspection: no token is 401 `UNAUTHENTICATED`, a role without the field's scope
//! `FORBIDDEN`, a role with it gets past both; the same over the websocket, whose
//! `connection_init` carries the token. A customer never sees another customer's order.

use crate::helpers::*;
use crate::subscriber::{Protocol, Said, Subscriber};
use serde_json::{json, Value};
use service_kit::auth::Role;
use std::time::Duration;
use test_support::auth::TestIdentity;
use uuid::Uuid;

/// The root fields a customer may use (narrowed to their own orders and returns); every other
/// root field spans every customer.
const CUSTOMER_FIELDS: [&str; 9] = [
    "order",
    "orderTimeline",
    "orders",
    "return",
    "returns",
    "orderUpdated",
    "ordersChanged",
    "returnUpdated",
    "returnsChanged",
];

async fn checking() -> (TestIdentity, TestApp) {
    let identity = TestIdentity::new();
    let app = spawn_with(Options {
        auth: identity.config(),
        ..Options::default()
    })
    .await;
    (identity, app)
}

/// Every field of the root type `kind` (`queryType`, `subscriptionType`, `mutationType`) as an
/// operation
/// selecting only `__typename`, its required arguments given an unknown order's id.
async fn root_fields(app: &TestApp, identity: &TestIdentity, kind: &str) -> Vec<(String, String)> {
    let (status, body) = app
        .query_as(
            &format!(
                "{{ __schema {{ {kind} {{ fields {{ name args {{ name type {{ kind }} }} }} }} }} }}"
            ),
            json!({}),
            Some(&identity.token(Role::Support)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let operation = kind.trim_end_matches("Type");
    let id = Uuid::new_v4();
    let fields = body["data"]["__schema"][kind]["fields"].as_array().unwrap();
    assert!(!fields.is_empty(), "{body}");
    fields
        .iter()
        .map(|field| {
            let name = field["name"].as_str().unwrap().to_owned();
            let args: Vec<String> = field["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["type"]["kind"] == "NON_NULL")
                .map(|a| format!("{}: \"{id}\"", a["name"].as_str().unwrap()))
                .collect();
            let args = if args.is_empty() {
                String::new()
            } else {
                format!("({})", args.join(", "))
            };
            let text = format!("{operation} {{ {name}{args} {{ __typename }} }}");
            (name, text)
        })
        .collect()
}

fn codes(errors: &Value) -> Vec<String> {
    errors
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn may_use(role: Role, field: &str) -> bool {
    match role {
        Role::Support | Role::Analyst => true,
        Role::Customer => CUSTOMER_FIELDS.contains(&field),
        _ => false,
    }
}

#[tokio::test]
async fn every_query_field_is_401_without_a_token_forbidden_without_its_scope_and_served_with_it() {
    let (identity, app) = checking().await;
    for (field, query) in root_fields(&app, &identity, "queryType").await {
        let (status, body) = app.query_as(&query, json!({}), None).await;
        assert_eq!(status, 401, "{field} without a token: {body}");
        assert_eq!(
            codes(&body["errors"]),
            ["UNAUTHENTICATED"],
            "{field}: {body}"
        );
        for role in Role::ALL {
            let (status, body) = app
                .query_as(&query, json!({}), Some(&identity.token(role)))
                .await;
            let codes = codes(&body["errors"]);
            if may_use(role, &field) {
                assert_eq!(status, 200, "{field} as {role}: {body}");
                assert!(
                    !codes
                        .iter()
                        .any(|c| c == "FORBIDDEN" || c == "UNAUTHENTICATED"),
                    "{field} as {role}: {body}"
                );
            } else {
                assert_eq!(codes, ["FORBIDDEN"], "{field} as {role}: {body}");
            }
        }
    }
}

#[tokio::test]
async fn every_mutation_is_401_without_a_token_forbidden_without_its_scope_and_served_with_it() {
    let (identity, app) = checking().await;
    let mutations = root_fields(&app, &identity, "mutationType").await;
    assert!(mutations.iter().any(|(field, _)| field == "retryParked"));
    for (field, mutation) in mutations {
        let (status, body) = app.query_as(&mutation, json!({}), None).await;
        assert_eq!(status, 401, "{field} without a token: {body}");
        assert_eq!(
            codes(&body["errors"]),
            ["UNAUTHENTICATED"],
            "{field}: {body}"
        );
        for role in Role::ALL {
            let (_, body) = app
                .query_as(&mutation, json!({}), Some(&identity.token(role)))
                .await;
            let codes = codes(&body["errors"]);
            if role == Role::Support {
                // Served: an unknown order is not parked.
                assert_eq!(codes, ["NOT_PARKED"], "{field} as {role}: {body}");
            } else {
                assert_eq!(codes, ["FORBIDDEN"], "{field} as {role}: {body}");
            }
        }
    }
}

#[tokio::test]
async fn every_subscription_field_needs_a_token_at_connection_init_and_its_scope() {
    let (identity, app) = checking().await;
    for payload in [json!({}), json!({"Authorization": "Bearer not-a-token"})] {
        let mut subscriber = Subscriber::open(&app.address, Protocol::TransportWs).await;
        assert!(
            subscriber.init_with(payload.clone()).await.is_err(),
            "connection_init with {payload} was accepted"
        );
    }
    for (field, subscription) in root_fields(&app, &identity, "subscriptionType").await {
        for role in Role::ALL {
            let mut subscriber =
                Subscriber::connect_as(&app.address, Protocol::TransportWs, &identity.token(role))
                    .await;
            subscriber.subscribe("1", &subscription, json!({})).await;
            if may_use(role, &field) {
                // Served: whatever it answers (the returns' tables are not in this app's read
                // models), it is not a refusal.
                let said =
                    tokio::time::timeout(Duration::from_millis(300), subscriber.next()).await;
                if let Ok(Said::Errors(errors)) = said {
                    let codes = codes(&errors);
                    assert!(
                        !codes
                            .iter()
                            .any(|c| c == "FORBIDDEN" || c == "UNAUTHENTICATED"),
                        "{field} as {role}: {errors}"
                    );
                }
            } else {
                match subscriber.next().await {
                    Said::Errors(errors) => {
                        assert_eq!(codes(&errors), ["FORBIDDEN"], "{field} as {role}: {errors}")
                    }
                    other => panic!("{field} as {role}: expected FORBIDDEN, got {other:?}"),
                }
            }
            subscriber.close().await;
        }
    }
}

const ORDER: &str = "query($id: ID!) {
    order(id: $id) { id customerId timeline { eventType } }
    orderTimeline(id: $id) { eventType }
}";

const ORDERS: &str = "query($filter: OrderFilter) {
    orders(filter: $filter, first: 50) { edges { node { id customerId } } }
}";

#[tokio::test]
async fn a_customer_reads_only_their_own_orders_and_timelines() {
    let (identity, app) = checking().await;
    let own = app.order("customer-1", vec![]).await;
    let other = app
        .order("customer-2", vec![authorize("pay-1", TOTAL)])
        .await;
    app.project_all().await;
    let token = identity.customer_token("customer-1");

    let (_, body) = app.query_as(ORDER, json!({"id": own}), Some(&token)).await;
    assert_eq!(body["data"]["order"]["customerId"], "customer-1", "{body}");
    assert_eq!(body["data"]["orderTimeline"][0]["eventType"], "OrderPlaced");

    let (_, body) = app
        .query_as(ORDER, json!({"id": other}), Some(&token))
        .await;
    assert_eq!(body["data"]["order"], Value::Null, "{body}");
    assert_eq!(body["data"]["orderTimeline"], json!([]), "{body}");

    for filter in [json!(null), json!({"customerId": "customer-2"})] {
        let (_, body) = app
            .query_as(ORDERS, json!({"filter": filter}), Some(&token))
            .await;
        assert!(body["errors"].is_null(), "{body}");
        let customers: Vec<&Value> = body["data"]["orders"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["node"]["customerId"])
            .collect();
        assert!(customers.iter().all(|c| *c == "customer-1"), "{body}");
    }
    let (_, body) = app.query_as(ORDERS, json!({}), Some(&token)).await;
    assert_eq!(body["data"]["orders"]["edges"].as_array().unwrap().len(), 1);

    // Support sees both.
    let (_, body) = app
        .query_as(ORDERS, json!({}), Some(&identity.token(Role::Support)))
        .await;
    assert_eq!(body["data"]["orders"]["edges"].as_array().unwrap().len(), 2);
}

const WATCH: &str = "subscription($id: ID!) {
    orderUpdated(id: $id) { order { id customerId } }
}";

const WATCH_LIST: &str = "subscription {
    ordersChanged { order { id customerId } }
}";

#[tokio::test]
async fn a_customer_subscribed_to_orders_sees_changes_of_their_own_only() {
    let (identity, app) = checking().await;
    let own = app.order("customer-1", vec![]).await;
    let other = app.order("customer-2", vec![]).await;
    app.project_all().await;
    let token = identity.customer_token("customer-1");
    let mut subscriber = Subscriber::connect_as(&app.address, Protocol::TransportWs, &token).await;
    subscriber
        .subscribe("other", WATCH, json!({"id": other}))
        .await;
    subscriber.subscribe("list", WATCH_LIST, json!({})).await;
    subscriber.subscribe("own", WATCH, json!({"id": own})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The other customer's order changes first, then the customer's own.
    app.command(other, authorize("pay-1", TOTAL)).await;
    app.project_all().await;
    app.command(own, authorize("pay-2", TOTAL)).await;
    app.project_all().await;

    let mut seen = Vec::new();
    for _ in 0..2 {
        let data = subscriber.data().await;
        let id = subscriber.last_id.clone().unwrap();
        let order = data
            .get("orderUpdated")
            .or_else(|| data.get("ordersChanged"))
            .unwrap()["order"]
            .clone();
        assert_eq!(order["customerId"], "customer-1", "{id}: {data}");
        seen.push(id);
    }
    seen.sort();
    assert_eq!(seen, ["list", "own"]);
    assert!(subscriber.stays_quiet(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn a_websocket_is_closed_when_the_token_it_was_opened_with_expires() {
    let identity = TestIdentity::new();
    let service_kit::auth::AuthConfig::Jwt(mut jwt) = identity.config() else {
        unreachable!("a test identity checks tokens")
    };
    jwt.clock_skew = Duration::ZERO;
    let app = spawn_with(Options {
        auth: service_kit::auth::AuthConfig::Jwt(jwt),
        ..Options::default()
    })
    .await;
    let mut claims = identity.claims(Role::Support);
    claims.exp = Some(service_kit::auth::dev::now() + 2);
    let short = identity.signer().sign(&claims);
    let mut expiring = Subscriber::connect_as(&app.address, Protocol::TransportWs, &short).await;
    let mut lasting = Subscriber::connect_as(
        &app.address,
        Protocol::TransportWs,
        &identity.token(Role::Support),
    )
    .await;
    let opened = std::time::Instant::now();
    expiring
        .subscribe("1", WATCH, json!({"id": Uuid::new_v4()}))
        .await;
    // Nothing happens to that order: the next thing said is the close, once the token expired
    // (1-2 s from now, `exp` being in whole seconds).
    let said = tokio::time::timeout(Duration::from_secs(10), expiring.next())
        .await
        .expect("the connection is closed within 10 s");
    assert!(matches!(said, Said::Closed), "{said:?}");
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before its token expired",
        opened.elapsed()
    );
    // The connection whose token is still valid is served on.
    lasting
        .subscribe("1", WATCH, json!({"id": "not-an-id"}))
        .await;
    assert!(matches!(lasting.next().await, Said::Errors(_)));
}

//! Authentication and authorisation of every command route, generated from the OpenAPI
//! document the API serves: no token is 401, a role without the route's scope 403, a role with
//! it gets past both. Bad tokens of every kind are 401 and append nothing.

use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use service_kit::auth::dev::{now, Signer};
use service_kit::auth::{Role, Scope};
use test_support::auth::TestIdentity;

/// Every command operation of the served document: its path (ids filled in) and the scope
/// its security requirement names.
async fn operations(app: &TestApp) -> Vec<(String, Scope)> {
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let operation = &item["post"];
        let scopes = operation["security"][0]["bearer"]
            .as_array()
            .unwrap_or_else(|| panic!("POST {path} has no bearer security requirement"));
        assert_eq!(scopes.len(), 1, "POST {path}: {scopes:?}");
        let scope = Scope::ALL
            .into_iter()
            .find(|s| scopes[0] == s.as_str())
            .unwrap_or_else(|| panic!("POST {path} names an unknown scope {scopes:?}"));
        for status in ["401", "403"] {
            assert!(
                operation["responses"].get(status).is_some(),
                "POST {path} does not document {status}"
            );
        }
        operations.push((path.replace("{order_id}", &id), scope));
    }
    assert!(operations.len() >= 20, "{operations:?}");
    operations
}

async fn post(app: &TestApp, path: &str, token: Option<&str>) -> Reply {
    let mut request = app.post(path).json(&json!({}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    app.send(request).await
}

#[tokio::test]
async fn every_command_route_is_401_without_a_token_403_without_its_scope_and_served_with_it() {
    let identity = TestIdentity::new();
    let app = spawn_app_checking(&identity).await;
    for (path, scope) in operations(&app).await {
        let reply = post(&app, &path, None).await;
        assert_eq!(reply.status, 401, "POST {path} without a token: {reply:?}");
        assert_eq!(reply.code(), "unauthenticated");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        for role in Role::ALL {
            let reply = post(&app, &path, Some(&identity.token(role))).await;
            if role.scopes().contains(&scope) {
                assert!(
                    ![401, 403].contains(&reply.status),
                    "POST {path} as {role} (has {scope}): {reply:?}"
                );
            } else {
                assert_eq!(
                    reply.status, 403,
                    "POST {path} as {role} (lacks {scope}): {reply:?}"
                );
                assert_eq!(reply.code(), "forbidden");
                assert!(reply.body["detail"]
                    .as_str()
                    .unwrap()
                    .contains(scope.as_str()));
            }
        }
    }
    assert_eq!(app.store.head_position().await.unwrap(), None);
}

#[tokio::test]
async fn the_shop_places_an_order_with_its_token() {
    let identity = TestIdentity::new();
    let app = spawn_app_checking(&identity).await;
    let reply = app
        .send(
            app.post("/orders")
                .bearer_auth(identity.token(Role::Shop))
                .json(&order_body()),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

#[tokio::test]
async fn health_and_the_openapi_document_need_no_token() {
    let identity = TestIdentity::new();
    let app = spawn_app_checking(&identity).await;
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_401_and_append_nothing() {
    let identity = TestIdentity::new();
    let app = spawn_app_checking(&identity).await;
    let signer = identity.signer();
    let claims = || identity.claims(Role::Shop);
    let kid = signer.kid.clone().unwrap();

    let mut expired = claims();
    expired.exp = Some(now() - 3600);
    let mut not_yet_valid = claims();
    not_yet_valid.nbf = Some(now() + 3600);
    let mut wrong_issuer = claims();
    wrong_issuer.iss = Some("https://someone-else.example".to_owned());
    let mut wrong_audience = claims();
    wrong_audience.aud = Some("another-api".to_owned());
    let mut unknown_kid = identity.signer();
    unknown_kid.kid = Some("unknown-key".to_owned());
    let mut no_kid = identity.signer();
    no_kid.kid = None;
    let mut forged = TestIdentity::new().signer();
    forged.kid = Some(kid.clone());
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims()).unwrap())
    );
    let public_key_as_secret =
        Signer::hmac(&kid, identity.jwks()["keys"][0].to_string().as_bytes()).sign(&claims());

    let attacks = [
        ("expired", signer.sign(&expired)),
        ("not yet valid", signer.sign(&not_yet_valid)),
        ("wrong issuer", signer.sign(&wrong_issuer)),
        ("wrong audience", signer.sign(&wrong_audience)),
        ("unknown kid", unknown_kid.sign(&claims())),
        ("no kid", no_kid.sign(&claims())),
        ("bad signature", forged.sign(&claims())),
        ("alg none", unsigned),
        ("HS256 with the public key", public_key_as_secret),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (attack, token) in attacks {
        let reply = app
            .send(app.post("/orders").bearer_auth(&token).json(&order_body()))
            .await;
        assert_eq!(reply.status, 401, "{attack}: {reply:?}");
        assert_eq!(reply.code(), "unauthenticated", "{attack}");
    }
    assert_eq!(
        app.store.head_position().await.unwrap(),
        None,
        "a refused request appended events"
    );
}

//! Bearer tokens against a key set: what verifies and the ways a token is refused, with RS256
//! and ES256 keys; the key set from a file or a URL (fetched again, at most once per interval,
//! for a key not seen yet); and the configuration a service starts with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use service_kit::auth::dev::{now, Signer, TokenClaims, DEV_AUDIENCE, DEV_ISSUER};
use service_kit::auth::{
    AuthConfig, AuthConfigError, AuthError, Authenticator, Caller, JwksSource, JwtConfig, Role,
    Scope,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::auth::TestIdentity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RSA_KEY_DER: &[u8] = include_bytes!("fixtures/rsa-test-key.der");
const RSA_KEY_N: &str = include_str!("fixtures/rsa-test-key.n");
const RSA_KID: &str = "rsa-test";

fn rsa_jwk() -> serde_json::Value {
    serde_json::json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": RSA_KID,
        "n": RSA_KEY_N.trim(), "e": "AQAB"
    })
}

/// An authenticator trusting `identity`'s key and the RSA test key, from a file.
fn authenticator(identity: &TestIdentity, dir: &tempfile::TempDir) -> Authenticator {
    let mut jwks = identity.jwks();
    jwks["keys"].as_array_mut().unwrap().push(rsa_jwk());
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    Authenticator::new(&config(JwksSource::File(path))).unwrap()
}

fn config(jwks: JwksSource) -> AuthConfig {
    AuthConfig::Jwt(JwtConfig {
        jwks,
        issuer: DEV_ISSUER.to_owned(),
        audience: DEV_AUDIENCE.to_owned(),
        clock_skew: Duration::from_secs(30),
        refresh_interval: Duration::from_secs(60),
        max_age: Duration::from_secs(300),
    })
}

struct Setup {
    identity: TestIdentity,
    auth: Authenticator,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let identity = TestIdentity::new();
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticator(&identity, &dir);
    Setup {
        identity,
        auth,
        _dir: dir,
    }
}

async fn refusal(auth: &Authenticator, token: &str) -> AuthError {
    auth.verify(token)
        .await
        .expect_err("the token must be refused")
}

#[tokio::test]
async fn an_es256_token_names_its_subject_role_and_client() {
    let s = setup();
    let mut claims = s.identity.claims(Role::Payment);
    claims.azp = Some("payments-gateway".to_owned());
    let caller = s
        .auth
        .verify(&s.identity.signer().sign(&claims))
        .await
        .unwrap();
    assert_eq!(
        caller,
        Caller {
            subject: "test-payment".to_owned(),
            role: Some(Role::Payment),
            client: Some("payments-gateway".to_owned()),
            customer_id: None,
            // Its `exp` plus the 30 s of clock skew allowed.
            expires_at: Some(std::time::UNIX_EPOCH + Duration::from_secs(claims.exp.unwrap() + 30)),
        }
    );
    assert!(caller.allows(Scope::ReportPayments));
    assert!(!caller.allows(Scope::PlaceOrders));
}

#[tokio::test]
async fn an_rs256_token_is_accepted() {
    let s = setup();
    let token = Signer::rsa(RSA_KID, RSA_KEY_DER).sign(&s.identity.claims(Role::Shop));
    assert_eq!(s.auth.verify(&token).await.unwrap().role, Some(Role::Shop));
}

#[tokio::test]
async fn a_customer_token_carries_its_customer_id_and_one_without_it_is_refused() {
    let s = setup();
    let caller = s
        .auth
        .verify(&s.identity.customer_token("c-7"))
        .await
        .unwrap();
    assert_eq!(caller.customer_id.as_deref(), Some("c-7"));
    let token = s.identity.signer().sign(&s.identity.claims(Role::Customer));
    assert!(matches!(
        refusal(&s.auth, &token).await,
        AuthError::MissingCustomer
    ));
}

#[tokio::test]
async fn an_expired_token_is_refused_beyond_the_clock_skew_and_accepted_within_it() {
    let s = setup();
    let mut claims = s.identity.claims(Role::Shop);
    claims.exp = Some(now() - 120);
    let e = refusal(&s.auth, &s.identity.signer().sign(&claims)).await;
    assert_eq!(e.to_string(), "the token has expired");
    assert!(!e.is_forbidden());
    claims.exp = Some(now() - 10);
    assert!(s
        .auth
        .verify(&s.identity.signer().sign(&claims))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let s = setup();
    let mut claims = s.identity.claims(Role::Shop);
    // Within the 30 s clock skew for about one more second.
    claims.exp = Some(now() - 29);
    let token = s.identity.signer().sign(&claims);
    assert!(s.auth.verify(&token).await.is_ok());
    assert!(
        s.auth.verify(&token).await.is_ok(),
        "verified again from memory"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = refusal(&s.auth, &token).await;
    assert_eq!(e.to_string(), "the token has expired");
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let s = setup();
    let mut claims = s.identity.claims(Role::Shop);
    claims.nbf = Some(now() + 300);
    let e = refusal(&s.auth, &s.identity.signer().sign(&claims)).await;
    assert_eq!(e.to_string(), "the token is not valid yet (nbf)");
}

#[tokio::test]
async fn a_token_without_an_expiry_is_refused() {
    let s = setup();
    let mut claims = s.identity.claims(Role::Shop);
    claims.exp = None;
    let e = refusal(&s.auth, &s.identity.signer().sign(&claims)).await;
    assert_eq!(e.to_string(), "the token has no `exp` claim");
}

#[tokio::test]
async fn a_token_of_another_issuer_is_refused() {
    let s = setup();
    let mut claims = s.identity.claims(Role::Shop);
    claims.iss = Some("https://evil.example".to_owned());
    let e = refusal(&s.auth, &s.identity.signer().sign(&claims)).await;
    assert_eq!(e.to_string(), "the token's issuer is not the one trusted");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let s = setup();
    let mut claims = s.identity.claims(Role::Shop);
    claims.aud = Some("another-api".to_owned());
    let e = refusal(&s.auth, &s.identity.signer().sign(&claims)).await;
    assert_eq!(e.to_string(), "the token is not meant for this audience");
}

#[tokio::test]
async fn a_token_naming_an_unknown_key_is_refused() {
    let s = setup();
    let mut signer = s.identity.signer();
    signer.kid = Some("not-in-the-set".to_owned());
    let e = refusal(&s.auth, &signer.sign(&s.identity.claims(Role::Shop))).await;
    assert!(
        matches!(e, AuthError::UnknownKey(ref kid) if kid == "not-in-the-set"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_token_naming_no_key_is_refused() {
    let s = setup();
    let mut signer = s.identity.signer();
    signer.kid = None;
    let e = refusal(&s.auth, &signer.sign(&s.identity.claims(Role::Shop))).await;
    assert!(matches!(e, AuthError::MissingKeyId), "{e:?}");
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_known_kid_is_refused() {
    let s = setup();
    let other = TestIdentity::new();
    let mut signer = other.signer();
    signer.kid = s.identity.signer().kid;
    let e = refusal(&s.auth, &signer.sign(&s.identity.claims(Role::Shop))).await;
    assert_eq!(e.to_string(), "the token's signature does not verify");
}

/// `header.payload.` with the header and claims given, and no signature.
fn unsigned(header: serde_json::Value, claims: &TokenClaims) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).unwrap())
    )
}

#[tokio::test]
async fn an_unsigned_token_with_alg_none_is_refused() {
    let s = setup();
    let kid = s.identity.signer().kid.unwrap();
    for alg in ["none", "None", "NONE"] {
        let token = unsigned(
            serde_json::json!({ "alg": alg, "typ": "JWT", "kid": kid }),
            &s.identity.claims(Role::Support),
        );
        let e = refusal(&s.auth, &token).await;
        assert!(matches!(e, AuthError::Malformed(_)), "{alg}: {e:?}");
    }
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_public_key_as_its_secret_is_refused() {
    let s = setup();
    let jwks = s.identity.jwks();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    // Whatever form of the public key an attacker tries as the HMAC secret.
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let rsa_public = rsa_jwk().to_string();
    for secret in [jwks.to_string(), jwks["keys"][0].to_string(), x, rsa_public] {
        for kid in [kid.as_str(), RSA_KID] {
            let token =
                Signer::hmac(kid, secret.as_bytes()).sign(&s.identity.claims(Role::Support));
            let e = refusal(&s.auth, &token).await;
            assert!(matches!(e, AuthError::Algorithm(_)), "{e:?}");
        }
    }
}

#[tokio::test]
async fn a_token_signed_with_rs256_under_an_ec_key_id_is_refused() {
    let s = setup();
    let mut signer = Signer::rsa(RSA_KID, RSA_KEY_DER);
    signer.kid = s.identity.signer().kid;
    let e = refusal(&s.auth, &signer.sign(&s.identity.claims(Role::Shop))).await;
    assert!(matches!(e, AuthError::KeyMismatch { .. }), "{e:?}");
}

#[tokio::test]
async fn a_token_of_an_unknown_role_is_forbidden_not_unauthenticated() {
    let s = setup();
    let token = s
        .identity
        .signer()
        .sign(&s.identity.claims(Role::Shop).with_role("admin"));
    let e = refusal(&s.auth, &token).await;
    assert!(e.is_forbidden(), "{e:?}");
    assert_eq!(e.to_string(), "the role `admin` is not known");
}

#[tokio::test]
async fn garbage_and_headers_that_are_not_bearer_tokens_are_refused() {
    let s = setup();
    for header in ["Basic dXNlcjpwYXNz", "Bearer ", "Token abc"] {
        let e = s.auth.authenticate(Some(header)).await.unwrap_err();
        assert!(matches!(e, AuthError::NotBearer), "{header}: {e:?}");
    }
    let e = s
        .auth
        .authenticate(Some("Bearer not.a.jwt"))
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Malformed(_)), "{e:?}");
    assert!(s.auth.authenticate(None).await.unwrap().is_none());
}

/// A key set served over HTTP on 127.0.0.1, counting the fetches; `keys` can be changed.
struct JwksServer {
    url: String,
    fetches: Arc<AtomicUsize>,
    keys: Arc<Mutex<serde_json::Value>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_jwks(keys: serde_json::Value) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let fetches = Arc::new(AtomicUsize::new(0));
    let keys = Arc::new(Mutex::new(keys));
    let (count, served) = (Arc::clone(&fetches), Arc::clone(&keys));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            count.fetch_add(1, Ordering::SeqCst);
            let body = served.lock().unwrap().to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    JwksServer {
        url,
        fetches,
        keys,
        task,
    }
}

#[tokio::test]
async fn a_key_set_url_is_fetched_at_start_and_again_for_a_new_key_at_most_once_per_interval() {
    let old = TestIdentity::new();
    let rotated = TestIdentity::new();
    let server = serve_jwks(old.jwks()).await;
    let auth = Authenticator::new(&config(JwksSource::Url(server.url.clone()))).unwrap();
    auth.start().await;
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    assert!(auth.verify(&old.token(Role::Shop)).await.is_ok());
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "a known key needs no fetch"
    );

    // The provider rotates its key; the first token of the new key is not served until the
    // interval since the last fetch has passed, and unknown keys never fetch more often.
    *server.keys.lock().unwrap() = rotated.jwks();
    for _ in 0..5 {
        let e = auth.verify(&rotated.token(Role::Shop)).await.unwrap_err();
        assert!(matches!(e, AuthError::UnknownKey(_)), "{e:?}");
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    *server.keys.lock().unwrap() = old.jwks();
    let auth = Authenticator::new(&fetching_at_will(&server)).unwrap();
    auth.start().await;
    *server.keys.lock().unwrap() = rotated.jwks();
    assert!(auth.verify(&rotated.token(Role::Shop)).await.is_ok());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 3);
}

/// Settings that fetch `server`'s key set whenever a token names a key not seen yet.
fn fetching_at_will(server: &JwksServer) -> AuthConfig {
    AuthConfig::Jwt(JwtConfig {
        refresh_interval: Duration::ZERO,
        ..match config(JwksSource::Url(server.url.clone())) {
            AuthConfig::Jwt(c) => c,
            AuthConfig::Disabled => unreachable!(),
        }
    })
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_its_key_is_gone_from_the_key_set() {
    let old = TestIdentity::new();
    let rotated = TestIdentity::new();
    let server = serve_jwks(old.jwks()).await;
    let auth = Authenticator::new(&fetching_at_will(&server)).unwrap();
    auth.start().await;
    let token = old.token(Role::Shop);
    assert!(auth.verify(&token).await.is_ok());
    assert!(
        auth.verify(&token).await.is_ok(),
        "verified again from memory"
    );

    // The provider drops the old key (after a leak, say); the first token of the new key makes
    // the service fetch the set again, and the old key's tokens are refused from then on.
    *server.keys.lock().unwrap() = rotated.jwks();
    assert!(auth.verify(&rotated.token(Role::Shop)).await.is_ok());
    let e = auth.verify(&token).await.unwrap_err();
    assert!(matches!(e, AuthError::UnknownKey(_)), "{e:?}");
}

#[tokio::test]
async fn a_key_set_url_is_fetched_again_at_its_maximum_age_and_a_removed_key_is_refused() {
    let old = TestIdentity::new();
    let rotated = TestIdentity::new();
    let server = serve_jwks(old.jwks()).await;
    let auth = Authenticator::new(&AuthConfig::Jwt(JwtConfig {
        max_age: Duration::from_millis(300),
        ..match config(JwksSource::Url(server.url.clone())) {
            AuthConfig::Jwt(c) => c,
            AuthConfig::Disabled => unreachable!(),
        }
    }))
    .unwrap();
    auth.start().await;
    let token = old.token(Role::Shop);
    assert!(auth.verify(&token).await.is_ok());

    // The provider drops the old key and nobody sends a token of the new one: the set is
    // fetched again all the same, and the old key's tokens are refused from then on.
    *server.keys.lock().unwrap() = rotated.jwks();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        server.fetches.load(Ordering::SeqCst) >= 3,
        "fetched on a timer"
    );
    let e = auth.verify(&token).await.unwrap_err();
    assert!(matches!(e, AuthError::UnknownKey(_)), "{e:?}");

    // It stops with the authenticator.
    drop(auth);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fetched = server.fetches.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(server.fetches.load(Ordering::SeqCst), fetched);
}

fn env(vars: &[(&str, &str)]) -> Result<AuthConfig, AuthConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    AuthConfig::from_vars(|name| vars.get(name).cloned())
}

#[test]
fn a_service_with_neither_a_key_set_nor_auth_disabled_does_not_start() {
    let e = env(&[]).unwrap_err();
    assert!(matches!(e, AuthConfigError::NotConfigured));
    assert!(
        e.to_string().contains("MILESTONE_AUTH_DISABLED=true"),
        "{e}"
    );
    assert!(matches!(
        env(&[("MILESTONE_AUTH_DISABLED", "false")]).unwrap_err(),
        AuthConfigError::NotConfigured
    ));
    assert!(matches!(
        env(&[("MILESTONE_AUTH_DISABLED", "yes")]).unwrap_err(),
        AuthConfigError::Invalid { .. }
    ));
}

#[test]
fn only_auth_disabled_true_turns_authentication_off() {
    assert!(matches!(
        env(&[("MILESTONE_AUTH_DISABLED", "true")]).unwrap(),
        AuthConfig::Disabled
    ));
}

#[test]
fn a_key_set_needs_an_issuer_and_an_audience() {
    let e = env(&[("MILESTONE_AUTH_JWKS_URL", "https://idp.example/jwks")]).unwrap_err();
    assert!(matches!(
        e,
        AuthConfigError::Missing("MILESTONE_AUTH_ISSUER")
    ));
    let config = env(&[
        ("MILESTONE_AUTH_JWKS_FILE", "/etc/milestone/jwks.json"),
        ("MILESTONE_AUTH_ISSUER", "https://idp.example/"),
        ("MILESTONE_AUTH_AUDIENCE", "milestone"),
        ("MILESTONE_AUTH_CLOCK_SKEW_SECS", "45"),
    ])
    .unwrap();
    let AuthConfig::Jwt(jwt) = config else {
        panic!("tokens must be checked")
    };
    assert_eq!(
        jwt.jwks,
        JwksSource::File("/etc/milestone/jwks.json".into())
    );
    assert_eq!(jwt.clock_skew, Duration::from_secs(45));
    assert!(matches!(
        env(&[
            ("MILESTONE_AUTH_JWKS_FILE", "/a"),
            ("MILESTONE_AUTH_JWKS_URL", "https://b")
        ])
        .unwrap_err(),
        AuthConfigError::BothSources
    ));
}

#[test]
fn a_key_set_file_without_a_usable_key_does_not_start_a_service() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}]}"#,
    )
    .unwrap();
    let e = Authenticator::new(&config(JwksSource::File(path)))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "the key set holds no RS256 or ES256 signing key with a `kid`"
    );
}

#[test]
fn the_readme_lists_every_role_with_its_scopes() {
    let readme = include_str!("../../README.md");
    let table = Role::markdown_table();
    assert!(
        readme.contains(&table),
        "the README's table of roles differs from the roles declared; put this in it:\n{table}"
    );
}

//! Tokens for tests: a development key set written to a temporary directory, the settings that
//! make a service check tokens against it, and tokens for any role.

use service_kit::auth::dev::{DevKeys, Signer, TokenClaims, DEV_AUDIENCE, DEV_ISSUER, JWKS_FILE};
pub use service_kit::auth::Role;
use service_kit::auth::{AuthConfig, JwksSource, JwtConfig};
use std::time::Duration;

/// An identity provider for one test: its keys and the tokens it issues.
pub struct TestIdentity {
    keys: DevKeys,
    /// Holds the key set file while the test runs.
    dir: tempfile::TempDir,
}

impl Default for TestIdentity {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIdentity {
    /// A fresh ES256 key pair, its key set in a temporary file.
    ///
    /// # Panics
    /// When the temporary directory cannot be written.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let keys = DevKeys::load_or_create(dir.path()).expect("development keys");
        Self { keys, dir }
    }

    /// Settings checking tokens against this identity's key set.
    pub fn config(&self) -> AuthConfig {
        AuthConfig::Jwt(JwtConfig {
            jwks: JwksSource::File(self.dir.path().join(JWKS_FILE)),
            issuer: DEV_ISSUER.to_owned(),
            audience: DEV_AUDIENCE.to_owned(),
            clock_skew: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(300),
        })
    }

    /// The environment that makes a service binary check tokens against this identity's key
    /// set (overriding a disabled authentication).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MILESTONE_AUTH_DISABLED", "false".to_owned()),
            (
                "MILESTONE_AUTH_JWKS_FILE",
                self.dir.path().join(JWKS_FILE).display().to_string(),
            ),
            ("MILESTONE_AUTH_ISSUER", DEV_ISSUER.to_owned()),
            ("MILESTONE_AUTH_AUDIENCE", DEV_AUDIENCE.to_owned()),
        ]
    }

    /// A valid token for `role` (a customer's names `customer-1`).
    pub fn token(&self, role: Role) -> String {
        let customer = (role == Role::Customer).then_some("customer-1");
        self.keys.token(role, customer, Duration::from_secs(600))
    }

    /// A valid token of the customer `customer_id`.
    pub fn customer_token(&self, customer_id: &str) -> String {
        self.keys
            .token(Role::Customer, Some(customer_id), Duration::from_secs(600))
    }

    /// Valid claims for `role`, to be spoiled by a test.
    pub fn claims(&self, role: Role) -> TokenClaims {
        TokenClaims::new(
            &format!("test-{role}"),
            role.as_str(),
            Duration::from_secs(600),
        )
    }

    /// Signs with this identity's key.
    pub fn signer(&self) -> Signer {
        self.keys.signer()
    }

    /// The key set as served.
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }
}

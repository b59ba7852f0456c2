//! Who is calling, and what they may do: bearer JWTs (RS256 or ES256) checked against a JSON
//! Web Key Set (a file, or a URL fetched at start and again when a token names a key not seen
//! yet, at most once per refresh interval), the issuer, the audience and the token's validity
//! period with a small clock skew. A valid token becomes a [`Caller`]: its subject, its role
//! (the `role` claim, see [`roles`]), the client it was issued to and, for a customer, the
//! `customer_id` claim. Both APIs use [`Authenticator`]; `dev` makes development keys and
//! tokens.

pub mod dev;
mod jwks;
pub mod roles;

pub use jwks::{JwksError, JwksSource};
pub use roles::{Role, Scope, UnknownRole};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The algorithms a token may be signed with. HMAC is never accepted: a verifier holding only
/// public keys must not treat one as a shared secret.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// The subject recorded for requests when authentication is disabled.
pub const ANONYMOUS: &str = "anonymous";
/// The role recorded for requests when authentication is disabled.
pub const AUTH_DISABLED_ROLE: &str = "auth-disabled";

/// How tokens are checked, from the environment.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// `MILESTONE_AUTH_DISABLED=true`: every request is served, as [`ANONYMOUS`].
    Disabled,
    /// Bearer tokens are required.
    Jwt(JwtConfig),
}

/// The settings of token validation.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `MILESTONE_AUTH_JWKS_FILE` or `MILESTONE_AUTH_JWKS_URL`.
    pub jwks: JwksSource,
    /// `MILESTONE_AUTH_ISSUER`: the `iss` every token must carry.
    pub issuer: String,
    /// `MILESTONE_AUTH_AUDIENCE`: a value the token's `aud` must hold.
    pub audience: String,
    /// `MILESTONE_AUTH_CLOCK_SKEW_SECS` (default 30): how far `exp` and `nbf` may be off.
    pub clock_skew: Duration,
    /// `MILESTONE_AUTH_JWKS_REFRESH_SECS` (default 30): a token naming an unknown key fetches
    /// the key set from its URL again at most once per this interval.
    pub refresh_interval: Duration,
    /// `MILESTONE_AUTH_JWKS_MAX_AGE_SECS` (default 300; 0: never): a key set URL is fetched
    /// again this often even when every token names a known key, so that a key the provider
    /// has removed stops being trusted.
    pub max_age: Duration,
}

/// Configuration that cannot start a service.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "authentication is not configured: set MILESTONE_AUTH_JWKS_FILE or MILESTONE_AUTH_JWKS_URL \
         (with MILESTONE_AUTH_ISSUER and MILESTONE_AUTH_AUDIENCE), or MILESTONE_AUTH_DISABLED=true \
         to serve every request unauthenticated (development only)"
    )]
    NotConfigured,
    #[error("set only one of MILESTONE_AUTH_JWKS_FILE and MILESTONE_AUTH_JWKS_URL")]
    BothSources,
    #[error("{0} must be set when tokens are checked")]
    Missing(&'static str),
    #[error("{name}='{value}' is not valid")]
    Invalid { name: &'static str, value: String },
}

impl AuthConfig {
    /// Reads the `MILESTONE_AUTH_*` variables.
    ///
    /// # Errors
    /// Neither a key set nor `MILESTONE_AUTH_DISABLED=true`, both key sets, a missing issuer or
    /// audience, or a value that does not parse.
    pub fn from_env() -> Result<Self, AuthConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var` (the environment, or a test's map).
    ///
    /// # Errors
    /// As [`AuthConfig::from_env`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, AuthConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(value) = var("MILESTONE_AUTH_DISABLED") {
            match value.as_str() {
                "true" => return Ok(Self::Disabled),
                "false" => {}
                _ => {
                    return Err(AuthConfigError::Invalid {
                        name: "MILESTONE_AUTH_DISABLED",
                        value,
                    })
                }
            }
        }
        let jwks = match (
            var("MILESTONE_AUTH_JWKS_FILE"),
            var("MILESTONE_AUTH_JWKS_URL"),
        ) {
            (Some(_), Some(_)) => return Err(AuthConfigError::BothSources),
            (Some(file), None) => JwksSource::File(PathBuf::from(file)),
            (None, Some(url)) => JwksSource::Url(url),
            (None, None) => return Err(AuthConfigError::NotConfigured),
        };
        let required = |name: &'static str| var(name).ok_or(AuthConfigError::Missing(name));
        let seconds = |name: &'static str, default: u64| match var(name) {
            None => Ok(Duration::from_secs(default)),
            Some(value) => value
                .parse()
                .map(Duration::from_secs)
                .map_err(|_| AuthConfigError::Invalid { name, value }),
        };
        Ok(Self::Jwt(JwtConfig {
            jwks,
            issuer: required("MILESTONE_AUTH_ISSUER")?,
            audience: required("MILESTONE_AUTH_AUDIENCE")?,
            clock_skew: seconds("MILESTONE_AUTH_CLOCK_SKEW_SECS", 30)?,
            refresh_interval: seconds("MILESTONE_AUTH_JWKS_REFRESH_SECS", 30)?,
            max_age: seconds("MILESTONE_AUTH_JWKS_MAX_AGE_SECS", 300)?,
        }))
    }
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`.
    pub subject: String,
    /// The token's role; `None` when authentication is disabled.
    pub role: Option<Role>,
    /// The OAuth2 client the token was issued to (`azp`, else `client_id`).
    pub client: Option<String>,
    /// A customer's own id (the `customer_id` claim): they read only what is theirs.
    pub customer_id: Option<String>,
    /// When the token stops being accepted (its `exp` plus the allowed clock skew): what a
    /// long-lived connection authenticated once (a subscription websocket) is bounded by.
    /// `None` when authentication is disabled.
    pub expires_at: Option<SystemTime>,
}

impl Caller {
    /// The caller of every request when authentication is disabled: allowed everything.
    pub fn anonymous() -> Self {
        Self {
            subject: ANONYMOUS.to_owned(),
            role: None,
            client: None,
            customer_id: None,
            expires_at: None,
        }
    }

    /// The role's name as recorded with what the caller does.
    pub fn role_name(&self) -> &'static str {
        self.role.map_or(AUTH_DISABLED_ROLE, Role::as_str)
    }

    /// Whether the caller may use `scope` (anyone may when authentication is disabled).
    pub fn allows(&self, scope: Scope) -> bool {
        self.role.is_none_or(|r| r.scopes().contains(&scope))
    }

    /// `Ok` when the caller may use `scope`.
    ///
    /// # Errors
    /// [`AuthError::MissingScope`] otherwise.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope {
                role: self.role_name(),
                scope,
            })
        }
    }
}

/// Why a request is not served: unauthenticated (401) or forbidden (403, see
/// [`AuthError::is_forbidden`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("the token is not a JWT")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("tokens signed with {0:?} are not accepted; use RS256 or ES256")]
    Algorithm(Algorithm),
    #[error("the token's header names no key (`kid`)")]
    MissingKeyId,
    #[error("the key `{0}` is not in the key set")]
    UnknownKey(String),
    #[error("the key `{kid}` is not a {alg:?} key")]
    KeyMismatch { kid: String, alg: Algorithm },
    #[error("{}", rejection(.0.kind()))]
    Rejected(#[source] jsonwebtoken::errors::Error),
    #[error("the key set cannot be fetched to look for the token's key")]
    KeySet(#[source] JwksError),
    #[error(transparent)]
    UnknownRole(UnknownRole),
    #[error("a customer's token must carry a `customer_id` claim")]
    MissingCustomer,
    #[error("the role `{role}` does not have the scope `{scope}`")]
    MissingScope { role: &'static str, scope: Scope },
}

/// What a token validation's refusal tells the client.
fn rejection(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidIssuer => "the token's issuer is not the one trusted".to_owned(),
        ErrorKind::InvalidAudience => "the token is not meant for this audience".to_owned(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not its key's".to_owned(),
        _ => "the token is invalid".to_owned(),
    }
}

impl AuthError {
    /// A valid caller that may not do this (403), rather than no valid caller (401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::UnknownRole(_) | Self::MissingScope { .. })
    }
}

/// The claims read from a valid token.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: Option<String>,
    customer_id: Option<String>,
    azp: Option<String>,
    client_id: Option<String>,
    /// Seconds since the epoch (validated by the library; kept to bound the memo of the token).
    exp: Option<f64>,
    nbf: Option<f64>,
}

/// The most verified tokens remembered at once (see [`Verifier::verified`]).
const MAX_VERIFIED: usize = 10_000;

/// A token that verified, remembered until it expires, or until the key that signed it is no
/// longer the key set's.
struct Verified {
    caller: Caller,
    exp: f64,
    nbf: Option<f64>,
    kid: String,
    key: Arc<jwks::Key>,
}

impl Verified {
    /// Whether the token is still within its validity at `now` (seconds since the epoch),
    /// allowing `skew` as the first verification did.
    fn is_valid_at(&self, now: f64, skew: f64) -> bool {
        now <= self.exp + skew && self.nbf.is_none_or(|nbf| nbf <= now + skew)
    }
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Checks bearer tokens (or, disabled, lets every request through as [`Caller::anonymous`]).
#[derive(Clone)]
pub struct Authenticator(Option<Arc<Verifier>>);

struct Verifier {
    keys: jwks::KeySet,
    max_age: Duration,
    issuer: String,
    audience: String,
    clock_skew: Duration,
    /// Tokens that verified, by their exact text: a client sends the same token with every
    /// request until it expires, and checking its signature again (tens of microseconds for
    /// ES256) would decide the same. Only the time checks are made again. Bounded by
    /// [`MAX_VERIFIED`].
    verified: Mutex<HashMap<String, Verified>>,
}

impl Authenticator {
    /// Loads the key set from its file (a URL is fetched by [`Authenticator::start`]). When
    /// authentication is disabled, logs a warning saying so.
    ///
    /// # Errors
    /// A key set file that cannot be read or holds no RS256/ES256 key with a `kid`.
    pub fn new(config: &AuthConfig) -> Result<Self, JwksError> {
        match config {
            AuthConfig::Disabled => {
                tracing::warn!(
                    "authentication is DISABLED (MILESTONE_AUTH_DISABLED=true): every request is \
                     served without a token; never run like this outside development"
                );
                Ok(Self(None))
            }
            AuthConfig::Jwt(jwt) => Ok(Self(Some(Arc::new(Verifier {
                keys: jwks::KeySet::load(jwt.jwks.clone(), jwt.refresh_interval)?,
                max_age: jwt.max_age,
                issuer: jwt.issuer.clone(),
                audience: jwt.audience.clone(),
                clock_skew: jwt.clock_skew,
                verified: Mutex::new(HashMap::new()),
            })))),
        }
    }

    /// Fetches a key set served at a URL, logging the outcome (a failure is retried when a
    /// token needs a key), then again every `max_age` on a task of the current runtime, which
    /// ends with the authenticator. Nothing to do for a file, or when disabled.
    pub async fn start(&self) {
        let Some(verifier) = &self.0 else {
            return;
        };
        if !verifier.keys.fetch_logged(true).await || verifier.max_age.is_zero() {
            return;
        }
        let (max_age, verifier) = (verifier.max_age, Arc::downgrade(verifier));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(max_age).await;
                let Some(verifier) = verifier.upgrade() else {
                    return;
                };
                verifier.keys.fetch_logged(false).await;
            }
        });
    }

    pub fn is_disabled(&self) -> bool {
        self.0.is_none()
    }

    /// The caller of a request with this `Authorization` header value: `None` without one
    /// (authentication disabled: always [`Caller::anonymous`]).
    ///
    /// # Errors
    /// A header that is not `Bearer <token>`, or a token that does not verify.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<Caller>, AuthError> {
        if self.is_disabled() {
            return Ok(Some(Caller::anonymous()));
        }
        let Some(value) = authorization else {
            return Ok(None);
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::NotBearer)?;
        self.verify(token).await.map(Some)
    }

    /// The caller a token names.
    ///
    /// # Errors
    /// Not a JWT, an algorithm other than RS256/ES256, no `kid` or an unknown one, a bad
    /// signature, a wrong issuer or audience, expired or not yet valid (beyond the clock skew),
    /// no `sub`, an unknown role, or a customer's token without `customer_id`.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let Some(verifier) = &self.0 else {
            return Ok(Caller::anonymous());
        };
        verifier.verify(token).await
    }
}

impl Verifier {
    async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let now = epoch_seconds();
        let skew = self.clock_skew.as_secs_f64();
        if let Some(known) = self.remembered(token, now, skew) {
            return Ok(known);
        }
        let checked = self.check(token).await?;
        let caller = checked.caller.clone();
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, v| v.is_valid_at(now, skew));
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), checked);
        Ok(caller)
    }

    /// The caller of a token verified before, while it is still valid; an expired one is
    /// forgotten (and then refused by the full check).
    fn remembered(&self, token: &str, now: f64, skew: f64) -> Option<Caller> {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        match verified.get(token) {
            Some(v)
                if v.is_valid_at(now, skew)
                    && self
                        .keys
                        .known(&v.kid)
                        .is_some_and(|key| Arc::ptr_eq(&key, &v.key)) =>
            {
                Some(v.caller.clone())
            }
            Some(_) => {
                verified.remove(token);
                None
            }
            None => None,
        }
    }

    /// The full check of a token: its key, signature and claims; the caller it names, its
    /// validity window and the key that signed it.
    async fn check(&self, token: &str) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(AuthError::Malformed)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::Algorithm(header.alg));
        }
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
        let key = self.keys.key(&kid).await?;
        if key.algorithm != header.alg {
            return Err(AuthError::KeyMismatch {
                kid,
                alg: header.alg,
            });
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(AuthError::Rejected)?
            .claims;
        let role: Role = claims
            .role
            .unwrap_or_default()
            .parse()
            .map_err(AuthError::UnknownRole)?;
        let customer_id = match role {
            Role::Customer => Some(
                claims
                    .customer_id
                    .filter(|c| !c.is_empty())
                    .ok_or(AuthError::MissingCustomer)?,
            ),
            _ => None,
        };
        let caller = Caller {
            subject: claims.sub,
            role: Some(role),
            client: claims.azp.or(claims.client_id),
            customer_id,
            expires_at: claims
                .exp
                .and_then(|exp| Duration::try_from_secs_f64(exp).ok())
                .and_then(|exp| UNIX_EPOCH.checked_add(exp + self.clock_skew)),
        };
        Ok(Verified {
            caller,
            // The library requires `exp`; without one the token is never taken from memory.
            exp: claims.exp.unwrap_or(f64::NEG_INFINITY),
            nbf: claims.nbf,
            kid,
            key,
        })
    }
}

#[cfg(feature = "http")]
pub mod http {
    //! Authentication of actix requests: [`check`] verifies a request's token once, on the
    //! way in, and keeps the outcome in its extensions; handlers ask [`caller`] for it.

    use super::{AuthError, Authenticator, Caller};
    use actix_web::dev::ServiceRequest;
    use actix_web::{HttpMessage, HttpRequest};
    use std::sync::Arc;

    /// The outcome of checking a request's token, kept in its extensions.
    #[derive(Clone)]
    struct Authentication(Result<Caller, Arc<AuthError>>);

    /// The `Authorization` header of a request, when it has one that is text.
    pub fn authorization(req: &HttpRequest) -> Option<&str> {
        req.headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }

    /// Checks the request's bearer token and keeps the outcome (and a valid [`Caller`]) in
    /// its extensions; returns the caller when the token is valid.
    pub async fn check(auth: &Authenticator, req: &ServiceRequest) -> Option<Caller> {
        let outcome = auth
            .authenticate(authorization(req.request()))
            .await
            .and_then(|caller| caller.ok_or(AuthError::Missing))
            .map_err(Arc::new);
        let caller = outcome.as_ref().ok().cloned();
        let mut extensions = req.extensions_mut();
        if let Some(caller) = &caller {
            extensions.insert(caller.clone());
        }
        extensions.insert(Authentication(outcome));
        caller
    }

    /// The request's caller, as [`check`] found it.
    ///
    /// # Errors
    /// No token, or one that does not verify (also when [`check`] did not run).
    pub fn caller(req: &HttpRequest) -> Result<Caller, Arc<AuthError>> {
        match req.extensions().get::<Authentication>() {
            Some(Authentication(outcome)) => outcome.clone(),
            None => Err(Arc::new(AuthError::Missing)),
        }
    }
}

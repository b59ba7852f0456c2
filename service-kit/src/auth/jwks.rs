//! The JSON Web Key Set tokens are checked against: read from a file once, or fetched from a
//! URL at start and again when a token names a key not seen yet (at most once per interval, so
//! tokens with made-up key ids cannot make the service hammer the identity provider).

use super::AuthError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Where the key set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// Why a key set cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the key set {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch the key set from {url}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the key set is not a JSON Web Key Set")]
    Parse(#[source] serde_json::Error),
    #[error("the key set holds no RS256 or ES256 signing key with a `kid`")]
    NoUsableKey,
}

/// One verification key.
pub(super) struct Key {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

/// The keys by id, and how to get them again.
pub(super) struct KeySet {
    source: JwksSource,
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    /// When the set was last fetched (or tried), so that refreshes are spaced.
    last_fetch: Mutex<Option<Instant>>,
    refresh_interval: Duration,
    http: reqwest::Client,
}

impl KeySet {
    /// Reads a file's keys now; a URL's are fetched by [`KeySet::fetch_logged`].
    pub fn load(source: JwksSource, refresh_interval: Duration) -> Result<Self, JwksError> {
        let keys = match &source {
            JwksSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| JwksError::Read {
                    path: path.clone(),
                    source,
                })?;
                parse(&text)?
            }
            JwksSource::Url(_) => HashMap::new(),
        };
        Ok(Self {
            source,
            keys: RwLock::new(Arc::new(keys)),
            last_fetch: Mutex::new(None),
            refresh_interval,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        })
    }

    /// Fetches the set from its URL, at start or again when its age reached the maximum,
    /// logging the outcome (on failure the keys held are kept); whether the source is a URL.
    pub async fn fetch_logged(&self, at_start: bool) -> bool {
        let JwksSource::Url(url) = &self.source else {
            return false;
        };
        *self.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        match self.fetch(url).await {
            Ok(n) if at_start => tracing::info!(url, keys = n, "fetched the token signing keys"),
            Ok(n) => tracing::debug!(url, keys = n, "fetched the token signing keys again"),
            Err(e) => tracing::error!(
                url,
                cause = %crate::error_chain(&e),
                "cannot fetch the token signing keys; keeping those held, if any, and retrying \
                 when a token needs one or the set is due again"
            ),
        }
        true
    }

    /// The key `kid`, fetching the set again when it is not known and the source is a URL
    /// that was not fetched within the refresh interval.
    pub async fn key(&self, kid: &str) -> Result<Arc<Key>, AuthError> {
        if let Some(key) = self.known(kid) {
            return Ok(key);
        }
        let JwksSource::Url(url) = &self.source else {
            return Err(AuthError::UnknownKey(kid.to_owned()));
        };
        if !self.may_fetch() {
            return Err(AuthError::UnknownKey(kid.to_owned()));
        }
        self.fetch(url).await.map_err(AuthError::KeySet)?;
        self.known(kid)
            .ok_or_else(|| AuthError::UnknownKey(kid.to_owned()))
    }

    pub(super) fn known(&self, kid: &str) -> Option<Arc<Key>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.get(kid).cloned()
    }

    /// Whether a fetch may be made now; if so, it counts as made.
    fn may_fetch(&self) -> bool {
        let mut last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.refresh_interval) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Replaces the keys with those served at `url`; returns how many.
    async fn fetch(&self, url: &str) -> Result<usize, JwksError> {
        let fetch_error = |source| JwksError::Fetch {
            url: url.to_owned(),
            source,
        };
        let text = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fetch_error)?
            .text()
            .await
            .map_err(fetch_error)?;
        let keys = parse(&text)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(n)
    }
}

/// The RS256 and ES256 signing keys of a key set, by `kid`; others are left out.
fn parse(text: &str) -> Result<HashMap<String, Arc<Key>>, JwksError> {
    let set: JwkSet = serde_json::from_str(text).map_err(JwksError::Parse)?;
    let keys: HashMap<String, Arc<Key>> = set
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                return None;
            }
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => return None,
            };
            let stated = match algorithm {
                Algorithm::RS256 => KeyAlgorithm::RS256,
                _ => KeyAlgorithm::ES256,
            };
            if jwk.common.key_algorithm.is_some_and(|a| a != stated) {
                return None;
            }
            let decoding = DecodingKey::from_jwk(jwk).ok()?;
            Some((
                kid,
                Arc::new(Key {
                    algorithm,
                    decoding,
                }),
            ))
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

//! Development keys and tokens: an ES256 key pair kept in a directory (created once, reused
//! after), its public half as a JSON Web Key Set for `MILESTONE_AUTH_JWKS_FILE`, and tokens for
//! any role signed with it. Used by `scripts/run.sh` (through the CLI) and the tests; a real
//! deployment gets its tokens from an identity provider instead.

use super::Role;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The issuer of development tokens (`MILESTONE_AUTH_ISSUER` of a local run).
pub const DEV_ISSUER: &str = "milestone-dev";
/// The audience of development tokens (`MILESTONE_AUTH_AUDIENCE` of a local run).
pub const DEV_AUDIENCE: &str = "milestone";
/// The file holding the private key (PKCS#8, DER) in a development key directory.
pub const PRIVATE_KEY_FILE: &str = "dev-key.p8";
/// The file holding the public key set in a development key directory.
pub const JWKS_FILE: &str = "jwks.json";

/// Why development keys cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    #[error("cannot generate a key pair")]
    Generate,
    #[error("{} is not a PKCS#8 P-256 private key", .0.display())]
    NotAKey(PathBuf),
    #[error("cannot write or read {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An ES256 signing key and its id.
pub struct DevKeys {
    kid: String,
    pkcs8: Vec<u8>,
    /// The uncompressed public point: 0x04, x, y.
    public: Vec<u8>,
}

impl DevKeys {
    /// A fresh key pair named `kid`.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn generate(kid: &str) -> Result<Self, DevKeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| DevKeyError::Generate)?;
        Self::from_pkcs8(kid, pkcs8.as_ref().to_vec()).ok_or(DevKeyError::Generate)
    }

    fn from_pkcs8(kid: &str, pkcs8: Vec<u8>) -> Option<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .ok()?;
        let public = pair.public_key().as_ref().to_vec();
        Some(Self {
            kid: kid.to_owned(),
            pkcs8,
            public,
        })
    }

    /// The key pair kept in `dir`, made (with its key set) the first time; the key's id is
    /// derived from its public half, so a new key is never mistaken for the old one.
    ///
    /// # Errors
    /// A directory that cannot be written, or a key file that is not a key.
    pub fn load_or_create(dir: &Path) -> Result<Self, DevKeyError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DevKeyError::Io { path, source }
        };
        let key_path = dir.join(PRIVATE_KEY_FILE);
        let keys = match std::fs::read(&key_path) {
            Ok(der) => {
                let probe = Self::from_pkcs8("", der.clone())
                    .ok_or_else(|| DevKeyError::NotAKey(key_path.clone()))?;
                Self::from_pkcs8(&key_id(&probe.public), der)
                    .ok_or_else(|| DevKeyError::NotAKey(key_path.clone()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                let probe = Self::generate("")?;
                let keys = Self::from_pkcs8(&key_id(&probe.public), probe.pkcs8)
                    .ok_or(DevKeyError::Generate)?;
                write_private(&key_path, &keys.pkcs8).map_err(io(&key_path))?;
                keys
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let jwks_path = dir.join(JWKS_FILE);
        let jwks = serde_json::to_string_pretty(&keys.jwks()).unwrap_or_default();
        std::fs::write(&jwks_path, jwks).map_err(io(&jwks_path))?;
        Ok(keys)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JSON Web Key Set.
    pub fn jwks(&self) -> Value {
        let (x, y) = self.public[1..].split_at(32);
        json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "use": "sig",
                "alg": "ES256",
                "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
            }]
        })
    }

    /// A signer for tokens of this key.
    pub fn signer(&self) -> Signer {
        Signer {
            kid: Some(self.kid.clone()),
            algorithm: Algorithm::ES256,
            key: EncodingKey::from_ec_der(&self.pkcs8),
        }
    }

    /// A development token for `role` (and, for a customer, `customer_id`), valid for `ttl`.
    pub fn token(&self, role: Role, customer_id: Option<&str>, ttl: Duration) -> String {
        let mut claims = TokenClaims::new(&format!("dev-{role}"), role.as_str(), ttl);
        if let Some(customer) = customer_id {
            claims.customer_id = Some(customer.to_owned());
        }
        self.signer().sign(&claims)
    }
}

/// A key id derived from a public key: its first bytes, base64url.
fn key_id(public: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public);
    format!("dev-{}", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..9]))
}

fn write_private(path: &Path, der: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(der)
}

/// The claims of a token made here; every field can be set to make a bad one (tests).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenClaims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenClaims {
    /// Development claims: [`DEV_ISSUER`], [`DEV_AUDIENCE`], valid from now for `ttl`.
    pub fn new(subject: &str, role: &str, ttl: Duration) -> Self {
        let now = now();
        Self {
            sub: subject.to_owned(),
            role: Some(role.to_owned()),
            customer_id: None,
            iss: Some(DEV_ISSUER.to_owned()),
            aud: Some(DEV_AUDIENCE.to_owned()),
            exp: Some(now + ttl.as_secs()),
            nbf: Some(now),
            iat: now,
            azp: None,
        }
    }
}

impl TokenClaims {
    /// The claims with another `role` claim.
    pub fn with_role(mut self, role: &str) -> Self {
        self.role = Some(role.to_owned());
        self
    }
}

/// Signs tokens with one key.
pub struct Signer {
    /// The `kid` put in the header (none: a token naming no key).
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    key: EncodingKey,
}

impl Signer {
    /// An RS256 signer from a PKCS#1 DER private key.
    pub fn rsa(kid: &str, pkcs1_der: &[u8]) -> Self {
        Self {
            kid: Some(kid.to_owned()),
            algorithm: Algorithm::RS256,
            key: EncodingKey::from_rsa_der(pkcs1_der),
        }
    }

    /// An HMAC signer with `secret` (tests: a token an attacker signs with a public key).
    pub fn hmac(kid: &str, secret: &[u8]) -> Self {
        Self {
            kid: Some(kid.to_owned()),
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(secret),
        }
    }

    /// The signed token; empty when the key cannot sign (never for keys made here).
    pub fn sign(&self, claims: &TokenClaims) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).unwrap_or_default()
    }
}

//! What authentication adds to a request, A/B in one run: the work the APIs do per request
//! (verify the bearer token against the key set, then check the route's scope), with tokens
//! checked (ES256 and RS256 keys) and with authentication disabled, the variants taking turns in
//! rounds of 500 requests so that a noisy neighbour weighs on each alike. A client sends the same
//! token until it expires, and a token verified once is remembered: `es256`/`rs256` send one
//! token again and again (what a client's requests pay after its first), `es256 new`/`rs256 new`
//! a different token with every request to an authenticator that has seen none of them (the
//! full verification each first request pays). Prints p50/p99/mean per request in microseconds
//! and the p99 each variant adds over the disabled one.
//!
//! `cargo bench -p service-kit --bench auth` (no database). `BENCH_REQUESTS` (default 20000 per
//! variant).

use service_kit::auth::dev::Signer;
use service_kit::auth::{AuthConfig, Authenticator, JwksSource, JwtConfig, Role, Scope};
use std::time::{Duration, Instant};
use test_support::auth::TestIdentity;

const RSA_KEY_DER: &[u8] = include_bytes!("../tests/fixtures/rsa-test-key.der");
const RSA_KEY_N: &str = include_str!("../tests/fixtures/rsa-test-key.n");

const ROUND: usize = 500;

/// Adds the durations of `requests` authentications of `header` to `samples`.
async fn measure(auth: &Authenticator, header: &str, requests: usize, samples: &mut Vec<Duration>) {
    for _ in 0..requests {
        let started = Instant::now();
        let caller = auth.authenticate(Some(header)).await.unwrap().unwrap();
        caller.require(Scope::PlaceOrders).unwrap();
        samples.push(started.elapsed());
    }
}

/// As [`measure`], one request per header, on an authenticator that has not seen them.
async fn measure_new(
    new_auth: &impl Fn() -> Authenticator,
    headers: &[String],
    samples: &mut Vec<Duration>,
) {
    let auth = new_auth();
    for header in headers {
        let started = Instant::now();
        let caller = auth.authenticate(Some(header)).await.unwrap().unwrap();
        caller.require(Scope::PlaceOrders).unwrap();
        samples.push(started.elapsed());
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let requests: usize = test_support::bench_env("BENCH_REQUESTS", 20_000);
    let identity = TestIdentity::new();
    let dir = tempfile::tempdir().unwrap();
    let mut jwks = identity.jwks();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "rsa-bench",
            "n": RSA_KEY_N.trim(), "e": "AQAB"
        }));
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let new_checking = || {
        Authenticator::new(&AuthConfig::Jwt(JwtConfig {
            jwks: JwksSource::File(path.clone()),
            issuer: service_kit::auth::dev::DEV_ISSUER.to_owned(),
            audience: service_kit::auth::dev::DEV_AUDIENCE.to_owned(),
            clock_skew: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(300),
        }))
        .unwrap()
    };
    let checking = new_checking();
    let disabled = Authenticator::new(&AuthConfig::Disabled).unwrap();
    let es256 = format!("Bearer {}", identity.token(Role::Shop));
    let rs256 = format!(
        "Bearer {}",
        Signer::rsa("rsa-bench", RSA_KEY_DER).sign(&identity.claims(Role::Shop))
    );

    // A round's worth of distinct tokens per key (each a different subject), signed beforehand.
    let distinct = |sign: &dyn Fn(&service_kit::auth::dev::TokenClaims) -> String| -> Vec<String> {
        (0..ROUND)
            .map(|i| {
                let mut claims = identity.claims(Role::Shop);
                claims.sub = format!("shop-{i}");
                format!("Bearer {}", sign(&claims))
            })
            .collect()
    };
    let es256_new = distinct(&|c| identity.signer().sign(c));
    let rsa = Signer::rsa("rsa-bench", RSA_KEY_DER);
    let rs256_new = distinct(&|c| rsa.sign(c));

    let variants = [
        ("off", &disabled, &es256),
        ("es256", &checking, &es256),
        ("rs256", &checking, &rs256),
    ];
    let new_variants = [("es256 new", &es256_new), ("rs256 new", &rs256_new)];
    let all = variants.len() + new_variants.len();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(requests); all];
    for (_, auth, header) in variants {
        measure(auth, header, ROUND, &mut Vec::new()).await;
    }
    for _ in 0..requests.div_ceil(ROUND) {
        for ((_, auth, header), samples) in variants.iter().zip(&mut samples) {
            measure(auth, header, ROUND, samples).await;
        }
        for ((_, headers), samples) in new_variants.iter().zip(&mut samples[variants.len()..]) {
            measure_new(&new_checking, headers, samples).await;
        }
    }
    for s in &mut samples {
        s.sort();
    }
    let off_p99 = percentile(&samples[0], 0.99);
    println!("auth per request, {requests} requests per variant (us)");
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>12}",
        "variant", "p50", "p99", "mean", "p99 added"
    );
    let names = variants
        .iter()
        .map(|(name, _, _)| *name)
        .chain(new_variants.iter().map(|(name, _)| *name));
    for (name, samples) in names.zip(&samples) {
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        let p99 = percentile(samples, 0.99);
        println!(
            "{name:<10} {:>8.1} {:>8.1} {:>8.1} {:>12.1}",
            micros(percentile(samples, 0.5)),
            micros(p99),
            micros(mean),
            micros(p99.saturating_sub(off_p99))
        );
    }
}

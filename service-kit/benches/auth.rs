//! What authentication adds to a request, A/B in one run: the work the APIs do per request
//! (verify the bearer token against the key set, then check the route's scope), with tokens
//! checked (ES256 and RS256 keys) and with authentication disabled, the variants taking turns in
//! rounds of 500 requests so that a noisy neighbour weighs on each alike. Prints p50/p99/mean
//! per request in microseconds and the p99 each variant adds over the disabled one.
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
    let checking = Authenticator::new(&AuthConfig::Jwt(JwtConfig {
        jwks: JwksSource::File(path),
        issuer: service_kit::auth::dev::DEV_ISSUER.to_owned(),
        audience: service_kit::auth::dev::DEV_AUDIENCE.to_owned(),
        clock_skew: Duration::from_secs(30),
        refresh_interval: Duration::from_secs(30),
    }))
    .unwrap();
    let disabled = Authenticator::new(&AuthConfig::Disabled).unwrap();
    let es256 = format!("Bearer {}", identity.token(Role::Shop));
    let rs256 = format!(
        "Bearer {}",
        Signer::rsa("rsa-bench", RSA_KEY_DER).sign(&identity.claims(Role::Shop))
    );

    let variants = [
        ("off", &disabled, &es256),
        ("es256", &checking, &es256),
        ("rs256", &checking, &rs256),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(requests); variants.len()];
    for (_, auth, header) in variants {
        measure(auth, header, ROUND, &mut Vec::new()).await;
    }
    for _ in 0..requests.div_ceil(ROUND) {
        for ((_, auth, header), samples) in variants.iter().zip(&mut samples) {
            measure(auth, header, ROUND, samples).await;
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
    for ((name, _, _), samples) in variants.iter().zip(&samples) {
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

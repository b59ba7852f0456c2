//! Per-caller rate limits: a token bucket per caller (the authenticated principal's subject, or
//! the client's IP address when there is none). A bucket holds up to `burst` requests and
//! refills at `per_second`; a request finding it empty is told how long until it holds one.
//!
//! Memory stays bounded: a bucket that has refilled completely is the same as no bucket, so
//! idle callers' buckets are dropped (on a sweep at most once per refill time, and whenever a
//! new caller arrives at the cap); past the cap, the least recently seen go first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `MILESTONE_RATE_LIMIT`: `on` (the default) or `off`.
pub const ENABLED_VAR: &str = "MILESTONE_RATE_LIMIT";
/// `MILESTONE_RATE_LIMIT_PER_SECOND`: requests per second per caller, on average.
pub const PER_SECOND_VAR: &str = "MILESTONE_RATE_LIMIT_PER_SECOND";
/// `MILESTONE_RATE_LIMIT_BURST`: requests a caller may send at once after a quiet spell.
pub const BURST_VAR: &str = "MILESTONE_RATE_LIMIT_BURST";

/// How many callers' buckets are kept at most.
pub const MAX_CALLERS: usize = 100_000;

/// How fast each caller may send requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, on average (more than 0).
    pub per_second: f64,
    /// Requests at once (at least 1).
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 500.0,
            burst: 1000,
        }
    }
}

/// The slowest rate accepted: one request per 1000 s (a bucket's refill time must stay a
/// finite duration).
const MIN_PER_SECOND: f64 = 0.001;

impl RateLimit {
    /// Reads [`ENABLED_VAR`], [`PER_SECOND_VAR`] and [`BURST_VAR`] from the environment; `None`
    /// when rate limits are off.
    ///
    /// # Errors
    /// A message naming the variable whose value is not valid.
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`RateLimit::from_env`] over any source of variables.
    ///
    /// # Errors
    /// A message naming the variable whose value is not valid.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let invalid = |name: &str, value: &str, expected: &str| {
            format!("{name}='{value}' is not valid: expected {expected}")
        };
        match lookup(ENABLED_VAR).as_deref().map(str::trim) {
            None | Some("on") => {}
            Some("off") => return Ok(None),
            Some(other) => return Err(invalid(ENABLED_VAR, other, "`on` or `off`")),
        }
        let default = Self::default();
        let per_second = match lookup(PER_SECOND_VAR) {
            None => default.per_second,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r >= MIN_PER_SECOND)
                .ok_or_else(|| invalid(PER_SECOND_VAR, &v, "a number of at least 0.001"))?,
        };
        let burst = match lookup(BURST_VAR) {
            None => default.burst,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|b| *b >= 1)
                .ok_or_else(|| invalid(BURST_VAR, &v, "a whole number of at least 1"))?,
        };
        Ok(Some(Self { per_second, burst }))
    }

    /// How long an empty bucket takes to fill up: after this long, a caller's bucket is as if
    /// it had none.
    fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) / self.per_second)
    }
}

/// Whose bucket a request takes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An authenticated principal, by subject.
    Subject(String),
    /// An unauthenticated client, by IP address.
    Address(IpAddr),
}

impl Caller {
    /// The principal's `subject` when the request has one, otherwise the client's address
    /// (unspecified when the connection has none, as in some in-process tests).
    pub fn of(subject: Option<&str>, peer: Option<SocketAddr>) -> Self {
        match subject {
            Some(subject) => Self::Subject(subject.to_owned()),
            None => Self::Address(peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())),
        }
    }
}

/// A refused request: how long until the caller's bucket holds a request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub wait: Duration,
}

impl Limited {
    /// The wait in whole seconds, rounded up (at least 1), as `Retry-After` states it.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        secs.max(1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every caller seen lately.
#[derive(Debug)]
struct Buckets {
    by_caller: HashMap<Caller, Bucket>,
    last_sweep: Instant,
}

/// Token buckets per caller, shared by every worker of a server.
#[derive(Debug)]
pub struct RateLimiter {
    /// `None`: rate limits are off and every request passes.
    limit: Option<RateLimit>,
    /// The most callers whose buckets are kept.
    max_callers: usize,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// A limiter for `limit` (`None`: off), keeping at most [`MAX_CALLERS`] buckets.
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self::with_max_callers(limit, MAX_CALLERS)
    }

    /// A limiter keeping at most `max_callers` buckets.
    pub fn with_max_callers(limit: Option<RateLimit>, max_callers: usize) -> Self {
        Self {
            limit,
            max_callers: max_callers.max(1),
            buckets: Mutex::new(Buckets {
                by_caller: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Takes one request from `caller`'s bucket now.
    ///
    /// # Errors
    /// [`Limited`] when the bucket is empty: the request must not be served.
    pub fn admit(&self, caller: &Caller) -> Result<(), Limited> {
        self.admit_at(caller, Instant::now())
    }

    /// [`RateLimiter::admit`] at the time `now`.
    ///
    /// # Errors
    /// [`Limited`] when the bucket is empty.
    pub fn admit_at(&self, caller: &Caller, now: Instant) -> Result<(), Limited> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let burst = f64::from(limit.burst);
        // A panic elsewhere while holding the lock leaves whole buckets behind: keep using them.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let new_caller = !buckets.by_caller.contains_key(caller);
        if (new_caller && buckets.by_caller.len() >= self.max_callers)
            || now.saturating_duration_since(buckets.last_sweep) >= limit.refill_time()
        {
            buckets.sweep(limit, self.max_callers - usize::from(new_caller), now);
        }
        let bucket = buckets.by_caller.entry(caller.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Limited {
                wait: Duration::from_secs_f64((1.0 - bucket.tokens) / limit.per_second),
            })
        }
    }

    /// How many callers' buckets are kept.
    pub fn callers(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_caller
            .len()
    }
}

impl Buckets {
    /// Drops the buckets that have refilled (as good as none), then, while more than `keep`
    /// remain, the least recently seen.
    fn sweep(&mut self, limit: RateLimit, keep: usize, now: Instant) {
        let refill = limit.refill_time();
        self.by_caller
            .retain(|_, b| now.saturating_duration_since(b.at) < refill);
        if self.by_caller.len() > keep {
            let mut seen: Vec<Instant> = self.by_caller.values().map(|b| b.at).collect();
            let excess = self.by_caller.len() - keep;
            seen.select_nth_unstable(excess - 1);
            let cutoff = seen[excess - 1];
            self.by_caller.retain(|_, b| b.at > cutoff);
        }
        self.last_sweep = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_PER_SECOND_BURST_TWO: RateLimit = RateLimit {
        per_second: 1.0,
        burst: 2,
    };

    fn ip(last: u8) -> Caller {
        Caller::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    #[test]
    fn a_burst_over_the_limit_is_refused_until_the_bucket_holds_a_request_again() {
        let limiter = RateLimiter::new(Some(RateLimit {
            per_second: 2.0,
            burst: 3,
        }));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit_at(&ip(1), t0), Ok(()));
        }
        let refused = limiter.admit_at(&ip(1), t0).unwrap_err();
        assert_eq!(refused.wait, Duration::from_millis(500));
        assert_eq!(refused.retry_after_secs(), 1);
        assert!(limiter
            .admit_at(&ip(1), t0 + Duration::from_millis(490))
            .is_err());
        assert_eq!(
            limiter.admit_at(&ip(1), t0 + Duration::from_millis(510)),
            Ok(())
        );
    }

    #[test]
    fn retry_after_rounds_the_wait_up_to_whole_seconds() {
        let secs = |ms| {
            Limited {
                wait: Duration::from_millis(ms),
            }
            .retry_after_secs()
        };
        assert_eq!((secs(1), secs(1000), secs(1001), secs(2500)), (1, 1, 2, 3));
    }

    #[test]
    fn two_addresses_and_two_principals_do_not_share_a_bucket() {
        let limiter = RateLimiter::new(Some(ONE_PER_SECOND_BURST_TWO));
        let t0 = Instant::now();
        let alice = Caller::of(Some("alice"), None);
        let bob = Caller::of(Some("bob"), None);
        for caller in [&ip(1), &alice] {
            assert!(limiter.admit_at(caller, t0).is_ok());
            assert!(limiter.admit_at(caller, t0).is_ok());
            assert!(limiter.admit_at(caller, t0).is_err());
        }
        assert!(limiter.admit_at(&ip(2), t0).is_ok());
        assert!(limiter.admit_at(&bob, t0).is_ok());
    }

    #[test]
    fn a_request_with_a_principal_is_limited_by_its_subject_not_its_address() {
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert_eq!(
            Caller::of(Some("alice"), Some(peer)),
            Caller::Subject("alice".into())
        );
        assert_eq!(Caller::of(None, Some(peer)), ip(1));
    }

    #[test]
    fn idle_buckets_are_dropped_and_the_number_kept_never_exceeds_the_cap() {
        let limiter = RateLimiter::with_max_callers(Some(ONE_PER_SECOND_BURST_TWO), 3);
        let t0 = Instant::now();
        for last in 1..=10 {
            limiter.admit_at(&ip(last), t0).unwrap();
            assert!(limiter.callers() <= 3);
        }
        // Two seconds later every bucket has refilled: the next request sweeps them all.
        limiter
            .admit_at(&ip(200), t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!(limiter.callers(), 1);
    }

    #[test]
    fn a_limiter_that_is_off_admits_everything() {
        let limiter = RateLimiter::new(None);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.admit_at(&ip(1), t0).is_ok());
        }
        assert_eq!(limiter.callers(), 0);
    }

    #[test]
    fn settings_default_turn_off_and_refuse_nonsense() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            RateLimit::from_lookup(move |name| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        assert_eq!(env(&[]), Ok(Some(RateLimit::default())));
        assert_eq!(env(&[(ENABLED_VAR, "off")]), Ok(None));
        assert_eq!(
            env(&[(PER_SECOND_VAR, "0.5"), (BURST_VAR, "4")]),
            Ok(Some(RateLimit {
                per_second: 0.5,
                burst: 4
            }))
        );
        for bad in [
            &[(PER_SECOND_VAR, "0")][..],
            &[(PER_SECOND_VAR, "fast")],
            // A bucket that would take longer than any duration to fill.
            &[(PER_SECOND_VAR, "1e-300")],
            &[(BURST_VAR, "0")],
            &[(ENABLED_VAR, "maybe")],
        ] {
            let err = env(bad).unwrap_err();
            assert!(err.contains(bad[0].0), "{err}");
        }
    }
}

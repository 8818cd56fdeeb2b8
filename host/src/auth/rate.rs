//! Rate limits: a token bucket per key (a principal, a client address, a
//! principal and tool). A bucket holds a minute's budget and refills
//! continuously, so bursts up to the budget pass and a steady rate above it
//! is refused until the bucket refills.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `[auth.rate_limit]` table. 0 turns a limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// HTTP requests per minute per principal (per client address in
    /// public mode).
    #[serde(default = "default_requests")]
    pub requests_per_minute: u32,
    /// Calls per minute per principal and tool.
    #[serde(default = "default_tool_calls")]
    pub tool_calls_per_minute: u32,
    /// Failed authentications per minute per client address; past it, the
    /// address is refused (429) even with good credentials until its
    /// budget refills, so credentials cannot be guessed at speed.
    #[serde(default = "default_failed_auth")]
    pub failed_auth_per_minute: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            requests_per_minute: default_requests(),
            tool_calls_per_minute: default_tool_calls(),
            failed_auth_per_minute: default_failed_auth(),
        }
    }
}

fn default_requests() -> u32 {
    600
}
fn default_tool_calls() -> u32 {
    120
}
fn default_failed_auth() -> u32 {
    30
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// The bucket keys share once the table is full.
const OVERFLOW: &str = "(others, while the table is full)";

/// Token buckets of one budget, by key.
pub struct Limiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Limiter {
        Limiter {
            per_minute,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token from `key`'s bucket at `now`; when it is empty, how
    /// long until it holds one again.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        self.with_bucket(key, now, |bucket| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Whether `key`'s bucket is empty at `now` (taking nothing); if so,
    /// how long until it holds a token again.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        self.with_bucket(key, now, |bucket| bucket.tokens >= 1.0)
    }

    /// Refills `key`'s bucket to `now` and lets `admit` decide on it.
    fn with_bucket(
        &self,
        key: &str,
        now: Instant,
        admit: impl FnOnce(&mut Bucket) -> bool,
    ) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_second
                    < capacity
            });
        }
        // Still full of keys in use (a flood of distinct keys): the
        // newcomers share one bucket, so the table stays bounded and the
        // flood is still limited.
        let key = if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            OVERFLOW
        } else {
            key
        };
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if admit(bucket) {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_waits_for_the_refill() {
        let limiter = Limiter::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            assert!(limiter.take("alice", start).is_ok());
        }
        let wait = limiter.take("alice", start).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(limiter.take("bob", start).is_ok(), "buckets are per key");
        assert!(
            limiter
                .take("alice", start + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            limiter
                .take("alice", start + Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn checking_takes_nothing() {
        let limiter = Limiter::new(2);
        let now = Instant::now();
        for _ in 0..10 {
            assert!(limiter.check("k", now).is_ok());
        }
        assert!(limiter.take("k", now).is_ok() && limiter.take("k", now).is_ok());
        assert!(limiter.check("k", now).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = Limiter::new(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.take("k", now).is_ok()));
    }
}

//! Rate buckets in memory: a token bucket per key, holding a minute's
//! budget and refilling continuously, so bursts up to the budget pass and
//! a steady rate above it is refused until the bucket refills.

use super::RateBuckets;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// The bucket keys share once the table is full.
const OVERFLOW: &str = "(others, while the table is full)";

/// Token buckets of one budget, by key, in this process's memory.
pub struct MemoryRateBuckets {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl MemoryRateBuckets {
    pub fn new(per_minute: u32) -> MemoryRateBuckets {
        MemoryRateBuckets {
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

impl RateBuckets for MemoryRateBuckets {
    fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        MemoryRateBuckets::take(self, key, now)
    }

    fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        MemoryRateBuckets::check(self, key, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_waits_for_the_refill() {
        let limiter = MemoryRateBuckets::new(60);
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
        let limiter = MemoryRateBuckets::new(2);
        let now = Instant::now();
        for _ in 0..10 {
            assert!(limiter.check("k", now).is_ok());
        }
        assert!(limiter.take("k", now).is_ok() && limiter.take("k", now).is_ok());
        assert!(limiter.check("k", now).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = MemoryRateBuckets::new(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.take("k", now).is_ok()));
    }
}

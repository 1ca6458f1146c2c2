//! Per-destination message rate limits: a token bucket per next hop, shared
//! by all shards, so `[[rate_limit]]` holds for the process as a whole.
//!
//! The bucket is shaping's ([`crate::shape::rate::Bucket`]): at most
//! `count` tokens (the burst allowed after a quiet spell), refilled at
//! `count / per`. Each transaction takes one token; when none is there, the
//! caller learns how long to wait for the next.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Rate;
use crate::model::Nexthop;
use crate::shape::rate::Bucket;

/// The buckets of every destination with a rate limit.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<Nexthop, Bucket>>,
}

impl RateLimits {
    /// Takes a token for one transaction to `hop`, or says how long to wait.
    pub fn take(&self, hop: &Nexthop, rate: Rate) -> Result<(), Duration> {
        let now = Instant::now();
        // A poisoned lock only means another thread panicked while holding
        // it; a bucket is two numbers and stays usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry(hop.clone())
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let rate = Rate {
            count: 3,
            per: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        for _ in 0..3 {
            assert!(b.take(rate, t0).is_ok());
        }
        let wait = b.take(rate, t0).unwrap_err();
        assert!(wait > Duration::from_millis(300) && wait <= Duration::from_millis(334));
        // A third of a second later, exactly one more.
        let t1 = t0 + Duration::from_millis(340);
        assert!(b.take(rate, t1).is_ok());
        assert!(b.take(rate, t1).is_err());
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(rate, t2).is_ok());
        }
        assert!(b.take(rate, t2).is_err());
    }

    #[test]
    fn per_minute_rates_wait_long() {
        let rate = Rate {
            count: 1,
            per: Duration::from_secs(60),
        };
        let limits = RateLimits::default();
        let hop = Nexthop::parse("[127.0.0.1]:25").unwrap();
        assert!(limits.take(&hop, rate).is_ok());
        let wait = limits.take(&hop, rate).unwrap_err();
        assert!(wait > Duration::from_secs(59));
        let other = Nexthop::parse("[127.0.0.2]:25").unwrap();
        assert!(limits.take(&other, rate).is_ok(), "buckets are per hop");
    }
}

//! Per-destination message rate limits: a token bucket per next hop, shared
//! by all shards, so `[[rate_limit]]` holds for the process as a whole.
//!
//! A bucket holds at most `count` tokens (the burst allowed after a quiet
//! spell) and refills at `count / per`. Each transaction takes one token;
//! when none is there, the caller learns how long to wait for the next.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Rate;
use crate::model::Nexthop;

/// One destination's tokens.
#[derive(Clone, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.count as f64,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate.per_second()).min(rate.count as f64);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second(),
            ))
        }
    }
}

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

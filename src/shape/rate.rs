//! A token bucket per site and source, sans-IO (the caller passes `now`).
//!
//! A bucket holds at most `count` tokens (the burst after a quiet spell)
//! and refills at `count / per`; each message (or connection, for a
//! connection rate) takes one. A bucket that has refilled completely is
//! the same as no bucket, which is what lets idle ones be evicted.

use std::time::{Duration, Instant};

use crate::config::Rate;

/// One path's tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate.count),
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * rate.per_second()).min(f64::from(rate.count));
    }

    /// Takes a token, or says how long until one is there. `rate` may
    /// change between calls (automation cuts it); the bucket follows.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second(),
            ))
        }
    }

    /// True when the bucket is full again at `now` (it may be dropped).
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut b = self.clone();
        b.refill(rate, now);
        b.tokens >= f64::from(rate.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_refill_and_cut_rates() {
        let rate = Rate {
            count: 2,
            per: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        assert!(b.take(rate, t0).is_ok() && b.take(rate, t0).is_ok());
        let wait = b.take(rate, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(!b.is_full(rate, t0 + Duration::from_millis(999)));
        assert!(b.is_full(rate, t0 + Duration::from_secs(1)));
        // A cut rate caps the tokens at its smaller burst.
        let cut = Rate { count: 1, ..rate };
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.take(cut, t1).is_ok());
        assert!(b.take(cut, t1).is_err());
    }
}

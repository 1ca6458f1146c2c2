//! Rate limiting for a warning that repeats while a condition lasts (a
//! full disk refusing every message): the first occurrence is logged, then
//! at most one line per interval, saying how many were held back.

use std::time::{Duration, Instant};

/// How often a repeated condition is logged while it lasts.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// Lets one occurrence of a repeated warning through per interval and
/// counts the others.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// When the last line was let through; `None` before the first.
    last: Option<Instant>,
    /// Occurrences held back since then.
    held: u64,
}

impl Throttle {
    /// A throttle letting one line through per `every`.
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// Counts one occurrence now; see [`Throttle::hit_at`].
    pub fn hit(&mut self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    /// Counts one occurrence at `now`. Returns `Some(n)` when it should be
    /// logged, `n` being how many were held back since the last line
    /// logged; `None` when it is to be left out.
    pub fn hit_at(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }

    /// True once an occurrence has been counted since the last
    /// [`Throttle::reset`].
    pub fn is_active(&self) -> bool {
        self.last.is_some()
    }

    /// The condition is over: the next occurrence is logged at once.
    /// Returns how many occurrences were held back since the last line.
    pub fn reset(&mut self) -> u64 {
        self.last = None;
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let mut t = Throttle::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(!t.is_active());
        assert_eq!(t.hit_at(t0), Some(0), "the first one is logged");
        for s in 1..60 {
            assert_eq!(t.hit_at(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(t.hit_at(t0 + Duration::from_secs(60)), Some(59));
        assert_eq!(t.hit_at(t0 + Duration::from_secs(61)), None);
        assert!(t.is_active());
        assert_eq!(t.reset(), 1);
        assert!(!t.is_active());
        assert_eq!(
            t.hit_at(t0 + Duration::from_secs(62)),
            Some(0),
            "after a reset the next one is logged at once"
        );
    }
}

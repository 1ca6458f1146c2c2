//! What a provider's throttle needs: a token bucket that limits accepted
//! transactions to a rate (with a burst), a parsed configured reply
//! (`421 4.7.28 ...`), and a meter of the most messages accepted in any
//! one-second window, so a benchmark can show that nobody went over a cap.

use std::time::Instant;

use crate::proto::server::Reply;

use super::SinkError;

/// A token bucket: holds at most `burst` tokens and refills at `rate` per
/// second; each transaction takes one.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` and `burst` were validated (> 0, ≥ 1).
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts events per whole second since the first one and keeps the most
/// seen in one second.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RateMeter {
    start: Option<Instant>,
    second: u64,
    count: u64,
    max: u64,
}

impl RateMeter {
    /// Counts one event at `now`.
    pub(crate) fn tick(&mut self, now: Instant) {
        let start = *self.start.get_or_insert(now);
        let second = now.saturating_duration_since(start).as_secs();
        if second != self.second {
            self.second = second;
            self.count = 0;
        }
        self.count += 1;
        self.max = self.max.max(self.count);
    }

    /// The most events counted in one window.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }
}

/// Parses a configured reply line, `CODE text` with a 4xx or 5xx code (the
/// text may start with an enhanced status code, written as given).
pub fn parse_reply(line: &str) -> Result<Reply, SinkError> {
    let bad = || {
        SinkError::Config(format!(
            "reply {line:?} must be a 4xx or 5xx code, a blank and a text"
        ))
    };
    let line = line.trim();
    let (code, text) = line.split_once(' ').ok_or_else(bad)?;
    let code: u16 = code.parse().map_err(|_| bad())?;
    if !(400..600).contains(&code) || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(Reply::new(code, "", text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        // 100 ms later: one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1));
        assert!(!b.take(t1));
        // A long pause refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(t2)).count(), 3);
        // Over one simulated second at 1 ms steps, about the rate passes.
        let mut passed = 0;
        for ms in 1..=1000 {
            if b.take(t2 + Duration::from_millis(ms)) {
                passed += 1;
            }
        }
        assert!((9..=11).contains(&passed), "{passed}");
    }

    #[test]
    fn meter_keeps_the_busiest_second() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        for i in 0..5 {
            m.tick(t0 + Duration::from_millis(i * 100));
        }
        for i in 0..3 {
            m.tick(t0 + Duration::from_millis(1000 + i * 100));
        }
        assert_eq!(m.max(), 5);
        for _ in 0..7 {
            m.tick(t0 + Duration::from_millis(5500));
        }
        assert_eq!(m.max(), 7);
    }

    #[test]
    fn replies_parse() {
        let r = parse_reply("421 4.7.28 slow down please").unwrap();
        assert_eq!((r.code, r.text.as_ref()), (421, "4.7.28 slow down please"));
        let mut out = Vec::new();
        r.write(true, &mut out);
        assert_eq!(out, b"421 4.7.28 slow down please\r\n");
        for bad in ["", "421", "250 ok", "abc text", "421 ", "999 x"] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
    }
}

//! Random draws for fault injection and reply latency. A probability of 0
//! draws nothing, so a sink without faults spends no time here.

use std::time::Duration;

use fastrand::Rng;

use super::config::Latency;

/// The outcome of a fault draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No fault.
    Pass,
    /// A temporary (4xx) failure.
    Temp,
    /// A permanent (5xx) failure.
    Perm,
}

/// Draws a temporary failure with probability `temp`, else a permanent one
/// with probability `perm`.
pub(crate) fn verdict(rng: &mut Rng, temp: f64, perm: f64) -> Verdict {
    if temp <= 0.0 && perm <= 0.0 {
        return Verdict::Pass;
    }
    let x = rng.f64();
    if x < temp {
        Verdict::Temp
    } else if x < temp + perm {
        Verdict::Perm
    } else {
        Verdict::Pass
    }
}

/// True with probability `p`.
pub(crate) fn happens(rng: &mut Rng, p: f64) -> bool {
    p > 0.0 && rng.f64() < p
}

/// The total delay before sending `replies` replies.
pub(crate) fn delay(latency: Latency, rng: &mut Rng, replies: u32) -> Duration {
    match latency {
        Latency::None => Duration::ZERO,
        Latency::Fixed(d) => d.saturating_mul(replies),
        Latency::RoundTrip(d) => {
            if replies > 0 {
                d
            } else {
                Duration::ZERO
            }
        }
        Latency::Uniform(lo, hi) => {
            let span = hi.saturating_sub(lo);
            (0..replies).fold(Duration::ZERO, |total, _| {
                total.saturating_add(lo + span.mul_f64(rng.f64()))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certain_and_impossible() {
        let mut rng = Rng::with_seed(1);
        for _ in 0..1000 {
            assert_eq!(verdict(&mut rng, 0.0, 0.0), Verdict::Pass);
            assert_eq!(verdict(&mut rng, 1.0, 0.0), Verdict::Temp);
            assert_eq!(verdict(&mut rng, 0.0, 1.0), Verdict::Perm);
            assert_eq!(verdict(&mut rng, 1.0, 1.0), Verdict::Temp);
            assert!(happens(&mut rng, 1.0));
            assert!(!happens(&mut rng, 0.0));
        }
    }

    #[test]
    fn proportions_and_reproducibility() {
        let draw = |seed| {
            let mut rng = Rng::with_seed(seed);
            (0..10_000)
                .map(|_| verdict(&mut rng, 0.2, 0.3))
                .collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42));
        assert_ne!(a, draw(43));
        let temp = a.iter().filter(|v| **v == Verdict::Temp).count();
        let perm = a.iter().filter(|v| **v == Verdict::Perm).count();
        assert!((1700..2300).contains(&temp), "{temp}");
        assert!((2600..3400).contains(&perm), "{perm}");
    }

    #[test]
    fn a_round_trip_is_paid_once_per_batch() {
        let mut rng = Rng::with_seed(1);
        let rtt = Latency::RoundTrip(Duration::from_millis(50));
        assert_eq!(delay(rtt, &mut rng, 4), Duration::from_millis(50));
        assert_eq!(delay(rtt, &mut rng, 1), Duration::from_millis(50));
        assert_eq!(delay(rtt, &mut rng, 0), Duration::ZERO);
    }

    #[test]
    fn delays() {
        let mut rng = Rng::with_seed(1);
        let ms = Duration::from_millis;
        assert_eq!(delay(Latency::None, &mut rng, 5), Duration::ZERO);
        assert_eq!(delay(Latency::Fixed(ms(3)), &mut rng, 4), ms(12));
        let d = delay(Latency::Uniform(ms(10), ms(20)), &mut rng, 3);
        assert!(d >= ms(30) && d < ms(60), "{d:?}");
        assert_eq!(delay(Latency::Uniform(ms(5), ms(5)), &mut rng, 2), ms(10));
    }
}

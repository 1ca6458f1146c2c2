//! Histograms of fixed buckets made of atomics, and their exposition.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::header;

/// A histogram of fixed buckets made of atomics.
#[derive(Debug)]
pub struct AtomicHistogram<const N: usize> {
    bounds: [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    /// Sum in microunits (µs for seconds), to stay an integer.
    sum_micro: AtomicU64,
}

impl<const N: usize> AtomicHistogram<N> {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: [f64; N]) -> Self {
        AtomicHistogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micro: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }
}

/// A histogram summed over shards: cumulative `_bucket`s, `_sum`, `_count`.
pub(super) fn histogram<'a, const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    parts: impl Iterator<Item = &'a AtomicHistogram<N>> + Clone,
    micro: f64,
) {
    header(out, name, "histogram", help);
    let Some(first) = parts.clone().next() else {
        return;
    };
    let mut cumulative = 0u64;
    for (i, bound) in first.bounds.iter().enumerate() {
        cumulative += parts
            .clone()
            .map(|h| h.buckets[i].load(Ordering::Relaxed))
            .sum::<u64>();
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count: u64 = parts.clone().map(|h| h.count.load(Ordering::Relaxed)).sum();
    let sum: u64 = parts.map(|h| h.sum_micro.load(Ordering::Relaxed)).sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", sum as f64 / micro);
    let _ = writeln!(out, "{name}_count {count}");
}

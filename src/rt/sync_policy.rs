//! Where a shard's fdatasync runs: on the shard's own thread while the
//! disk answers fast, handed off (an io_uring operation, a blocking-pool
//! thread) once it does not.
//!
//! Handing an fdatasync off costs a second thread's wake-up and the
//! completion's wake-up back: on the benchmark machine about 100 µs of CPU
//! per commit more than the same fdatasync made inline, most of the io-wq
//! thread's time on the SMTP path, where commits hold a few messages each.
//! Inline, though, the shard's deliveries wait for the disk: on a slow
//! disk, or for a large commit, that would stall them. So only small
//! commits may sync inline (the caller says which), and a shard syncs them
//! inline while its inline
//! fdatasyncs take well under a millisecond on average, and after one
//! that pushes the average over [`INLINE_LIMIT`] hands the next
//! [`OFFLOAD_SPELL`] off before it tries inline again.

use std::time::Duration;

/// An average inline fdatasync above this sends the next ones off the
/// thread.
pub const INLINE_LIMIT: Duration = Duration::from_millis(1);

/// How many fdatasyncs are handed off before inline is tried again.
pub const OFFLOAD_SPELL: u32 = 256;

/// One shard's choice, from the inline fdatasyncs it has timed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncPolicy {
    /// Moving average of inline fdatasync times, in microseconds (weight
    /// 1/8 for each new one).
    average_micros: u64,
    /// fdatasyncs still to hand off before trying inline again.
    offload_left: u32,
}

impl SyncPolicy {
    /// A policy that hands every fdatasync off (tests of that path).
    pub fn always_offload() -> SyncPolicy {
        SyncPolicy {
            average_micros: 0,
            offload_left: u32::MAX,
        }
    }

    /// True when the next fdatasync should run inline; counts a handed-off
    /// one otherwise.
    pub fn next_inline(&mut self) -> bool {
        if self.offload_left == 0 {
            return true;
        }
        self.offload_left -= 1;
        if self.offload_left == 0 {
            // The probe after a spell is judged on its own.
            self.average_micros = 0;
        }
        false
    }

    /// Records how long an inline fdatasync took.
    pub fn inline_took(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.average_micros = if self.average_micros == 0 {
            micros
        } else {
            (self.average_micros * 7 + micros) / 8
        };
        if self.average_micros > INLINE_LIMIT.as_micros() as u64 {
            self.offload_left = OFFLOAD_SPELL;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_disks_sync_inline_and_a_slow_spell_hands_off_then_probes() {
        let mut p = SyncPolicy::default();
        for _ in 0..100 {
            assert!(p.next_inline());
            p.inline_took(Duration::from_micros(200));
        }
        // One slow sync among fast ones does not lift the average over.
        assert!(p.next_inline());
        p.inline_took(Duration::from_millis(3));
        assert!(p.next_inline(), "average still under the limit");
        // A disk that stays slow: handed off for a spell.
        for _ in 0..10 {
            p.inline_took(Duration::from_millis(5));
        }
        for _ in 0..OFFLOAD_SPELL {
            assert!(!p.next_inline());
        }
        // Then inline once more, judged afresh: fast again stays inline.
        assert!(p.next_inline());
        p.inline_took(Duration::from_micros(300));
        assert!(p.next_inline());
        // Slow again: another spell at once.
        p.inline_took(Duration::from_millis(20));
        assert!(!p.next_inline());
    }
}

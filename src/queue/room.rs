//! Room for the queue on a full disk: how much of a segment new mail
//! leaves to the queue manager's own records, and what a shard does while
//! no new segment can be created (refuse at once, try again at most once a
//! second, say so once a minute). See docs/ARCHITECTURE.md, "Full disk".

use std::time::{Duration, Instant};

use crate::obs::throttle::{Throttle, REPEAT_EVERY};

use super::QueueError;

/// After a segment could not be created, how long appends that need a new
/// one fail at once before the creation is tried again: a full disk must
/// not cost a create, a failed fallocate and an unlink per message.
const CREATE_RETRY: Duration = Duration::from_secs(1);

/// The part of a segment that new mail leaves to the queue manager's own
/// records (bounce notices, defer records), so they still fit when the
/// disk is full: 1/32 of a segment (2 MiB of the default 64 MiB), at least
/// 256 KiB, at most a quarter of it.
pub(super) fn intake_reserve(segment_size: u64) -> usize {
    (segment_size / 32)
        .max(256 << 10)
        .min(segment_size / 4)
        .try_into()
        .unwrap_or(usize::MAX)
}

/// Since when, and why, no segment could be created.
struct Lack {
    /// Why the last attempt failed.
    reason: String,
    /// When it was made.
    last_try: Instant,
    /// When the first attempt failed.
    since: Instant,
    /// Appends refused since then.
    refused: u64,
}

/// Whether a shard can create segments, as far as its last attempt showed.
pub(super) struct Room {
    shard: usize,
    lack: Option<Lack>,
    /// How long appends fail at once after a failed creation.
    pub(super) retry: Duration,
    /// Says that no segment can be created: once, then once a minute.
    log: Throttle,
}

impl Room {
    /// Room for shard `shard`, not known to lack any yet.
    pub(super) fn new(shard: usize) -> Room {
        Room {
            shard,
            lack: None,
            retry: CREATE_RETRY,
            log: Throttle::new(REPEAT_EVERY),
        }
    }

    /// Before a segment is created: fails at once with
    /// [`QueueError::NoRoom`] while the last failed attempt is more recent
    /// than the retry interval.
    pub(super) fn check(&mut self) -> Result<(), QueueError> {
        match &self.lack {
            Some(lack) if lack.last_try.elapsed() < self.retry => {
                let reason = lack.reason.clone();
                Err(self.refuse(reason))
            }
            _ => Ok(()),
        }
    }

    /// Creating a segment failed with `e`: remembers it and returns the
    /// [`QueueError::NoRoom`] to hand to the caller.
    pub(super) fn failed(&mut self, e: &QueueError) -> QueueError {
        let now = Instant::now();
        let reason = e.to_string();
        match &mut self.lack {
            Some(lack) => {
                lack.reason.clone_from(&reason);
                lack.last_try = now;
            }
            None => {
                self.lack = Some(Lack {
                    reason: reason.clone(),
                    last_try: now,
                    since: now,
                    refused: 0,
                })
            }
        }
        self.refuse(reason)
    }

    /// A segment was created: if there was no room before, says that new
    /// mail is accepted again.
    pub(super) fn created(&mut self) {
        if let Some(lack) = self.lack.take() {
            self.log.reset();
            tracing::info!(
                target: "qmgr",
                "shard {}: queue segment created after {} s without room; new mail is accepted again ({} queue writes were refused meanwhile)",
                self.shard,
                lack.since.elapsed().as_secs(),
                lack.refused
            );
        }
    }

    /// True while the last attempt to create a segment failed.
    #[cfg(test)]
    pub(super) fn lacking(&self) -> bool {
        self.lack.is_some()
    }

    /// Counts one append refused for want of a segment and says so in the
    /// log: the first time, then at most once a minute.
    fn refuse(&mut self, reason: String) -> QueueError {
        if let Some(lack) = self.lack.as_mut() {
            lack.refused += 1;
        }
        match self.log.hit() {
            Some(0) => {
                tracing::warn!(target: "qmgr", "shard {}: no room for a new queue segment: {reason}; new mail is refused with a temporary error until there is room again; queued mail is still delivered", self.shard)
            }
            Some(held) => {
                tracing::warn!(target: "qmgr", "shard {}: still no room for a new queue segment: {reason}; {held} more queue writes refused since the last warning", self.shard)
            }
            None => {}
        }
        QueueError::NoRoom { reason }
    }
}

/// Test fail point: segment creations on a thread that set [`DISK_FULL`]
/// fail as on a full disk (see `Store::create_segment`).
#[cfg(test)]
pub(super) mod fail {
    use std::cell::Cell;

    thread_local! {
        /// Set: segment creations on this thread fail with ENOSPC.
        pub static DISK_FULL: Cell<bool> = const { Cell::new(false) };
        /// Segment creations tried on this thread.
        pub static CREATES: Cell<usize> = const { Cell::new(0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_32nd_within_bounds() {
        assert_eq!(intake_reserve(64 << 20), 2 << 20);
        assert_eq!(intake_reserve(1 << 20), 256 << 10);
        assert_eq!(intake_reserve(4 << 30), 128 << 20);
    }

    #[test]
    fn refuses_at_once_within_the_retry_interval() {
        let mut room = Room::new(3);
        assert!(room.check().is_ok());
        let e = QueueError::io(
            "fallocate",
            "/q/3/x.seg",
            std::io::Error::from_raw_os_error(28),
        );
        let no_room = room.failed(&e);
        assert!(no_room.is_no_room() && no_room.is_transient());
        assert!(no_room.to_string().contains("fallocate: No space left"));
        room.retry = Duration::from_secs(3600);
        for _ in 0..10 {
            assert!(room.check().unwrap_err().is_no_room());
        }
        assert_eq!(room.lack.as_ref().map(|l| l.refused), Some(11));
        room.retry = Duration::ZERO;
        assert!(room.check().is_ok(), "time to try again");
        room.created();
        assert!(!room.lacking());
        assert!(!room.log.is_active(), "the next lack is logged at once");
    }
}

//! The bounded lock-free pickup ring between pickup and the shards.
//!
//! A push wakes an idle shard, except while a shard is in the middle of a
//! group commit: that shard takes what arrived meanwhile into its next
//! commit when this one returns. The fdatasync is a commit's expensive
//! part, and waking the other shard to commit a message or two of its own
//! doubled the fdatasyncs of a trickle of submissions (sendmail processes,
//! SMTP sessions) for no gain in throughput. A shard that leaves a full
//! batch behind still wakes another ([`PickupRing::wake_one`]).

use std::sync::atomic::{fence, AtomicUsize, Ordering};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use crate::model::Submission;

/// A bounded MPMC ring of submissions with a wake-up for idle shards.
pub struct PickupRing {
    queue: ArrayQueue<Box<Submission>>,
    work: Notify,
    /// Shards in the middle of a group commit of ring submissions.
    committing: AtomicUsize,
}

impl PickupRing {
    /// A ring holding at most `capacity` submissions.
    pub fn new(capacity: usize) -> PickupRing {
        PickupRing {
            queue: ArrayQueue::new(capacity.max(1)),
            work: Notify::new(),
            committing: AtomicUsize::new(0),
        }
    }

    /// Offers a submission; gives it back when the ring is full. Boxed so a
    /// ring slot is one pointer and a hand-off moves no message data.
    pub fn push(&self, sub: Box<Submission>) -> Result<(), Box<Submission>> {
        self.queue.push(sub)?;
        // Paired with the fence in `CommitGuard::drop`: either this load
        // sees the commit ended, or that shard's next pop sees the push.
        fence(Ordering::SeqCst);
        if self.committing.load(Ordering::SeqCst) > 0 {
            // A committing shard pops it when its commit returns.
            return Ok(());
        }
        // Stores a permit when no shard is waiting, so a wake-up is never lost.
        self.work.notify_one();
        Ok(())
    }

    /// Marks the calling shard as committing what it popped until the
    /// guard drops; the shard must pop again after that (its loop does).
    pub fn committing(&self) -> CommitGuard<'_> {
        self.committing.fetch_add(1, Ordering::SeqCst);
        CommitGuard { ring: self }
    }

    /// Takes the oldest submission, if any.
    pub fn pop(&self) -> Option<Box<Submission>> {
        self.queue.pop()
    }

    /// Number of submissions waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Wakes one idle shard (used by a shard that leaves work behind).
    pub fn wake_one(&self) {
        self.work.notify_one();
    }

    /// Waits until work may be available.
    pub async fn wait(&self) {
        self.work.notified().await;
    }
}

/// A shard's group commit in progress (see [`PickupRing::committing`]).
pub struct CommitGuard<'a> {
    ring: &'a PickupRing,
}

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        self.ring.committing.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Envelope, MessageFlags, Source};

    fn sub(i: u64) -> Box<Submission> {
        Box::new(Submission {
            envelope: Envelope::default(),
            wire: vec![],
            flags: MessageFlags::default(),
            dsn: Default::default(),
            message_id: String::new(),
            arrival_micros: 0,
            uid: 0,
            source: Source::Internal(i),
            origin: Default::default(),
            file_identity: None,
            campaign: None,
        })
    }

    #[test]
    fn full_ring_hands_the_submission_back_in_order() {
        let ring = PickupRing::new(2);
        ring.push(sub(1)).unwrap();
        ring.push(sub(2)).unwrap();
        let back = ring.push(sub(3)).unwrap_err();
        assert_eq!(back.source, Source::Internal(3));
        assert_eq!(ring.pop().unwrap().source, Source::Internal(1));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn a_push_during_a_commit_waits_for_the_committing_shard() {
        let ring = PickupRing::new(4);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let short = std::time::Duration::from_millis(50);
        {
            let _commit = ring.committing();
            ring.push(sub(1)).unwrap();
            rt.block_on(async {
                assert!(
                    tokio::time::timeout(short, ring.wait()).await.is_err(),
                    "no other shard woken while one commits"
                );
            });
        }
        assert_eq!(ring.pop().unwrap().source, Source::Internal(1));
        ring.push(sub(2)).unwrap();
        rt.block_on(async {
            tokio::time::timeout(short, ring.wait())
                .await
                .expect("a push after the commit wakes a shard");
        });
    }

    #[test]
    fn a_push_before_the_wait_is_not_lost() {
        let ring = PickupRing::new(4);
        ring.push(sub(1)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), ring.wait())
                .await
                .expect("permit stored by push");
        });
    }
}

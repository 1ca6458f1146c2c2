//! The bounded lock-free pickup ring between pickup and the shards.

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use crate::model::Submission;

/// A bounded MPMC ring of submissions with a wake-up for idle shards.
pub struct PickupRing {
    queue: ArrayQueue<Box<Submission>>,
    work: Notify,
}

impl PickupRing {
    /// A ring holding at most `capacity` submissions.
    pub fn new(capacity: usize) -> PickupRing {
        PickupRing {
            queue: ArrayQueue::new(capacity.max(1)),
            work: Notify::new(),
        }
    }

    /// Offers a submission; gives it back when the ring is full. Boxed so a
    /// ring slot is one pointer and a hand-off moves no message data.
    pub fn push(&self, sub: Box<Submission>) -> Result<(), Box<Submission>> {
        self.queue.push(sub)?;
        // Stores a permit when no shard is waiting, so a wake-up is never lost.
        self.work.notify_one();
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Source;

    fn sub(i: u64) -> Box<Submission> {
        Submission::for_test(i, b"")
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

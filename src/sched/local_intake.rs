//! A shard's local intake: submissions made on the shard's own thread (the
//! SMTP sessions placed on it) go straight into its next group commit.
//! Neither the offer nor the acknowledgement then crosses a thread: no
//! pickup ring, no wake-up of another thread either way, which on a small
//! machine costs more than the session's own work.
//!
//! The shard installs its intake when it starts taking work and removes it
//! when it stops; [`offer_here`] finds it through a thread-local. On any
//! other thread (or when the intake is full) the offer is handed back, and
//! the caller uses the pickup ring as before.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use tokio::sync::Notify;

use crate::model::Submission;

/// Most submissions waiting in one local intake; past it, offers go to
/// the pickup ring (whose own bound is the backpressure).
const CAPACITY: usize = 4096;

thread_local! {
    /// The intake of the shard running on this thread, while it runs.
    static CURRENT: RefCell<Option<Rc<LocalIntake>>> = const { RefCell::new(None) };
}

/// Submissions offered on the shard's own thread, oldest first.
pub(super) struct LocalIntake {
    queue: RefCell<VecDeque<Box<Submission>>>,
    work: Notify,
}

/// Removes the thread's intake when dropped (the shard stopped taking
/// work, or ended early).
pub(super) struct Installed(Rc<LocalIntake>);

impl std::ops::Deref for Installed {
    type Target = LocalIntake;

    fn deref(&self) -> &LocalIntake {
        &self.0
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

impl LocalIntake {
    /// Makes a new intake this thread's; offers on this thread reach it
    /// until the returned guard is dropped.
    pub(super) fn install() -> Installed {
        let intake = Rc::new(LocalIntake {
            queue: RefCell::new(VecDeque::new()),
            work: Notify::new(),
        });
        CURRENT.with(|c| *c.borrow_mut() = Some(Rc::clone(&intake)));
        Installed(intake)
    }

    /// The oldest waiting submission, if any.
    pub(super) fn pop(&self) -> Option<Box<Submission>> {
        self.queue.borrow_mut().pop_front()
    }

    /// True when nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    /// Resolves once something was offered (an offer made before the wait
    /// is not missed: the wake-up is stored).
    pub(super) async fn wait(&self) {
        self.work.notified().await;
    }

    fn push(&self, sub: Box<Submission>) -> Result<(), Box<Submission>> {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= CAPACITY {
            return Err(sub);
        }
        queue.push_back(sub);
        self.work.notify_one();
        Ok(())
    }
}

/// Offers `sub` to the shard running on this thread, to be committed with
/// its next group commit and acknowledged to `sub.source` like any other
/// submission. Gives it back when no shard runs on this thread or its
/// intake is full.
pub fn offer_here(sub: Box<Submission>) -> Result<(), Box<Submission>> {
    let intake = CURRENT.with(|c| c.borrow().clone());
    match intake {
        Some(intake) => intake.push(sub),
        None => Err(sub),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::Source;

    fn sub(i: u64) -> Box<Submission> {
        Submission::for_test(i, b"")
    }

    fn number(s: Option<Box<Submission>>) -> Option<u64> {
        s.map(|s| match s.source {
            Source::Internal(i) => i,
            _ => u64::MAX,
        })
    }

    #[test]
    fn offers_reach_the_installed_intake_of_this_thread_only() {
        assert!(
            offer_here(sub(1)).is_err(),
            "no shard runs on this thread yet"
        );
        let intake = LocalIntake::install();
        offer_here(sub(2)).unwrap();
        offer_here(sub(3)).unwrap();
        let other = std::thread::spawn(|| offer_here(sub(4)).is_err());
        assert!(other.join().unwrap(), "another thread has no intake");
        assert_eq!(number(intake.pop()), Some(2));
        assert_eq!(number(intake.pop()), Some(3));
        assert!(intake.is_empty());
        drop(intake);
        assert!(offer_here(sub(5)).is_err(), "removed with its guard");
    }

    #[test]
    fn a_full_intake_hands_the_offer_back() {
        let intake = LocalIntake::install();
        for i in 0..CAPACITY as u64 {
            offer_here(sub(i)).unwrap();
        }
        let back = offer_here(sub(99_999)).unwrap_err();
        assert_eq!(number(Some(back)), Some(99_999));
        assert_eq!(intake.queue.borrow().len(), CAPACITY);
    }

    #[tokio::test]
    async fn an_offer_before_the_wait_is_not_lost() {
        let intake = LocalIntake::install();
        offer_here(sub(1)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), intake.wait())
            .await
            .expect("the stored wake-up");
    }
}

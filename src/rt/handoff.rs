//! A queue from one thread to a pool of blocking threads that sleep while
//! it is empty: a mutex and a condition variable. A waiting thread sleeps
//! at once, where a channel's blocking receive first spins and yields the
//! CPU a few times; with many pool threads on two cores those yields were
//! about three `sched_yield` calls per message (the spool path's unlink
//! threads) and four per `sendmail` submission (`submit.sock`'s
//! connection threads).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Work handed to waiting threads, in order; closed once no more comes.
pub struct Handoff<T> {
    queue: Mutex<(VecDeque<T>, bool)>,
    ready: Condvar,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            queue: Mutex::new((VecDeque::new(), false)),
            ready: Condvar::new(),
        }
    }
}

impl<T> Handoff<T> {
    fn lock(&self) -> MutexGuard<'_, (VecDeque<T>, bool)> {
        // A panic while holding the lock leaves a plain queue behind.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `item` to a waiting thread (or the next that asks). Given back
    /// once the queue is closed.
    pub fn give(&self, item: T) -> Result<(), T> {
        {
            let mut q = self.lock();
            if q.1 {
                return Err(item);
            }
            q.0.push_back(item);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// The next item, waiting for one; `None` once closed and empty.
    pub fn take(&self) -> Option<T> {
        let mut q = self.lock();
        loop {
            if let Some(item) = q.0.pop_front() {
                return Some(item);
            }
            if q.1 {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// No more items: waiting threads get `None` once the queue is empty.
    pub fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn items_reach_waiting_threads_in_order_and_close_ends_them() {
        let h = Arc::new(Handoff::default());
        let takers: Vec<_> = (0..3)
            .map(|_| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(i) = h.take() {
                        got.push(i);
                    }
                    got
                })
            })
            .collect();
        for i in 0..300 {
            h.give(i).unwrap();
        }
        h.close();
        assert_eq!(h.give(300), Err(300), "nothing is taken after close");
        let mut all: Vec<i32> = takers
            .into_iter()
            .flat_map(|t| {
                let got = t.join().unwrap();
                assert!(got.windows(2).all(|w| w[0] < w[1]), "in order per taker");
                got
            })
            .collect();
        all.sort();
        assert_eq!(all, (0..300).collect::<Vec<_>>(), "each item exactly once");
    }
}

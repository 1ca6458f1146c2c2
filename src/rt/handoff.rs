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
    queue: Mutex<State<T>>,
    ready: Condvar,
}

/// What the mutex guards.
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Threads asleep in [`Handoff::take`]: a `give` with none asleep
    /// skips the wake-up (a `futex` call each time, even with no waiter).
    sleeping: usize,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            queue: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                sleeping: 0,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Handoff<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves a plain queue behind.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `item` to a waiting thread (or the next that asks). Given back
    /// once the queue is closed.
    pub fn give(&self, item: T) -> Result<(), T> {
        let wake = {
            let mut q = self.lock();
            if q.closed {
                return Err(item);
            }
            q.items.push_back(item);
            q.sleeping > 0
        };
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The next item, waiting for one; `None` once closed and empty.
    pub fn take(&self) -> Option<T> {
        let mut q = self.lock();
        loop {
            if let Some(item) = q.items.pop_front() {
                return Some(item);
            }
            if q.closed {
                return None;
            }
            q.sleeping += 1;
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            q.sleeping -= 1;
        }
    }

    /// The next item if one is queued, without waiting.
    pub fn try_take(&self) -> Option<T> {
        self.lock().items.pop_front()
    }

    /// True once [`Handoff::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// No more items: waiting threads get `None` once the queue is empty.
    pub fn close(&self) {
        self.lock().closed = true;
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

    #[test]
    fn each_item_wakes_a_sleeping_thread_and_try_take_never_waits() {
        let h = Arc::new(Handoff::default());
        assert_eq!(h.try_take(), None::<u32>);
        let (tx, rx) = std::sync::mpsc::channel();
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let (h, tx) = (Arc::clone(&h), tx.clone());
                std::thread::spawn(move || {
                    while let Some(i) = h.take() {
                        tx.send(i).unwrap();
                    }
                })
            })
            .collect();
        for i in 0..5 {
            // Both takers asleep before each item: it must wake one.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while h.lock().sleeping < 2 {
                assert!(std::time::Instant::now() < deadline, "takers never slept");
                std::thread::yield_now();
            }
            h.give(i).unwrap();
            let got = rx.recv_timeout(std::time::Duration::from_secs(10));
            assert_eq!(got, Ok(i), "a sleeping taker was woken for item {i}");
        }
        h.give(7).unwrap();
        h.close();
        for t in takers {
            t.join().unwrap();
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![7]);
        assert_eq!(h.try_take(), None);
    }
}

//! [`SharedSuppressions`]: one suppression list for every shard thread of
//! the daemon. Checks take only a read lock on the set; changes and
//! refreshes serialize on a mutex and take the set's write lock only to
//! apply what they read or wrote, never across a file lock or an
//! fdatasync.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::entry::{Entry, Scope};
use super::list::{self, Outcome, Refresh, SuppressionList};
use super::set::LiveSet;
use super::{Notice, SuppressError};

/// A [`SuppressionList`] shared across threads (cheap to clone).
#[derive(Clone)]
pub struct SharedSuppressions {
    list: Arc<Mutex<SuppressionList>>,
    set: Arc<RwLock<LiveSet>>,
}

impl SharedSuppressions {
    /// Shares `list`.
    pub fn new(list: SuppressionList) -> SharedSuppressions {
        let set = list.shared_set();
        SharedSuppressions {
            list: Arc::new(Mutex::new(list)),
            set,
        }
    }

    /// The entry that suppresses mail to `address` from `sender_domain`,
    /// as [`SuppressionList::is_suppressed`]. Takes a read lock only.
    pub fn check(&self, address: &str, sender_domain: &str) -> Option<Entry> {
        list::check(&list::read(&self.set), address, sender_domain)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        list::read(&self.set).len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`SuppressionList::refresh`]; the daemon calls it on a timer (once
    /// a second) so changes by the CLI are seen.
    pub fn refresh(&self) -> Result<Refresh, SuppressError> {
        self.lock().refresh()
    }

    /// [`SuppressionList::add`].
    pub fn add(&self, entry: Entry) -> Result<Outcome, SuppressError> {
        self.lock().add(entry)
    }

    /// [`SuppressionList::remove`].
    pub fn remove(&self, address: &str, scope: &Scope) -> Result<bool, SuppressError> {
        self.lock().remove(address, scope)
    }

    /// [`SuppressionList::take_notices`], to be logged.
    pub fn take_notices(&self) -> Vec<Notice> {
        self.lock().take_notices()
    }

    /// The list, for anything else (waits for a change in progress).
    pub fn lock(&self) -> MutexGuard<'_, SuppressionList> {
        // A panic in another thread cannot leave the list half changed:
        // the set changes by whole lines and the journal's state is only
        // advanced after a step succeeded.
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::{Reason, ReasonKind};
    use super::*;

    #[test]
    fn readers_on_other_threads_see_adds_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let shared = SharedSuppressions::new(SuppressionList::open(dir.path()).unwrap());
        let entry = |a: &str| {
            Entry::new(a, Scope::Global, Reason::new(ReasonKind::Unsubscribe, "")).unwrap()
        };
        assert_eq!(shared.add(entry("A@X.example")).unwrap(), Outcome::Added);
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| s.check("a@x.example", "news.example").is_some())
                        .count()
                })
            })
            .collect();
        for i in 0..50 {
            shared.add(entry(&format!("u{i}@x.example"))).unwrap();
        }
        for r in readers {
            assert_eq!(r.join().unwrap(), 1000);
        }
        assert_eq!(shared.len(), 51);
        assert!(shared.remove("a@X.EXAMPLE", &Scope::Global).unwrap());
        assert!(shared.check("a@x.example", "").is_none());
        assert!(!shared.remove("a@x.example", &Scope::Global).unwrap());
        assert!(shared.take_notices().is_empty());
    }
}

//! Open connections per site and source, shared by all shards, so a
//! site's `max_connections` holds for the process whatever the shard
//! count. An entry exists only while a connection is open: the map never
//! grows with sites seen in the past.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::feedback::PathName;

/// How long a refused slot counts as wanted: connections parked idle in
/// that time are closed rather than kept, so the shard that was refused
/// gets the slot.
const WANTED_FOR: Duration = Duration::from_secs(1);

/// One site and source's count.
#[derive(Debug, Default)]
struct PathSlots {
    open: u32,
    /// When a slot was last refused (another shard wants one).
    refused_at: Option<Instant>,
}

/// Open connection counts.
#[derive(Debug, Default)]
pub struct SiteSlots {
    open: Mutex<HashMap<PathName, PathSlots>>,
}

impl SiteSlots {
    /// An empty count, shared.
    pub fn new() -> Arc<SiteSlots> {
        Arc::new(SiteSlots::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathName, PathSlots>> {
        // A panic while holding the lock leaves plain counts behind.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more connection on `path` if fewer than `limit` are open; the
    /// slot is freed when the returned guard drops. A refusal is
    /// remembered for a second: see [`SiteSlot::is_wanted`].
    pub fn try_acquire(self: &Arc<Self>, path: &PathName, limit: u32) -> Option<SiteSlot> {
        let mut open = self.lock();
        let n = open.entry(path.clone()).or_default();
        if n.open >= limit {
            if n.open == 0 {
                open.remove(path);
            } else {
                n.refused_at = Some(Instant::now());
            }
            return None;
        }
        n.open += 1;
        Some(SiteSlot {
            slots: Arc::clone(self),
            path: path.clone(),
        })
    }

    /// Connections open on `path` now.
    pub fn open(&self, path: &PathName) -> u32 {
        self.lock().get(path).map_or(0, |n| n.open)
    }

    /// Every path with connections open, and how many.
    pub fn snapshot(&self) -> Vec<(PathName, u32)> {
        self.lock()
            .iter()
            .map(|(p, n)| (p.clone(), n.open))
            .collect()
    }

    /// Number of paths with connections open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no connection is open anywhere.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A held connection slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SiteSlot {
    slots: Arc<SiteSlots>,
    path: PathName,
}

impl SiteSlot {
    /// True when a slot of this path was refused within the last second:
    /// a connection about to idle should close and leave its slot to
    /// whoever was refused (another shard with mail waiting).
    pub fn is_wanted(&self) -> bool {
        self.slots
            .lock()
            .get(&self.path)
            .and_then(|n| n.refused_at)
            .is_some_and(|at| at.elapsed() < WANTED_FOR)
    }
}

impl Drop for SiteSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(n) = open.get_mut(&self.path) {
            n.open = n.open.saturating_sub(1);
            if n.open == 0 {
                open.remove(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::SiteKey;

    #[test]
    fn limit_holds_and_entries_go_when_closed() {
        let slots = SiteSlots::new();
        let p = PathName {
            site: SiteKey::new("google"),
            source: None,
        };
        let a = slots.try_acquire(&p, 2).unwrap();
        let b = slots.try_acquire(&p, 2).unwrap();
        assert!(slots.try_acquire(&p, 2).is_none());
        assert_eq!(slots.open(&p), 2);
        drop(a);
        drop(b);
        assert!(slots.is_empty(), "no entry without open connections");
        let other = PathName {
            site: SiteKey::new("google"),
            source: Some("ip-a".into()),
        };
        let _c = slots.try_acquire(&other, 1).unwrap();
        assert!(slots.try_acquire(&p, 1).is_some(), "counted per source");
    }

    #[test]
    fn a_refused_slot_is_wanted_for_a_while() {
        let slots = SiteSlots::new();
        let p = PathName {
            site: SiteKey::new("google"),
            source: None,
        };
        let a = slots.try_acquire(&p, 1).unwrap();
        assert!(!a.is_wanted(), "nobody was refused");
        assert!(slots.try_acquire(&p, 1).is_none());
        assert!(a.is_wanted(), "a refusal marks the path");
        drop(a);
        assert!(slots.is_empty());
        let b = slots.try_acquire(&p, 1).unwrap();
        assert!(!b.is_wanted(), "the mark goes with the last connection");
    }
}

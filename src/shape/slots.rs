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
    /// The shards refused a slot, each with when it last was (one entry
    /// per shard at most).
    refused: Vec<(usize, Instant)>,
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

    /// One more connection on `path` for `shard` if fewer than `limit`
    /// are open; the slot is freed when the returned guard drops. A
    /// refusal is remembered for a second: see [`SiteSlot::is_wanted`].
    pub fn try_acquire(
        self: &Arc<Self>,
        path: &PathName,
        limit: u32,
        shard: usize,
    ) -> Option<SiteSlot> {
        let mut open = self.lock();
        let n = open.entry(path.clone()).or_default();
        if n.open >= limit {
            if n.open == 0 {
                open.remove(path);
            } else {
                let now = Instant::now();
                match n.refused.iter_mut().find(|(s, _)| *s == shard) {
                    Some((_, at)) => *at = now,
                    None => n.refused.push((shard, now)),
                }
            }
            return None;
        }
        n.open += 1;
        Some(SiteSlot {
            slots: Arc::clone(self),
            path: path.clone(),
            shard,
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
    /// The shard holding it.
    shard: usize,
}

impl SiteSlot {
    /// True when another shard was refused a slot of this path within the
    /// last second: a connection about to idle should close and leave its
    /// slot to that shard, which has mail waiting. A refusal of the
    /// holder's own shard does not count: its own workers take its jobs
    /// over the connections it has.
    pub fn is_wanted(&self) -> bool {
        self.slots.lock().get(&self.path).is_some_and(|n| {
            n.refused
                .iter()
                .any(|&(s, at)| s != self.shard && at.elapsed() < WANTED_FOR)
        })
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
        let a = slots.try_acquire(&p, 2, 0).unwrap();
        let b = slots.try_acquire(&p, 2, 1).unwrap();
        assert!(slots.try_acquire(&p, 2, 0).is_none());
        assert_eq!(slots.open(&p), 2);
        drop(a);
        drop(b);
        assert!(slots.is_empty(), "no entry without open connections");
        let other = PathName {
            site: SiteKey::new("google"),
            source: Some("ip-a".into()),
        };
        let _c = slots.try_acquire(&other, 1, 0).unwrap();
        assert!(slots.try_acquire(&p, 1, 0).is_some(), "counted per source");
    }

    #[test]
    fn a_refused_slot_is_wanted_for_a_while() {
        let slots = SiteSlots::new();
        let p = PathName {
            site: SiteKey::new("google"),
            source: None,
        };
        let a = slots.try_acquire(&p, 1, 0).unwrap();
        assert!(!a.is_wanted(), "nobody was refused");
        assert!(slots.try_acquire(&p, 1, 0).is_none());
        assert!(
            !a.is_wanted(),
            "the holder's own shard was refused: its workers use what it has"
        );
        assert!(slots.try_acquire(&p, 1, 1).is_none());
        assert!(a.is_wanted(), "another shard's refusal marks the path");
        drop(a);
        assert!(slots.is_empty());
        let b = slots.try_acquire(&p, 1, 0).unwrap();
        assert!(!b.is_wanted(), "the mark goes with the last connection");
    }
}

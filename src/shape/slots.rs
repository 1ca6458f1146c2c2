//! Open connections per site and source, shared by all shards, so a
//! site's `max_connections` holds for the process whatever the shard
//! count. An entry exists only while a connection is open: the map never
//! grows with sites seen in the past.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::feedback::PathName;

/// Open connection counts.
#[derive(Debug, Default)]
pub struct SiteSlots {
    open: Mutex<HashMap<PathName, u32>>,
}

impl SiteSlots {
    /// An empty registry.
    pub fn new() -> Arc<SiteSlots> {
        Arc::new(SiteSlots::default())
    }

    /// Takes a slot for one more connection on `path` if fewer than
    /// `limit` are open; dropping the guard gives it back.
    pub fn try_acquire(self: &Arc<Self>, path: &PathName, limit: u32) -> Option<SiteSlot> {
        // A poisoned lock only means another thread panicked while holding
        // it; the counts are single adds and subtracts, still consistent.
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(path.clone()).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                open.remove(path);
            }
            return None;
        }
        *n += 1;
        Some(SiteSlot {
            slots: Arc::clone(self),
            path: path.clone(),
        })
    }

    /// Connections open on `path` now.
    pub fn open(&self, path: &PathName) -> u32 {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(path).copied().unwrap_or(0)
    }

    /// Every path with open connections, and how many.
    pub fn snapshot(&self) -> Vec<(PathName, u32)> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.iter().map(|(p, n)| (p.clone(), *n)).collect()
    }

    /// Number of paths with open connections (for tests and metrics).
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SiteSlot {
    slots: Arc<SiteSlots>,
    path: PathName,
}

impl Drop for SiteSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.path) {
            *n = n.saturating_sub(1);
            if *n == 0 {
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
}

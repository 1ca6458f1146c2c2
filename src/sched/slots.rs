//! Connection slots per next hop, shared by all shards, so the global
//! `default_destination_concurrency_limit` holds exactly whatever the shard
//! count (a per-shard split would round up, or starve a shard when the
//! limit is smaller than the shard count).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::Nexthop;

/// Open connections per next hop over all shards.
#[derive(Debug, Default)]
pub struct DestinationSlots {
    open: Mutex<HashMap<Nexthop, usize>>,
    /// Message rate limits per next hop, shared the same way.
    pub rates: super::rate::RateLimits,
    /// Next hops that refuse chained transactions, shared the same way.
    pub chain_refusals: super::chaining::ChainRefusals,
}

impl DestinationSlots {
    /// A registry with no open connections.
    pub fn new() -> Arc<DestinationSlots> {
        Arc::new(DestinationSlots::default())
    }

    /// Takes a slot for one more connection to `hop` if fewer than `limit`
    /// are open; the slot is given back when the guard is dropped.
    pub fn try_acquire(self: &Arc<Self>, hop: &Nexthop, limit: usize) -> Option<SlotGuard> {
        // A poisoned lock only means another thread panicked while holding
        // it; the counts are still consistent (a single add or subtract).
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(hop.clone()).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(SlotGuard {
            slots: Arc::clone(self),
            hop: hop.clone(),
        })
    }

    /// Connections open to `hop` now.
    pub fn open(&self, hop: &Nexthop) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(hop).copied().unwrap_or(0)
    }
}

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SlotGuard {
    slots: Arc<DestinationSlots>,
    hop: Nexthop,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.hop) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // No entry per next hop ever seen: memory follows the
                // connections open now.
                open.remove(&self.hop);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_holds_across_holders_and_drop_frees() {
        let slots = DestinationSlots::new();
        let hop = Nexthop::parse("[127.0.0.1]:25").unwrap();
        let a = slots.try_acquire(&hop, 2).unwrap();
        let b = slots.clone().try_acquire(&hop, 2).unwrap();
        assert!(slots.try_acquire(&hop, 2).is_none());
        drop(a);
        assert_eq!(slots.open(&hop), 1);
        assert!(slots.try_acquire(&hop, 2).is_some());
        drop(b);
    }
}

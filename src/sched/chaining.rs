//! Next hops known to refuse chained transactions (a transaction pipelined
//! behind the previous message's final dot), shared by all shards so that
//! the daemon learns it once per destination and logs it once.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::model::Nexthop;

/// The next hops that refused a chained transaction and took the same
/// message unchained right after.
#[derive(Debug, Default)]
pub struct ChainRefusals {
    hops: Mutex<HashSet<Nexthop>>,
}

impl ChainRefusals {
    /// True when `hop` is known to refuse chained transactions.
    pub fn refuses(&self, hop: &Nexthop) -> bool {
        // A poisoned lock only means another thread panicked while holding
        // it; a set of hops cannot be left half-updated by an insert.
        let hops = self.hops.lock().unwrap_or_else(|p| p.into_inner());
        !hops.is_empty() && hops.contains(hop)
    }

    /// Remembers that `hop` refuses chained transactions; true the first
    /// time (the caller logs it then).
    pub fn remember(&self, hop: &Nexthop) -> bool {
        let mut hops = self.hops.lock().unwrap_or_else(|p| p.into_inner());
        hops.insert(hop.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hop_is_remembered_once() {
        let r = ChainRefusals::default();
        let hop = Nexthop::parse("[127.0.0.1]:25").unwrap();
        let other = Nexthop::parse("[127.0.0.2]:25").unwrap();
        assert!(!r.refuses(&hop));
        assert!(r.remember(&hop));
        assert!(!r.remember(&hop));
        assert!(r.refuses(&hop));
        assert!(!r.refuses(&other));
    }
}

//! Hash maps for the hot in-memory indexes (the queue's, the queue
//! manager's, pickup's): std's `HashMap` with foldhash instead of SipHash.
//! foldhash is seeded per process, so keys a sender chooses (domains, file
//! names) cannot be aimed at one bucket in advance, and it hashes a queue
//! ID in a few instructions, where SipHash was about 3 % of a shard's CPU.

/// A `HashMap` hashed with foldhash; build with `FastMap::default()`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` hashed with foldhash; build with `FastSet::default()`.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

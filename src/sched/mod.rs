//! Scheduling: the lock-free pickup ring that hands accepted work to
//! whichever shard has capacity, and the shard loop that drains it into the
//! shard's queue with group commit.
//!
//! Strategy (so far): pickup pushes cleaned submissions into one bounded
//! MPMC ring (crossbeam's `ArrayQueue`). A full ring is backpressure: pickup
//! waits and leaves the remaining files where they are. Each shard wakes on
//! new work, takes up to [`shard::MAX_BATCH`] submissions, appends them to
//! its active segment, fdatasyncs once for the whole batch, and only then
//! acknowledges every submission of the batch. While one shard syncs, the
//! others (and pickup) keep going, so the batch grows with the load: one
//! fdatasync per batch, not per message. Once committed, a message goes to
//! the shard's queue manager ([`qmgr`]), whose strategy (destinations,
//! slow start, connection reuse, dead destinations, backoff) is written at
//! the top of that file.

pub mod campaigns;
pub mod chaining;
pub mod mailbox;
pub mod notices;
pub mod qmgr;
pub mod queue_admin;
pub mod rate;
pub mod ring;
pub mod shard;
pub mod slots;

pub use ring::PickupRing;
pub use shard::{run_shard, ShardContext, ShardError};

//! The queue: per-shard, memory-mapped, append-only segment files.
//!
//! This is the only module that writes queue files. The on-disk format is
//! documented in `docs/QUEUE_FORMAT.md`; the pieces are:
//!
//! - [`record`]: the record codec (typed, length-prefixed, CRC32C).
//! - [`segment`]: one preallocated, mmap'd segment file.
//! - [`store`]: a shard's set of segments, its in-memory index, group
//!   commit bookkeeping and garbage collection.
//! - [`recovery`]: replaying segments at start, cutting a torn tail.
//! - `room`: what a shard does while no segment can be created (full disk).
//! - [`listing`]: reading every shard's queue read-only, for `mailq`.
//! - [`suppress`]: the suppression list (its own journal in the spool,
//!   not a segment file).

pub mod campaign_record;
pub mod campaign_results;
pub mod campaign_state;
pub mod listing;
pub mod record;
pub mod recovery;
mod room;
pub mod segment;
pub mod shape;
pub mod store;
pub mod suppress;

use std::path::PathBuf;

pub use listing::{list_queue, QueuedMessage, QueuedRecipient};
pub use store::{Location, Store};

/// Errors of the queue module.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file system call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done (`create`, `fallocate`, `mmap`, `fdatasync`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A segment file's header is not ours or of an unknown version.
    #[error("{path}: not a ringmail queue segment: {reason}")]
    BadSegment {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A record could not be decoded although its checksum matched.
    #[error("undecodable record: {0}")]
    BadRecord(&'static str),
    /// A message does not fit the record format (too many recipients, field too long).
    #[error("message does not fit a queue record: {0}")]
    TooBig(&'static str),
    /// A record needs a new segment and none can be created (disk full,
    /// quota, I/O error; the reason says which). Creation is tried again
    /// at most once a second ([`Store::append`] says how); meanwhile such
    /// appends fail at once.
    #[error("no room in the queue: {reason}")]
    NoRoom {
        /// Why the last attempt to create a segment failed.
        reason: String,
    },
    /// An earlier fdatasync failed: what is on disk is unknown, so the store
    /// takes no more writes until the daemon restarts and recovers.
    #[error("queue writes disabled after an earlier fdatasync failure; restart to recover")]
    Poisoned,
}

impl QueueError {
    /// True when retrying later may succeed (disk full, I/O error): the
    /// submitter keeps the message and tries again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            QueueError::Io { .. } | QueueError::Poisoned | QueueError::NoRoom { .. }
        )
    }

    /// True for [`QueueError::NoRoom`]: the store has logged the condition
    /// (once a minute), so callers need not log each refused write.
    pub fn is_no_room(&self) -> bool {
        matches!(self, QueueError::NoRoom { .. })
    }

    /// Builds an [`QueueError::Io`] from a std error.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        QueueError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

//! The suppression list: addresses that campaigns must not mail, kept
//! durably in the spool at `<spool_dir>/suppress/journal` (format and use
//! in `docs/SUPPRESSION.md`).
//!
//! The journal is append-only, one checksummed line per change; the live
//! set is what its lines leave. Writers (the daemon, `ringmail suppress`)
//! lock it with `flock`, append and fdatasync before they return, and
//! rewrite it as the live set when it has grown past twice that plus
//! [`COMPACT_SLACK`] lines. Readers reload what was appended since their
//! last read, and all of it when a compaction replaced the file.
//!
//! - `entry`: [`Entry`], [`Scope`], [`Reason`] and address comparison.
//! - `line`: the line codec (no I/O).
//! - `set`: the live set in memory (about 100 bytes an entry).
//! - `journal`: reading new lines, the lock, durable appends.
//! - `compact`: rewriting the journal.
//! - `list`: [`SuppressionList`], which ties them together.
//! - `shared`: [`SharedSuppressions`], for the daemon's shard threads.
//! - `import`, `export`: CSV in and out.
//! - `notice`: [`Notice`], what loading and writing report.

mod compact;
mod entry;
mod error;
mod export;
mod import;
mod journal;
mod line;
mod list;
mod notice;
mod set;
mod shared;
#[cfg(test)]
mod tests;

pub use compact::Compacted;
pub use entry::{normalize_address, Entry, Reason, ReasonKind, Scope, MAX_DETAIL};
pub use error::SuppressError;
pub use export::EXPORT_HEADER;
pub use import::{BadRow, ImportOptions, ImportReport, BATCH};
pub use list::{Change, Listing, Outcome, Refresh, SuppressionList, COMPACT_SLACK};
pub use notice::Notice;
pub use shared::SharedSuppressions;

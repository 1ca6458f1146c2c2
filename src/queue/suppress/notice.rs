//! What loading, refreshing and writing the journal found worth saying:
//! damaged lines skipped, a torn tail, a compaction. None of them is an
//! error: the rest of the journal is used.

use std::fmt;

use super::compact::Compacted;

/// One thing to report (the caller adds the journal's path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A line whose checksum does not match or that does not parse was
    /// skipped.
    BadLine {
        /// 1-based line number in the journal.
        line: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The last line has no line end: a write in progress, or a writer
    /// killed in the middle of one. Ignored; reported once.
    TornTail {
        /// Its line number.
        line: u64,
        /// Its length in bytes.
        bytes: u64,
    },
    /// A writer cut such a last line before appending (it was never
    /// acknowledged: an acknowledged line ends with its line end).
    TornTailCut {
        /// Its line number.
        line: u64,
        /// Its length in bytes.
        bytes: u64,
    },
    /// The journal was rewritten as the live set.
    Compacted(Compacted),
    /// An automatic compaction failed; the journal is as it was.
    CompactFailed(String),
    /// More notices than are kept; this many were dropped.
    More(u64),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::BadLine { line, reason } => write!(f, "line {line}: skipped: {reason}"),
            Notice::TornTail { line, bytes } => write!(
                f,
                "line {line}: ignored an incomplete last line of {bytes} bytes \
                 (a write in progress, or a writer that was killed)"
            ),
            Notice::TornTailCut { line, bytes } => write!(
                f,
                "line {line}: cut an incomplete last line of {bytes} bytes left by a writer that was killed"
            ),
            Notice::Compacted(c) => write!(
                f,
                "compacted: {} lines rewritten as {}",
                c.lines_before, c.lines_after
            ),
            Notice::CompactFailed(e) => write!(f, "compaction failed, journal unchanged: {e}"),
            Notice::More(n) => write!(f, "{n} more notices not shown"),
        }
    }
}

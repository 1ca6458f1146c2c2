//! How mail comes in: the `sendmail` command, which writes `maildrop/`,
//! and the pickup scanner, which reads `maildrop/` and the `pickup/`
//! drop-in directory, cleans each message and offers it to the queue.

pub mod campaign;
pub mod leftovers;
pub mod maildrop;
pub mod pickup;
pub mod quarantine;
pub mod release;
pub mod sendmail;
pub mod sendmail_args;
pub mod sendmail_cmd;
pub mod smtp_stdin;
pub mod smtpd;
pub mod submit;
pub mod unlinker;
pub mod user;

use std::path::{Path, PathBuf};

pub use pickup::{Pickup, PickupConfig, PickupStats, Prepare, SpoolKind};

/// Errors of the pickup scanner.
#[derive(Debug, thiserror::Error)]
pub enum PickupError {
    /// A file or directory operation failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl PickupError {
    /// File system errors may clear up; the file stays and is retried.
    pub fn is_transient(&self) -> bool {
        true
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> PickupError {
        PickupError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

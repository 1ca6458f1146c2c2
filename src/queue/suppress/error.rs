//! The suppression list's error type.

use std::io::ErrorKind;
use std::path::PathBuf;

use crate::mail::AddressError;

/// Errors of the suppression list.
#[derive(Debug, thiserror::Error)]
pub enum SuppressError {
    /// A file system call on the journal or its directory failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done (`open`, `flock`, `write`, `fdatasync`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not an address that can be suppressed.
    #[error(transparent)]
    BadAddress(#[from] AddressError),
    /// An address without a domain part.
    #[error("bad address {0:?}: no domain (an address needs an @)")]
    Unqualified(String),
    /// A scope that is neither `global` nor a sender domain.
    #[error("bad scope {scope:?}: {reason}")]
    BadScope {
        /// The scope as given.
        scope: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The journal was written by a newer format version.
    #[error("{path}: journal format {header:?} is not supported (this ringmail reads version 1)")]
    Version {
        /// The journal.
        path: PathBuf,
        /// Its header line.
        header: String,
    },
    /// The input of an import could not be read.
    #[error("reading the import: {0}")]
    Input(#[source] std::io::Error),
    /// The output of an export could not be written.
    #[error("writing the export: {0}")]
    Output(#[source] std::io::Error),
    /// An earlier fdatasync of the journal failed: what is on disk is
    /// unknown, so this list takes no more writes.
    #[error("{path}: writes disabled after an earlier fdatasync failure; open the list again")]
    Poisoned {
        /// The journal.
        path: PathBuf,
    },
}

impl SuppressError {
    /// True when trying again later may succeed (an I/O error, a full
    /// disk); false for bad input, a permission problem or a journal of a
    /// newer version, which need a person.
    pub fn is_transient(&self) -> bool {
        match self {
            SuppressError::Io { source, .. }
            | SuppressError::Input(source)
            | SuppressError::Output(source) => source.kind() != ErrorKind::PermissionDenied,
            SuppressError::Poisoned { .. } => true,
            SuppressError::BadAddress(_)
            | SuppressError::Unqualified(_)
            | SuppressError::BadScope { .. }
            | SuppressError::Version { .. } => false,
        }
    }

    /// True when the journal or its directory may not be read or written
    /// by this user.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, SuppressError::Io { source, .. } if source.kind() == ErrorKind::PermissionDenied)
    }

    /// Builds a [`SuppressError::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SuppressError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_permission_classes() {
        let denied = SuppressError::io("open", "/x", ErrorKind::PermissionDenied.into());
        assert!(!denied.is_transient());
        assert!(denied.is_permission_denied());
        let full = SuppressError::io("write", "/x", std::io::Error::from_raw_os_error(28));
        assert!(full.is_transient());
        assert!(!full.is_permission_denied());
        assert!(!SuppressError::Unqualified("bob".into()).is_transient());
        assert!(SuppressError::Poisoned { path: "/x".into() }.is_transient());
    }
}

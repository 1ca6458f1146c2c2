//! Why a notice could not be built.

/// Why [`build`](super::build) refused a request. Every case but
/// [`BounceError::NoBoundary`] is a property of the request, so building
/// it again gives the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BounceError {
    /// `myhostname` is empty, too long or not a host name (it goes into
    /// `From:`, `Message-ID:` and `Reporting-MTA:`).
    #[error("bad myhostname for a delivery status notification: {0:?}")]
    BadHostname(String),
    /// The queue ID is empty, too long or not letters and digits.
    #[error("bad queue ID for a delivery status notification: {0:?}")]
    BadQueueId(String),
    /// The request lists no recipient.
    #[error("delivery status notification without recipients")]
    NoRecipients,
    /// An address (the sender or a recipient) is empty where one is needed,
    /// holds a control character, or is too long to report on one line.
    #[error("cannot report address {address:?}: {reason}")]
    BadAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The ENVID is not 1 to 100 printable ASCII characters.
    #[error("bad ENVID for a delivery status notification: {0:?}")]
    BadEnvid(String),
    /// Every MIME boundary tried occurred in the content. Boundaries are
    /// random, so building the notice again will almost surely work.
    #[error("no MIME boundary found that is absent from the content")]
    NoBoundary,
}

impl BounceError {
    /// True when building the same request again may succeed: only for
    /// [`BounceError::NoBoundary`].
    pub fn is_transient(&self) -> bool {
        matches!(self, BounceError::NoBoundary)
    }
}

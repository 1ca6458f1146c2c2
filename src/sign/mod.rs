//! DKIM signing (RFC 6376, RFC 8463): the stage between cleanup and the
//! queue for ordinary mail, and the signer the shards use for campaign
//! mail after rendering. See `docs/AUTHENTICATION.md`.
//!
//! - [`key`]: key files (PEM, PKCS#1 or PKCS#8; RSA or Ed25519), their
//!   permissions, the public key record.
//! - [`ed25519`]: the Ed25519 key on ed25519-dalek (RSA stays on ring).
//! - [`signer`]: the configured keys, chosen by the `From:` domain; signs
//!   the queue's wire form (dot-stuffing undone without a copy).
//! - [`current`]: the keys in use, replaced on SIGHUP without a lock on
//!   the hot path.
//! - [`stage`]: signing threads between the intakes and the pickup ring.
//! - [`keygen`]: `ringmail dkim keygen`.

pub mod current;
pub mod ed25519;
pub mod key;
pub mod keygen;
pub mod signer;
pub mod stage;

use std::path::PathBuf;

pub use current::{CurrentKeys, KeysReader};
pub use key::PrivateKey;
pub use signer::{Signed, Signers};
pub use stage::SignStage;

/// Why a key could not be used or a message not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key file is missing, unreadable or holds no usable key.
    #[error("DKIM key {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file may be read by others or written by its group.
    #[error("DKIM key {path}: mode {mode:03o} lets others read it or its group change it; run: chmod 600 {path}")]
    LooseMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Signing one message failed.
    #[error("DKIM signing with {domain}/{selector} failed: {reason}")]
    Sign {
        /// `d=`.
        domain: String,
        /// `s=`.
        selector: String,
        /// What the signer said.
        reason: String,
    },
    /// A new key could not be generated.
    #[error("cannot generate a DKIM key: {0}")]
    Generate(String),
}

impl SignError {
    /// True when trying again may succeed: never for keys (the file must be
    /// fixed); a failed signature is a property of the message.
    pub fn is_transient(&self) -> bool {
        false
    }
}

//! TLS on the client side of the owned-buffer transport: rustls (with the
//! `ring` provider) driven through its buffer API (`read_tls`,
//! `process_new_packets`, `reader`, `writer`, `write_tls`) around the inner
//! [`Conn`](super::Conn)'s owned-buffer reads and writes. The same code runs
//! over the tokio-uring socket, the plain-tokio socket and the in-memory
//! pipe.
//!
//! # Use from an SMTP client session
//!
//! ```no_run
//! # async fn f(conn: ringmail::rt::Conn) -> Result<(), ringmail::rt::tls::TlsError> {
//! use ringmail::rt::tls::{client_config, TlsLevel};
//! // Once at start (it loads the system roots once per process):
//! let config = client_config(TlsLevel::May, None)?;
//! // After `220 Ready to start TLS` (wrap this in the handshake timeout):
//! let name = rustls_pki_types::ServerName::try_from("mx.example.com".to_string()).unwrap();
//! let (conn, info) = conn.start_tls(config, name).await?;
//! tracing::info!("{}", info.log_line("mx.example.com[192.0.2.1]:25"));
//! // `conn` is a `Conn::Tls`: read, write_all and close as before.
//! # drop(conn); Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `config`: [`TlsLevel`], [`client_config`], the system roots, the
//!   opportunistic verifier and the trust classification.
//! - `stream`: [`TlsStream`] and the handshake.
//! - `verifier`: the one rustls certificate verifier behind the `may`,
//!   DANE and name-list configurations, around a chain check of each.
//! - `info`: [`TlsInfo`] and [`Trust`]: what Postfix logs about a session.
//! - [`names`]: `verify` and `secure` with a list of acceptable
//!   certificate names (Postfix's `match=`).
//! - [`dane`]: TLSA records, matching certificates against them (RFC 7672)
//!   and the verifier of connections to hosts with usable records.
//! - `server_config`, `server_stream`: the server side (the sink and the
//!   SMTP injection listener) over tokio sockets: [`server_config`] from
//!   PEM files and [`ServerStream`], STARTTLS with rustls driven by hand.

mod config;
pub mod dane;
mod info;
pub mod names;
mod server_config;
mod server_stream;
mod stream;
mod verifier;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use config::{client_config, TlsLevel};
pub use info::{TlsInfo, Trust};
pub use server_config::server_config;
pub use server_stream::{ServerStream, ServerTlsStream};
pub use stream::TlsStream;

pub(super) use stream::connect;

/// Errors of TLS setup and handshakes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The peer's TLS messages were refused (bad certificate at level
    /// `verify`, no common cipher, garbage instead of TLS, ...).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] rustls::Error),
    /// The connection failed during the handshake.
    #[error("TLS handshake failed: {0}")]
    Io(#[source] io::Error),
    /// The peer closed the connection during the handshake.
    #[error("TLS handshake failed: connection closed by the server")]
    Closed,
    /// The CA file could not be read.
    #[error("cannot read CA file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("cannot read CA file {}: {reason}", path.display())]
    BadCaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration cannot be built (no trust anchor at all for level
    /// `verify`, ...).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
    /// Not one of `none`, `may`, `encrypt`, `verify`.
    #[error("unknown TLS security level {0:?} (expected none, may, encrypt or verify)")]
    BadLevel(String),
}

impl TlsError {
    /// Handshake failures are transient for delivery (defer and retry: the
    /// server may be fixed, or another MX may work); configuration errors
    /// are not.
    pub fn is_transient(&self) -> bool {
        match self {
            TlsError::Handshake(_) | TlsError::Io(_) | TlsError::Closed => true,
            TlsError::CaFile { .. }
            | TlsError::BadCaFile { .. }
            | TlsError::Config(_)
            | TlsError::BadLevel(_) => false,
        }
    }
}

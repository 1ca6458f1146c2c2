//! The bundled SMTP sink (`ringmail sink`): a fast ESMTP receiver for tests
//! and benchmarks, with fault injection.
//!
//! It accepts every message (unless told to fail some), counts messages,
//! recipients, bytes and Message-IDs (so a benchmark can detect losses and
//! duplicates), can write each message to a directory, and imitates real
//! receivers: 4xx/5xx at RCPT or after DATA, 421 disconnects, reply latency,
//! a connection limit and a message rate limit, each answered with a
//! configurable reply (a provider's real throttle text). It can offer STARTTLS (and break it on purpose)
//! and require AUTH PLAIN or LOGIN. It never relays anything anywhere.
//!
//! # Layout
//!
//! - [`config`]: [`SinkConfig`], [`Faults`], [`Latency`] and their validation.
//! - `message_id`: finding a message's Message-ID.
//! - `auth`: the AUTH credential check (the one configured user).
//! - [`session`]: the sink's driver of the shared sans-IO server session
//!   ([`crate::proto::server`]): its configuration, fault injection as the
//!   session's policy, broken STARTTLS, the counts.
//! - `faults`: fault and latency draws.
//! - `throttle`: a provider's throttle: the token bucket of
//!   [`RateLimit`], configured replies, the busiest-second meter.
//! - [`dns`]: a small authoritative DNS server on loopback (MX and A), so
//!   a benchmark's recipient domains resolve to the sink's listeners.
//! - [`scenario`]: provider scenarios (`ringmail bench --scenario`):
//!   the file format, one sink per provider, the zone, the limit the
//!   providers' caps allow.
//! - [`stats`]: shared counters, the Message-ID ledger, [`SinkSnapshot`].
//! - `dump`: writing accepted messages to `dump_dir`.
//! - `tls`: [`tls_server_config`] from PEM files.
//! - `conn`: the thin socket loop of one connection (and the STARTTLS
//!   upgrade).
//! - `server`: the accept loop, [`start`] and [`SinkHandle`].
//! - `foreground`: [`run_foreground`] for the CLI.
//!
//! # Dump format
//!
//! With [`SinkConfig::dump_dir`] set, accepted message number `n` (the
//! number in the `250 2.0.0 Ok: queued as n` reply, counting from 1) is
//! written as two files, both complete before the 250 reply is sent:
//!
//! - `n.eml`: the message exactly as received between `DATA` and the end
//!   marker, dot-unstuffed, line ends untouched (CRLF on the wire stays
//!   CRLF), including the CRLF before the final `.`.
//! - `n.json`: the envelope, one JSON object:
//!   `{"number":n,"mail_from":"a@b","mail_params":"SIZE=10","rcpt_to":["c@d"],"size":123,"message_id":"<x@y>","helo":"client.example","tls":true,"auth":"user"}`
//!   where `mail_from` and `rcpt_to` are the paths without angle brackets
//!   (`""` for the null sender), `mail_params` the MAIL parameters as sent,
//!   `size` the length of `n.eml`, `message_id` is `null` when the
//!   message has none, `helo` is the last HELO/EHLO name (after STARTTLS,
//!   the one sent over TLS), `tls` says whether the message came over TLS
//!   and `auth` is the user the client authenticated as (`null` without
//!   AUTH).

pub mod config;
pub mod dns;
pub mod scenario;
pub mod session;
pub mod stats;

mod auth;
mod conn;
mod dump;
mod faults;
mod foreground;
mod message_id;
mod server;
mod throttle;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use config::{AcceptHook, Accepted, Faults, Latency, RateLimit, SinkConfig};
pub use foreground::run_foreground;
pub use message_id::message_id;
pub use server::{start, SinkHandle};
pub use stats::{SinkSnapshot, SinkStats};
pub use throttle::parse_reply;
pub use tls::tls_server_config;

/// Errors of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is invalid (a probability outside 0..=1, ...).
    #[error("invalid sink configuration: {0}")]
    Config(String),
    /// The listening socket could not be created, bound or put to listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The dump directory could not be created.
    #[error("cannot create dump directory {path}: {source}")]
    DumpDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The sink's tokio runtime or its thread could not be started.
    #[error("cannot start the sink runtime: {0}")]
    Runtime(std::io::Error),
    /// Writing the final statistics failed.
    #[error("cannot write sink statistics: {0}")]
    Output(std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error("cannot load TLS certificate or key {}: {reason}", path.display())]
    Tls {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl SinkError {
    /// True when trying again later may succeed: the port is still in use,
    /// resources (threads, file descriptors) are exhausted, a disk is full.
    /// A bad configuration is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Config(_) | SinkError::Tls { .. } => false,
            SinkError::Bind { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::AddrInUse | std::io::ErrorKind::OutOfMemory
            ),
            SinkError::DumpDir { .. } | SinkError::Runtime(_) | SinkError::Output(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors() {
        assert!(!SinkError::Config("x".into()).is_transient());
        let addr: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let busy = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert!(SinkError::Bind { addr, source: busy }.is_transient());
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!SinkError::Bind {
            addr,
            source: denied
        }
        .is_transient());
        assert!(SinkError::Runtime(std::io::Error::other("x")).is_transient());
    }
}

//! SMTP injection: the `[[listener]]` sockets (`listener.rs`), one task per
//! connection driving the shared server session (`conn.rs`), the relay rule
//! (`relay.rs`: `mynetworks` or AUTH) and the submission users
//! (`passwd.rs`). A message is handed to the queue through the daemon's
//! [`Hooks`] (cleanup, then the pickup ring) and answered `250` only after
//! the shard's group commit: its ack comes back to the connection through
//! [`crate::model::Source::Reply`]. See docs/SMTPD.md.

pub mod listener;
pub mod passwd;

mod conn;
mod relay;

use std::net::SocketAddr;

use crate::model::{DsnParams, Source, Submission};
use crate::proto::server::Reply;

pub use listener::{start, ListenerSpec, SmtpdHandle, SmtpdSettings, Timeouts};
pub use relay::RelayPolicy;

/// A message received by a listener, for the daemon's `prepare` (cleanup).
#[derive(Debug)]
pub struct Incoming<'a> {
    /// The message as the client meant it (dot-unstuffed, CRLF).
    pub content: &'a [u8],
    /// Envelope sender (`""` for `<>`).
    pub sender: &'a str,
    /// Envelope recipients.
    pub recipients: &'a [String],
    /// RFC 3461 requests and the declared body type.
    pub dsn: DsnParams,
    /// `unknown[IP]`.
    pub client_name: &'a str,
    /// The HELO/EHLO name.
    pub helo: &'a str,
    /// The session runs over TLS.
    pub tls: bool,
    /// `TLSv1.3 with cipher ... (256/256 bits)`, over TLS.
    pub tls_summary: Option<String>,
    /// The SASL user name, when the client authenticated.
    pub auth_user: Option<&'a str>,
    /// Where the shard sends the ack.
    pub source: Source,
}

/// Why a received message was not turned into a submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// Refused for good (malformed, too large): a 5xx to the client.
    #[error("{0}")]
    Refused(String),
    /// Could not be handled now: a 4xx.
    #[error("{0}")]
    Temporary(String),
}

impl PrepareError {
    /// True when the client may try again.
    pub fn is_transient(&self) -> bool {
        matches!(self, PrepareError::Temporary(_))
    }

    /// The reply to the end of the message.
    pub fn reply(&self) -> Reply {
        match self {
            PrepareError::Refused(e) => Reply::new(554, "5.6.0", format!("Error: {e}")),
            PrepareError::Temporary(e) => Reply::new(451, "4.3.0", format!("Error: {e}")),
        }
    }
}

/// What became of an offer to the pickup ring.
#[derive(Debug)]
pub enum Offered {
    /// Taken: a shard will ack it.
    Yes,
    /// The ring is full: here it is back, try again shortly.
    Full(Box<Submission>),
    /// The daemon is stopping and takes no more.
    Closed,
}

/// Cleanup as the listener calls it: a received message into a submission.
pub type Prepare = dyn Fn(Incoming<'_>) -> Result<Submission, PrepareError> + Send + Sync;

/// Offers a submission to the pickup ring.
pub type Offer = dyn Fn(Box<Submission>) -> Offered + Send + Sync;

/// A message for addresses handled here rather than relayed (a campaign's
/// VERP bounce and mailto unsubscribe addresses).
#[derive(Debug, Clone)]
pub struct LocalMessage {
    /// The message (dot-unstuffed, CRLF).
    pub content: Vec<u8>,
    /// Envelope sender (`""` for `<>`, as bounces have).
    pub sender: String,
    /// The local recipients.
    pub recipients: Vec<String>,
    /// `unknown[IP]`.
    pub client_name: String,
}

/// Addresses the listeners take for themselves instead of relaying them:
/// accepted from any client (bounces and unsubscribe mail come from the
/// internet), never mixed with relayed recipients in one transaction.
pub trait LocalMail: Send + Sync {
    /// True when `recipient` is handled here.
    fn is_local(&self, recipient: &str) -> bool;
    /// Handles a message whose recipients are all local; runs on a
    /// blocking thread. `Ok(what was done)` is the text of the `250`.
    fn deliver(&self, message: &LocalMessage) -> Result<String, PrepareError>;
}

/// What the daemon gives the listeners: the later stages, as functions (a
/// stage never calls into a later one).
pub struct Hooks {
    /// Cleanup: the received message into a submission.
    pub prepare: Box<Prepare>,
    /// Offers a submission to the pickup ring.
    pub offer: Box<Offer>,
    /// Addresses handled here (campaign bounces and unsubscribes), if any.
    pub local: Option<std::sync::Arc<dyn LocalMail>>,
    /// Where STARTTLS handshakes are counted (the daemon's metrics), if
    /// anywhere.
    pub tls_counters: Option<std::sync::Arc<crate::obs::metrics::TlsCounters>>,
}

/// Errors starting the listeners.
#[derive(Debug, thiserror::Error)]
pub enum SmtpdError {
    /// A listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listeners' thread or runtime could not start.
    #[error("cannot start the SMTP listener thread: {0}")]
    Runtime(std::io::Error),
    /// A listener's TLS or AUTH settings cannot be used.
    #[error("{0}")]
    Config(String),
}

impl SmtpdError {
    /// True when starting again later may work (a port still in use).
    pub fn is_transient(&self) -> bool {
        !matches!(self, SmtpdError::Config(_))
    }
}

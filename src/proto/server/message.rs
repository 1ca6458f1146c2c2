//! A received message as the driver gets it: envelope, parameters, DSN
//! requests, where it came from, and its bytes.

use std::net::IpAddr;

use super::params::MailParams;
use crate::model::dsn::{DsnParams, RcptDsn};

/// How the message data came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// DATA (dot-stuffed on the wire, unstuffed here).
    Data,
    /// BDAT chunks (RFC 3030).
    Bdat,
}

/// A complete message, borrowed from the session while it waits for
/// `Session::finish_message`.
///
/// `content` is the message as the client meant it: dot-unstuffed (DATA)
/// or as chunked (BDAT), without the end marker, line ends as the session's
/// `LineEnds` made them (CRLF in `Normalize` and `Reject`). The queue's
/// wire form (dot-stuffed once, no final dot) is cleanup's job.
#[derive(Clone, Copy, Debug)]
pub struct PendingMessage<'a> {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The HELO/EHLO name (`""` if none was given).
    pub helo: &'a str,
    /// It came over TLS.
    pub tls: bool,
    /// The user the client authenticated as.
    pub auth_user: Option<&'a str>,
    /// The envelope sender (`""` for `<>`), without brackets.
    pub sender: &'a str,
    /// The MAIL parameters, parsed.
    pub params: &'a MailParams,
    /// The MAIL parameters as sent (for logs and dumps).
    pub raw_params: &'a str,
    /// The accepted recipients in order, without brackets.
    pub recipients: &'a [String],
    /// The DSN requests of each recipient, parallel to `recipients`.
    pub rcpt_dsn: &'a [RcptDsn],
    /// The message size in bytes (of `content` as delivered, even when
    /// only its head was kept).
    pub size: u64,
    /// The message (or its head, with `Capture::Head`).
    pub content: &'a [u8],
    /// DATA or BDAT.
    pub transfer: Transfer,
}

impl PendingMessage<'_> {
    /// The DSN requests and declared body type in the model's shape.
    pub fn dsn(&self) -> DsnParams {
        DsnParams {
            ret: self.params.ret,
            envid: self.params.envid.clone(),
            body: self.params.body,
            rcpts: self.rcpt_dsn.to_vec(),
        }
    }
}

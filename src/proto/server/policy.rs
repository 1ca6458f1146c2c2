//! The driver's decisions: a [`ServerPolicy`] is asked at HELO, MAIL, RCPT
//! and at the end of each message, after the session's own checks passed,
//! and answers with a [`Decision`]. The sink injects its faults here, the
//! listener its relay rule. Every method has a default that accepts.

use std::net::IpAddr;

use super::message::PendingMessage;
use super::params::MailParams;
use super::reply::Reply;
use crate::model::dsn::RcptDsn;

/// What the policy sees of the session.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The client's address (`None` when there is none, as for
    /// `sendmail -bs`).
    pub client: Option<IpAddr>,
    /// The HELO/EHLO name, once given.
    pub helo: Option<&'a str>,
    /// The session runs over TLS.
    pub tls: bool,
    /// The user the client authenticated as.
    pub auth_user: Option<&'a str>,
    /// The envelope sender of the transaction (`""` for `<>`), once MAIL
    /// was accepted.
    pub sender: Option<&'a str>,
    /// The recipients accepted so far in the transaction.
    pub recipients: &'a [String],
}

/// A policy's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on (the session sends its own success reply).
    Accept,
    /// Refuse this command (or message) with this reply; the session goes
    /// on. Use a 4xx or 5xx code.
    Reject(Reply),
    /// Send this reply and close the connection (a 421).
    Disconnect(Reply),
}

/// The driver's decisions.
pub trait ServerPolicy {
    /// HELO or EHLO with this name.
    fn helo(&mut self, ctx: &Context<'_>, name: &str) -> Decision {
        let _ = (ctx, name);
        Decision::Accept
    }

    /// MAIL FROM with this sender (`""` for `<>`) and parameters, already
    /// checked for syntax, size and the session's AUTH and TLS rules.
    fn mail(&mut self, ctx: &Context<'_>, sender: &str, params: &MailParams) -> Decision {
        let _ = (ctx, sender, params);
        Decision::Accept
    }

    /// RCPT TO with this recipient, already checked for syntax and the
    /// recipient limit. The listener's relay rule goes here.
    fn rcpt(&mut self, ctx: &Context<'_>, recipient: &str, dsn: &RcptDsn) -> Decision {
        let _ = (ctx, recipient, dsn);
        Decision::Accept
    }

    /// The message is complete and within the size limit. Accepting makes
    /// the session stop with `Progress::Message`.
    fn data_end(&mut self, message: &PendingMessage<'_>) -> Decision {
        let _ = message;
        Decision::Accept
    }
}

/// A policy that accepts everything the session's own checks let through.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl ServerPolicy for AcceptAll {}

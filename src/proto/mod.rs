//! Sans-IO SMTP client protocol: no sockets, no async, no I/O at all.
//!
//! The delivery code owns the connection; this module only turns envelopes
//! into command bytes and server bytes into replies and decisions, so it can
//! be unit-tested and fuzzed without a network (RFC 5321, RFC 2920
//! PIPELINING, RFC 3463 enhanced status codes, RFC 1870 SIZE, RFC 6152
//! 8BITMIME, RFC 6531 SMTPUTF8).
//!
//! - [`reply`]: [`Reply`] and [`EnhancedCode`], the values a server answers with.
//! - [`parser`]: [`ReplyParser`], bytes in, complete replies out, incrementally.
//! - [`caps`]: [`Capabilities`] announced in the EHLO reply.
//! - [`command`]: command encoders, [`MailParams`] and [`Stage`] (which
//!   command a reply answers).
//! - [`action`]: [`Action`], what a state machine below asks its driver to
//!   do next; every machine has the same `next_action` / `on_reply` pair.
//! - [`session`]: connection setup ([`SessionSetup`]: greeting, EHLO, HELO
//!   fallback) and single commands ([`SimpleCommand`]: RSET, STARTTLS, QUIT).
//! - [`transaction`]: one mail transaction ([`Transaction`]: MAIL, RCPT...,
//!   DATA, body) with or without PIPELINING, and its per-recipient result.
//! - [`auth`]: SMTP AUTH with PLAIN and LOGIN ([`auth::AuthExchange`]).
//! - [`error`]: the error type, [`ProtoError`].
//! - [`server`]: the server side, a sans-IO session shared by the bundled
//!   sink, the SMTP injection listener and `sendmail -bs`.
//!
//! A driver looks like this (the socket calls are the caller's):
//!
//! ```text
//! let mut tx = Transaction::new(&envelope, caps.pipelining)?;
//! loop {
//!     match tx.next_action() {
//!         Action::Send(bytes) => write(bytes),
//!         Action::SendBody => { write(stored wire form); write(".\r\n") }
//!         Action::AwaitReply => tx.on_reply(read one reply with ReplyParser)?,
//!         Action::Done(outcome) => return outcome, // one result per recipient
//!     }
//! }
//! ```

pub mod action;
pub mod auth;
pub mod caps;
pub mod command;
pub mod error;
pub mod parser;
pub mod reply;
pub mod server;
pub mod session;
pub mod transaction;

#[cfg(test)]
mod test_support;

pub use action::Action;
pub use caps::Capabilities;
pub use command::{DsnRequest, MailParams, Stage};
pub use error::ProtoError;
pub use parser::ReplyParser;
pub use reply::{EnhancedCode, Reply};
pub use session::{SessionSetup, SetupOutcome, SimpleCommand};
pub use transaction::{Envelope, RcptOutcome, Transaction, TxOutcome};

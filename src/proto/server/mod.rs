//! Sans-IO SMTP server session: one implementation of the server side of
//! RFC 5321 for every driver (the bundled sink, the SMTP injection
//! listener, `sendmail -bs`). No sockets, no async, no I/O.
//!
//! A driver owns the connection and a [`ServerPolicy`]; the session turns
//! input bytes into replies and stops when the driver must act:
//!
//! ```text
//! let params = Arc::new(SessionParams::new(config));     // once per listener
//! let mut s = Session::new(params, Some(peer_ip));
//! s.greeting(&mut out);                                   // write it
//! loop {
//!     let (used, progress) = s.feed(&buf[start..end], &mut out, &mut policy);
//!     start += used;
//!     match progress {
//!         Progress::NeedInput => { write(out); read more into buf }
//!         Progress::Message => {                          // store, then answer
//!             let m = s.pending_message();                // or s.take_content()
//!             s.finish_message(Ok(queue_id) or Err(451 reply), &mut out);
//!         }
//!         Progress::Auth => { check s.pending_auth(); s.auth_result(ok, &mut out) }
//!         Progress::StartTls => { write(out); drop input; handshake; s.tls_started() }
//!         Progress::Close => { write(out); close }
//!     }
//! }
//! // log: "disconnect from HOST[IP] {}", s.command_counts()
//! ```
//!
//! # Layout
//!
//! - [`config`]: [`SessionConfig`] (extensions, TLS, AUTH, [`LineEnds`],
//!   [`Capture`], [`Limits`]) and [`SessionParams`], the prepared form.
//! - [`reply`]: [`Reply`] and how it is written.
//! - `command`: one command line into a command (pure).
//! - [`address`]: the strict path check of MAIL and RCPT.
//! - [`params`]: MAIL and RCPT parameters ([`MailParams`]); the DSN
//!   requests are the model's ([`crate::model::dsn`]), xtext is
//!   [`crate::mail::xtext`].
//! - `body`: the message bytes, size limit and line-end rule.
//! - `data`: the end of DATA and dot-unstuffing.
//! - [`policy`]: [`ServerPolicy`], [`Decision`], [`Context`].
//! - [`message`]: [`PendingMessage`], what the driver gets.
//! - [`counts`]: [`CommandCounts`] for the disconnect log line.
//! - `session`: [`Session`] and its feed loop; `progress`: [`Progress`],
//!   [`Stage`], [`Counters`]; `driver`: the driver's other calls;
//!   `commands`, `transaction` and `auth` hold the command handlers.
//!
//! # Strictness
//!
//! Line ends follow [`LineEnds`] (Postfix 3.9's `smtpd_forbid_bare_newline`;
//! default `Normalize`). A command line with a control character gets
//! `500 5.5.2`; one longer than `max_line` is discarded with `500 5.5.2`.
//! Input before the greeting gets `521 5.5.1 Protocol error` and the
//! session closes. HTTP verbs and lines not starting with a letter end the
//! session (`forbid_non_smtp`). Limits: [`Limits`].

pub mod address;
pub mod config;
pub mod counts;
pub mod message;
pub mod params;
pub mod policy;
pub mod reply;

mod auth;
mod body;
mod command;
mod commands;
mod data;
mod driver;
mod progress;
mod session;
mod transaction;

#[cfg(test)]
mod tests;

pub use crate::model::dsn::{BodyType, DsnParams, DsnRet, Notify, RcptDsn};
pub use auth::{AuthRequest, Mechanism};
pub use config::{
    AuthConfig, Capture, Extensions, Limits, LineEnds, SessionConfig, SessionParams, HEAD_LIMIT,
};
pub use counts::{CommandCounts, Verb};
pub use message::{PendingMessage, Transfer};
pub use params::MailParams;
pub use policy::{AcceptAll, Context, Decision, ServerPolicy};
pub use progress::{Counters, Progress, Stage};
pub use reply::Reply;
pub use session::Session;

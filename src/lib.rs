//! ringmail: a bulk outbound mail transfer agent on io_uring.
//!
//! # Layout
//!
//! Data flows one way, in the order below; each module depends only on the
//! ones above it (and on the bottom layer: `config`, `model`, `mail`, `obs`,
//! `spool`).
//!
//! - [`config`]: the TOML configuration, defaults and validation.
//! - [`model`]: plain types: queue IDs, envelopes, recipient status, DSN
//!   requests, submissions.
//! - [`mail`]: RFC 5322 header and address parsing shared by injection and cleanup.
//! - [`obs`]: Postfix-style log lines, Prometheus counters, and the
//!   delivery events for applications (`obs::events`: an events file and a
//!   webhook).
//! - [`spool`]: the spool directory layout, the daemon lock and control socket.
//! - [`inject`]: how mail comes in: the `sendmail` command (writes
//!   `maildrop/`), the pickup scanner (`maildrop/` and `pickup/`), and the
//!   SMTP injection listeners (`inject::smtpd`), each handed cleanup and
//!   the pickup ring as functions by the daemon.
//! - [`cleanup`]: a spool file's envelope, header fixes and the canonical
//!   wire form.
//! - [`compose`]: newsletter campaigns: the template parsed and compiled
//!   once (minijinja), the recipient list read row by row, each
//!   recipient's message rendered with its VERP sender, Message-ID and
//!   unsubscribe fields, and the HMAC tokens that name a recipient.
//! - [`queue`]: the per-shard memory-mapped segment files: record codec,
//!   group commit, recovery, garbage collection, read-only listing.
//! - [`rt`]: the thread-per-core runtime: io_uring probe, pinned shard
//!   threads, tokio-uring or plain tokio.
//! - [`proto`]: the sans-IO SMTP client protocol (replies, capabilities,
//!   commands, the transaction state machine), and the sans-IO SMTP server
//!   session every server driver shares (`proto::server`).
//! - [`deliver`]: routing, and one SMTP session over an owned-buffer connection.
//! - [`bounce`]: delivery status notifications (RFC 3464): the failure
//!   and delay notices sent back to the sender, built without I/O.
//! - [`shape`]: traffic shaping, sans-IO: sites by MX roll-up, the
//!   shipped and user shaping rules with the provenance of each limit,
//!   reply-driven automation, sending sources, pools and warm-up; the
//!   facade the scheduler asks (`shape::Shaper`).
//! - [`sched`]: the lock-free pickup ring, the shard loop that drains it
//!   into the queue, and the per-shard queue manager that schedules delivery.
//! - [`sink`]: the bundled SMTP receiver for tests and benchmarks.
//! - [`daemon`]: `ringmail serve`, wiring the stages together (the
//!   listeners' wiring in `daemon/smtpd.rs`).
//! - [`check`]: `ringmail check-domain`: SPF, DKIM, DMARC, reverse DNS
//!   and the bounce domain's MX, asked through the configured resolver;
//!   findings as values, rendered as a table or JSON.
//! - [`admin`]: the HTTP server beside the daemon (`[http]`): one-click
//!   unsubscribe and the JSON API, on a runtime of its own, reaching the
//!   shards only through the pickup ring, the campaign intake and the
//!   suppression list the daemon hands it.

pub mod admin;
pub mod bounce;
pub mod check;
pub mod cleanup;
pub mod compose;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod inject;
pub mod mail;
pub mod model;
pub mod obs;
pub mod proto;
pub mod queue;
pub mod rt;
pub mod sched;
pub mod shape;
pub mod sign;
pub mod sink;
pub mod spool;

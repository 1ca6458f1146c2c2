//! Delivery events for applications (`[events]`, docs/OPERATIONS.md
//! "Delivery events and webhooks").
//!
//! Every event (received, delivered, deferred, bounced, expired,
//! suppressed, unsubscribed, complaint) is an [`Event`], emitted through an
//! [`EventSink`] that never blocks, written by one thread as a JSON line to
//! an append-only, size-rotated events file, and, with a `webhook_url`,
//! POSTed in batches by another thread that tails the files from a durable
//! cursor: at least once, each event carrying a unique `id`.
//!
//! ```text
//! shards, intakes ──emit──> bounded queue ──> events thread ──> events.jsonl (+ .1 .2 ... rotated)
//!                                                   │ poke                 │ tail from cursor
//!                                                   └────────────> webhook thread ──POST [..]──> application
//!                                                                          └─ 2xx: events.jsonl.cursor
//! ```
//!
//! Emitting, from a stage that was handed the daemon's sink (a clone per
//! shard; a disabled sink without `[events]`):
//!
//! ```
//! use ringmail::obs::events::{Event, EventKind, EventSink, EventSource, Reply};
//!
//! let events = EventSink::disabled();
//! if events.is_enabled() {
//!     let mut e = Event::new(EventKind::Delivered, "01A2B3C4D5E6");
//!     e.sender = Some("news@example.com".into());
//!     e.recipient = Some("a@example.net".into());
//!     e.message_id = Some("m1@example.com".into());
//!     e.site = Some("example.net".into());
//!     e.source = Some(EventSource::Smtp);
//!     e.reply = Some(Reply { code: 250, enhanced: Some("2.0.0".into()), text: "ok".into() });
//!     e.peer = Some("mx.example.net[192.0.2.1]:25".into());
//!     e.attempts = Some(1);
//!     events.emit(e); // never blocks; `id` is given by the writer thread
//! }
//! ```
//!
//! - `event.rs`: the typed event, its JSON form, ids.
//! - `sink.rs`: the emitting handle and the counters.
//! - `writer.rs`: the append, sync and rotate thread.
//! - `files.rs`: file names by generation.
//! - `cursor.rs`: the durable cursor.
//! - `tail.rs`: reading from a cursor, following rotation.
//! - `webhook.rs`: the poster thread and its HTTP request.

pub mod cursor;
pub mod event;
pub mod files;
pub mod sink;
pub mod tail;
pub mod webhook;
pub mod writer;

pub use cursor::{Cursor, CursorFile};
pub use event::{Event, EventKind, EventSource, Reply};
pub use sink::{EventSink, EventStats, QUEUE_CAPACITY};
pub use webhook::{Poster, WebhookError, WebhookOptions};
pub use writer::{FsyncPolicy, Writer, WriterError, WriterOptions};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why the events machinery could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The events file could not be opened.
    #[error("events: {0}")]
    Writer(#[from] WriterError),
    /// The webhook could not be set up (a bad URL, a damaged cursor).
    #[error("events: {0}")]
    Webhook(#[from] WebhookError),
}

impl EventsError {
    /// True when starting again later may work.
    pub fn is_transient(&self) -> bool {
        match self {
            EventsError::Writer(e) => e.is_transient(),
            EventsError::Webhook(e) => e.is_transient(),
        }
    }
}

/// Everything [`EventService::start`] needs.
#[derive(Clone, Debug)]
pub struct EventsOptions {
    /// The events file and its rotation.
    pub writer: WriterOptions,
    /// The webhook, when one is configured (its cursor path also goes in
    /// `writer.cursor`, which [`EventsOptions::new`] arranges).
    pub webhook: Option<WebhookOptions>,
    /// Events that may wait for the writer ([`QUEUE_CAPACITY`]).
    pub queue_capacity: usize,
}

impl EventsOptions {
    /// Options for `file`, with a webhook when `webhook` is given; its
    /// cursor is `FILE.cursor`, which the writer also reads to keep the
    /// files the webhook has not passed.
    pub fn new(
        file: PathBuf,
        max_file_size: u64,
        keep: usize,
        fsync: FsyncPolicy,
        webhook: Option<WebhookOptions>,
    ) -> EventsOptions {
        let webhook = webhook.map(|mut w| {
            w.cursor = cursor_path(&file);
            w
        });
        EventsOptions {
            writer: WriterOptions {
                cursor: webhook.as_ref().map(|w| w.cursor.clone()),
                file,
                max_file_size,
                keep,
                fsync,
            },
            webhook,
            queue_capacity: QUEUE_CAPACITY,
        }
    }
}

/// The webhook's cursor file for events file `file`: `FILE.cursor`.
pub fn cursor_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".cursor");
    PathBuf::from(p)
}

/// The running writer and (optional) poster, and the sink that feeds them.
#[derive(Debug)]
pub struct EventService {
    sink: EventSink,
    writer: Writer,
    poster: Option<Poster>,
}

impl EventService {
    /// Opens the events file and starts the writer thread, and the poster
    /// when a webhook is configured.
    pub fn start(options: EventsOptions) -> Result<EventService, EventsError> {
        let stats = Arc::new(EventStats::default());
        let (tx, rx) = crossbeam_channel::bounded(options.queue_capacity.max(1));
        let (wake_tx, wake_rx) = match options.webhook {
            Some(_) => {
                let (t, r) = crossbeam_channel::bounded(1);
                (Some(t), Some(r))
            }
            None => (None, None),
        };
        // The poster first: a bad URL or cursor stops the start before
        // any thread runs.
        let poster = match options.webhook {
            Some(w) => Some(Poster::start(
                &options.writer.file,
                w,
                Arc::clone(&stats),
                wake_rx,
            )?),
            None => None,
        };
        let writer = match Writer::start(options.writer, rx, Arc::clone(&stats), wake_tx) {
            Ok(w) => w,
            Err(e) => {
                if let Some(p) = poster {
                    p.stop(Duration::from_secs(1));
                }
                return Err(e.into());
            }
        };
        Ok(EventService {
            sink: EventSink::new(tx, stats),
            writer,
            poster,
        })
    }

    /// A handle to emit events through (clone it freely).
    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// The counters.
    pub fn stats(&self) -> Arc<EventStats> {
        Arc::clone(self.sink.stats())
    }

    /// Writes what is queued and stops the writer, then stops the poster,
    /// waiting for it at most `limit` (a request in progress is sent again
    /// at the next start). Events emitted after this are dropped (and
    /// counted).
    pub fn stop(self, limit: Duration) {
        self.writer.stop();
        if let Some(p) = self.poster {
            if !p.stop(limit) {
                tracing::warn!(target: "events", "webhook: a request was still in progress at stop; its batch is sent again at the next start");
            }
        }
    }
}

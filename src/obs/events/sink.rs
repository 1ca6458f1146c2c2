//! [`EventSink`]: the handle the stages emit events through.
//!
//! `emit` is a `try_send` on a bounded crossbeam channel (lock-free: a
//! compare-and-swap on the channel's tail). It never blocks and makes no
//! system call while the writer thread is awake; the writer naps between
//! batches instead of parking, so a busy shard rarely has to wake it (the
//! log thread's pattern, `obs/mod.rs`).
//!
//! **When the channel is full** ([`QUEUE_CAPACITY`] events, about 30 MB of
//! events waiting: the disk has stalled for seconds) the event is dropped,
//! counted in [`EventStats::dropped`] and reported in a warning at most
//! once a minute. Blocking instead would stall the shard, and with it
//! every delivery and commit it drives, behind the events file: the queue
//! is the record of what happened to each message, the events are a copy
//! for applications. Dropped events are never silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use super::event::Event;

/// Events that may wait for the writer thread.
pub const QUEUE_CAPACITY: usize = 64 * 1024;

/// Counters of the events machinery (relaxed atomics; read them for
/// metrics and tests).
#[derive(Debug, Default)]
pub struct EventStats {
    /// Events dropped by `emit` because the writer's queue was full (or
    /// the writer had stopped).
    pub dropped: AtomicU64,
    /// Events written to the events file.
    pub written: AtomicU64,
    /// Events lost because writing or syncing the file failed.
    pub write_failed: AtomicU64,
    /// Rotations of the events file.
    pub rotations: AtomicU64,
    /// Events acknowledged by the webhook (a 2xx to their batch).
    pub posted: AtomicU64,
    /// Webhook requests that failed (each retried).
    pub post_failures: AtomicU64,
    /// Unix second of the last "dropped" warning, so it is logged at most
    /// once a minute.
    last_drop_warning: AtomicU64,
}

impl EventStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A cheap-to-clone handle that emits events; `Send + Sync`. A disabled
/// sink (no `[events]` table) drops every event at the cost of a branch,
/// so callers emit unconditionally.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: Option<Sender<Event>>,
    stats: Arc<EventStats>,
}

impl EventSink {
    /// A sink that discards every event (events are not configured).
    pub fn disabled() -> EventSink {
        EventSink {
            tx: None,
            stats: Arc::new(EventStats::default()),
        }
    }

    /// A sink feeding `tx` (the writer thread's queue).
    pub(crate) fn new(tx: Sender<Event>, stats: Arc<EventStats>) -> EventSink {
        EventSink {
            tx: Some(tx),
            stats,
        }
    }

    /// True when events go somewhere: callers may skip building an event
    /// (its strings) when false.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands `event` to the writer thread; never blocks. A full queue
    /// drops the event and counts it (see the module doc).
    pub fn emit(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(e)) => self.dropped(
                &e,
                "the events queue is full (the events file is not keeping up)",
            ),
            Err(TrySendError::Disconnected(e)) => self.dropped(&e, "the events writer has stopped"),
        }
    }

    /// The counters shared with the writer and the poster.
    pub fn stats(&self) -> &Arc<EventStats> {
        &self.stats
    }

    fn dropped(&self, event: &Event, why: &str) {
        let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.stats.last_drop_warning.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .stats
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(target: "events", "{}: {} event dropped: {why}; {n} dropped since start", event.queue_id.as_deref().unwrap_or("-"), event.kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::events::EventKind;

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (tx, rx) = crossbeam_channel::bounded(2);
        let sink = EventSink::new(tx, Arc::new(EventStats::default()));
        for _ in 0..5 {
            sink.emit(Event::new(EventKind::Delivered, "Q"));
        }
        assert_eq!(rx.len(), 2);
        assert_eq!(EventStats::get(&sink.stats().dropped), 3);
        drop(rx);
        sink.emit(Event::new(EventKind::Delivered, "Q"));
        assert_eq!(EventStats::get(&sink.stats().dropped), 4);
    }

    #[test]
    fn a_disabled_sink_takes_anything() {
        let sink = EventSink::disabled();
        assert!(!sink.is_enabled());
        sink.emit(Event::new(EventKind::Received, "Q"));
        assert_eq!(EventStats::get(&sink.stats().dropped), 0);
    }

    #[test]
    fn the_sink_is_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<EventSink>();
    }
}

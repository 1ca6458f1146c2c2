//! The sink's counters, shared by all connections, and the Message-ID
//! ledger that finds duplicates and lets a benchmark find losses.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::session::Tally;
use super::throttle::RateMeter;

/// Live counters (atomics) and the Message-ID ledger of a running sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    connections: AtomicU64,
    refused_connections: AtomicU64,
    open_connections: AtomicU64,
    /// Open connections that were not refused: what `max_connections` limits.
    serving: AtomicU64,
    max_concurrent_connections: AtomicU64,
    /// Most connections served (not refused) at once.
    max_serving: AtomicU64,
    messages: AtomicU64,
    recipients: AtomicU64,
    bytes: AtomicU64,
    rejected_mail: AtomicU64,
    rejected_rcpt: AtomicU64,
    rejected_data: AtomicU64,
    pipelined_after_data: AtomicU64,
    disconnects: AtomicU64,
    throttled: AtomicU64,
    tls_sessions: AtomicU64,
    auth_ok: AtomicU64,
    auth_failed: AtomicU64,
    numbers: AtomicU64,
    ledger: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Accepted transactions per Message-ID.
    ids: HashMap<String, u32>,
    /// Deliveries per hash of (Message-ID, recipient).
    deliveries: HashMap<u64, u32>,
    duplicate_message_ids: u64,
    missing_message_ids: u64,
    duplicate_deliveries: u64,
    /// Accepted messages per one-second window.
    rate: RateMeter,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkSnapshot {
    /// Connections accepted (including refused ones).
    pub connections: u64,
    /// Connections greeted with 421 because of `max_connections`.
    pub refused_connections: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Most connections open at the same time (refused ones included: they
    /// were open, briefly).
    pub max_concurrent_connections: u64,
    /// Most connections served at the same time: open and not refused
    /// for `max_connections`. Never above `max_connections`.
    #[serde(default)]
    pub max_served_connections: u64,
    /// Messages accepted (250 after DATA).
    pub messages: u64,
    /// The most messages accepted within one second (whole seconds counted
    /// from the first accepted message).
    #[serde(default)]
    pub max_messages_per_second: u64,
    /// Recipients of the accepted messages.
    pub recipients: u64,
    /// Bytes of the accepted messages, dot-unstuffed (as the client's
    /// message; the sum of the dump files' sizes).
    pub bytes: u64,
    /// Distinct Message-IDs among accepted messages.
    pub unique_message_ids: u64,
    /// Accepted messages whose Message-ID had been accepted before.
    pub duplicate_message_ids: u64,
    /// Accepted messages without a Message-ID.
    pub missing_message_ids: u64,
    /// Deliveries of a (Message-ID, recipient) pair that had been delivered
    /// before: duplicates even when a client splits recipients over
    /// transactions.
    pub duplicate_deliveries: u64,
    /// MAIL commands refused (out of sequence, bad address or parameters,
    /// SIZE too big; not the injected 421s, counted in `disconnects`).
    pub rejected_mail: u64,
    /// RCPT commands refused (out of sequence, injected faults, too many
    /// recipients, bad address or parameters).
    pub rejected_rcpt: u64,
    /// Messages refused after DATA (injected faults, too big, not stored).
    pub rejected_data: u64,
    /// Commands refused because they were pipelined after the end of DATA
    /// (`--strict-pipelining`).
    #[serde(default)]
    pub pipelined_after_data: u64,
    /// Connections closed with an injected 421 or a broken STARTTLS.
    pub disconnects: u64,
    /// MAIL commands refused by the rate limit (answered with its reply).
    #[serde(default)]
    pub throttled: u64,
    /// TLS handshakes completed after STARTTLS.
    #[serde(default)]
    pub tls_sessions: u64,
    /// Successful AUTH commands.
    #[serde(default)]
    pub auth_ok: u64,
    /// Failed AUTH exchanges.
    #[serde(default)]
    pub auth_failed: u64,
}

/// Closes a connection's accounting when dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    stats: Arc<SinkStats>,
    serving: bool,
}

impl OpenConnection {
    /// Marks the connection as refused because of `max_connections`: it
    /// stays open (briefly) but no longer counts against the limit.
    pub(crate) fn refuse(&mut self) {
        if std::mem::take(&mut self.serving) {
            self.stats.serving.fetch_sub(1, Relaxed);
            self.stats.refused_connections.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.open_connections.fetch_sub(1, Relaxed);
        if self.serving {
            self.stats.serving.fetch_sub(1, Relaxed);
        }
    }
}

impl SinkStats {
    /// Counts a new connection; returns its guard and the number of
    /// connections now being served (not refused), this one included.
    pub(crate) fn open(self: &Arc<Self>) -> (OpenConnection, u64) {
        self.connections.fetch_add(1, Relaxed);
        let open = self.open_connections.fetch_add(1, Relaxed) + 1;
        self.max_concurrent_connections.fetch_max(open, Relaxed);
        let serving = self.serving.fetch_add(1, Relaxed) + 1;
        let guard = OpenConnection {
            stats: Arc::clone(self),
            serving: true,
        };
        (guard, serving)
    }

    /// Records that `serving` connections (see [`SinkStats::open`]) are
    /// being served, none refused: the peak of `max_served_connections`.
    pub(crate) fn served(&self, serving: u64) {
        self.max_serving.fetch_max(serving, Relaxed);
    }

    /// Adds a session's tally.
    pub(crate) fn add(&self, t: Tally) {
        let add = |c: &AtomicU64, n: u32| {
            if n > 0 {
                c.fetch_add(u64::from(n), Relaxed);
            }
        };
        add(&self.rejected_mail, t.rejected_mail);
        add(&self.rejected_rcpt, t.rejected_rcpt);
        add(&self.rejected_data, t.rejected_data);
        add(&self.pipelined_after_data, t.pipelined_after_data);
        add(&self.disconnects, t.injected_disconnects);
        add(&self.throttled, t.throttled);
        add(&self.auth_ok, t.auth_ok);
        add(&self.auth_failed, t.auth_failed);
    }

    /// Counts a completed TLS handshake.
    pub(crate) fn tls_session(&self) {
        self.tls_sessions.fetch_add(1, Relaxed);
    }

    /// The number for the next message (from 1): the `queued as` number
    /// and dump file name.
    pub(crate) fn next_number(&self) -> u64 {
        self.numbers.fetch_add(1, Relaxed) + 1
    }

    /// Counts an accepted message.
    pub(crate) fn accepted(&self, message_id: Option<&str>, rcpt_to: &[String], size: u64) {
        self.messages.fetch_add(1, Relaxed);
        self.recipients.fetch_add(rcpt_to.len() as u64, Relaxed);
        self.bytes.fetch_add(size, Relaxed);
        let mut ledger = self.ledger();
        ledger.rate.tick(std::time::Instant::now());
        let Some(id) = message_id else {
            ledger.missing_message_ids += 1;
            return;
        };
        match ledger.ids.get_mut(id) {
            Some(n) => {
                *n += 1;
                ledger.duplicate_message_ids += 1;
            }
            None => {
                ledger.ids.insert(id.to_string(), 1);
            }
        }
        for rcpt in rcpt_to {
            let mut h = DefaultHasher::new();
            (id, rcpt.as_str()).hash(&mut h);
            let n = ledger.deliveries.entry(h.finish()).or_insert(0);
            *n += 1;
            if *n > 1 {
                ledger.duplicate_deliveries += 1;
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> SinkSnapshot {
        let ledger = self.ledger();
        SinkSnapshot {
            connections: self.connections.load(Relaxed),
            refused_connections: self.refused_connections.load(Relaxed),
            open_connections: self.open_connections.load(Relaxed),
            max_concurrent_connections: self.max_concurrent_connections.load(Relaxed),
            max_served_connections: self.max_serving.load(Relaxed),
            messages: self.messages.load(Relaxed),
            max_messages_per_second: ledger.rate.max(),
            recipients: self.recipients.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            unique_message_ids: ledger.ids.len() as u64,
            duplicate_message_ids: ledger.duplicate_message_ids,
            missing_message_ids: ledger.missing_message_ids,
            duplicate_deliveries: ledger.duplicate_deliveries,
            rejected_mail: self.rejected_mail.load(Relaxed),
            rejected_rcpt: self.rejected_rcpt.load(Relaxed),
            rejected_data: self.rejected_data.load(Relaxed),
            pipelined_after_data: self.pipelined_after_data.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            tls_sessions: self.tls_sessions.load(Relaxed),
            auth_ok: self.auth_ok.load(Relaxed),
            auth_failed: self.auth_failed.load(Relaxed),
        }
    }

    /// How many accepted messages carried each Message-ID (a count above 1
    /// is a duplicate; an ID the sender used but missing here is a loss).
    pub fn message_id_counts(&self) -> HashMap<String, u32> {
        self.ledger().ids.clone()
    }

    /// How many accepted messages carried this Message-ID.
    pub fn message_id_count(&self, id: &str) -> u32 {
        self.ledger().ids.get(id).copied().unwrap_or(0)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The ledger stays consistent even if a holder panicked: every
        // update is a single insert or increment.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_per_id_and_per_delivery() {
        let s = SinkStats::default();
        let r = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        s.accepted(Some("<a@x>"), &r(&["1@d", "2@d"]), 100);
        // The same message split over two transactions is not a duplicate
        // delivery, but it is a repeated Message-ID.
        s.accepted(Some("<b@x>"), &r(&["1@d"]), 10);
        s.accepted(Some("<b@x>"), &r(&["2@d"]), 10);
        // A real duplicate.
        s.accepted(Some("<a@x>"), &r(&["2@d"]), 100);
        s.accepted(None, &r(&["3@d"]), 1);
        let snap = s.snapshot();
        assert_eq!(snap.messages, 5);
        assert_eq!(snap.recipients, 6);
        assert_eq!(snap.bytes, 221);
        assert_eq!(snap.unique_message_ids, 2);
        assert_eq!(snap.duplicate_message_ids, 2);
        assert_eq!(snap.duplicate_deliveries, 1);
        assert_eq!(snap.missing_message_ids, 1);
        assert_eq!(s.message_id_count("<a@x>"), 2);
        assert_eq!(s.message_id_count("<zz>"), 0);
        assert_eq!(s.message_id_counts().len(), 2);
    }

    #[test]
    fn connection_gauge() {
        let s = Arc::new(SinkStats::default());
        let (a, n) = s.open();
        assert_eq!(n, 1);
        let (b, n) = s.open();
        assert_eq!(n, 2);
        drop(a);
        drop(b);
        let (mut c, n) = s.open();
        assert_eq!(n, 1);
        let (mut d, n) = s.open();
        assert_eq!(n, 2);
        d.refuse();
        d.refuse();
        let (_e, n) = s.open();
        assert_eq!(
            n, 2,
            "a refused connection does not count against the limit"
        );
        drop(d);
        c.refuse();
        drop(c);
        let snap = s.snapshot();
        assert_eq!(
            (
                snap.connections,
                snap.open_connections,
                snap.max_concurrent_connections
            ),
            (5, 1, 3)
        );
        assert_eq!(snap.refused_connections, 2);
        assert_eq!(s.serving.load(Relaxed), 1);
        // Only connections let in count for the served peak.
        assert_eq!(s.snapshot().max_served_connections, 0);
        s.served(2);
        s.served(1);
        assert_eq!(s.snapshot().max_served_connections, 2);
        s.tls_session();
        s.add(Tally {
            auth_ok: 2,
            auth_failed: 1,
            ..Tally::default()
        });
        let snap = s.snapshot();
        assert_eq!(
            (snap.tls_sessions, snap.auth_ok, snap.auth_failed),
            (1, 2, 1)
        );
        let json = serde_json::to_string(&snap).unwrap();
        let back: SinkSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
    }
}

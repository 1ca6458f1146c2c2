//! Counters for Prometheus (`GET /metrics`, docs/OPERATIONS.md).
//!
//! Each shard owns one [`ShardMetrics`], on its own cache lines, and bumps
//! it with relaxed atomic adds: no lock and no shared line on the hot path.
//! A scrape reads every shard's atomics and sums them
//! ([`Metrics::render`]); the values it sees are each exact, not a
//! snapshot taken at one instant.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod histogram;
mod site;
mod tls;

use histogram::histogram;
pub use histogram::AtomicHistogram;
pub use site::{
    AutomationKind, DeferralClass, InFlight, OpenConnection, SiteCounters, SiteRegistry, TOP_SITES,
};
pub use tls::{Direction, TlsCounters};

/// Where a message came in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Origin {
    /// `sendmail` (through `submit.sock` or `maildrop/`).
    Sendmail,
    /// A file dropped into `pickup/`.
    Pickup,
    /// An SMTP listener.
    Smtp,
    /// `POST /api/v1/messages`.
    Api,
    /// A campaign slice (its recipients counted, one message each).
    Campaign,
    /// Made by the daemon itself (bounces, delay warnings).
    #[default]
    Internal,
}

impl Origin {
    /// Every origin, in the order of the counters.
    pub const ALL: [Origin; 6] = [
        Origin::Sendmail,
        Origin::Pickup,
        Origin::Smtp,
        Origin::Api,
        Origin::Campaign,
        Origin::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Sendmail => "sendmail",
            Origin::Pickup => "pickup",
            Origin::Smtp => "smtp",
            Origin::Api => "api",
            Origin::Campaign => "campaign",
            Origin::Internal => "internal",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What became of a recipient's delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the receiver.
    Delivered,
    /// Refused for now; tried again later.
    Deferred,
    /// Refused for good (a bounce notice goes to the sender).
    Bounced,
    /// Given up after `maximal_queue_lifetime`.
    Expired,
    /// Not sent: on the suppression list.
    Suppressed,
    /// Not sent: its campaign was cancelled.
    Cancelled,
}

impl Outcome {
    /// Every outcome, in the order of the counters.
    pub const ALL: [Outcome; 6] = [
        Outcome::Delivered,
        Outcome::Deferred,
        Outcome::Bounced,
        Outcome::Expired,
        Outcome::Suppressed,
        Outcome::Cancelled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Deferred => "deferred",
            Outcome::Bounced => "bounced",
            Outcome::Expired => "expired",
            Outcome::Suppressed => "suppressed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Upper bounds (seconds) of the group-commit latency buckets.
pub const COMMIT_BUCKETS: [f64; 10] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0];

/// Upper bounds of the group-commit batch size buckets (messages).
pub const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1024.0];

/// Upper bounds (seconds) of the delivery latency buckets (queued to the
/// receiver's acceptance).
pub const DELIVERY_BUCKETS: [f64; 10] =
    [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0, 86400.0];

/// One shard's counters (its own cache lines).
#[derive(Debug)]
#[repr(align(128))]
pub struct ShardMetrics {
    received_messages: [AtomicU64; 6],
    received_recipients: [AtomicU64; 6],
    outcomes: [AtomicU64; 6],
    /// Messages in this shard's queue now.
    pub queue_messages: AtomicI64,
    /// Messages that left this shard's queue since the daemon started.
    pub messages_completed: AtomicU64,
    /// Arrival time (µs since the epoch) of the oldest message in this
    /// shard's queue; 0 when it is empty. Refreshed every few seconds.
    pub oldest_arrival_micros: AtomicU64,
    /// Group commits (fdatasync) and their latency.
    pub commit_seconds: AtomicHistogram<10>,
    /// Messages per group commit.
    pub commit_batch: AtomicHistogram<8>,
    /// Queued to accepted by the receiver, per recipient.
    pub delivery_seconds: AtomicHistogram<10>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            received_messages: std::array::from_fn(|_| AtomicU64::new(0)),
            received_recipients: std::array::from_fn(|_| AtomicU64::new(0)),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            queue_messages: AtomicI64::new(0),
            oldest_arrival_micros: AtomicU64::new(0),
            messages_completed: AtomicU64::new(0),
            commit_seconds: AtomicHistogram::new(COMMIT_BUCKETS),
            commit_batch: AtomicHistogram::new(BATCH_BUCKETS),
            delivery_seconds: AtomicHistogram::new(DELIVERY_BUCKETS),
        }
    }
}

impl ShardMetrics {
    /// A message queued durably, with its recipients.
    pub fn received(&self, origin: Origin, recipients: u64) {
        self.received_messages[origin.index()].fetch_add(1, Ordering::Relaxed);
        self.received_recipients[origin.index()].fetch_add(recipients, Ordering::Relaxed);
    }

    /// One recipient's attempt ended this way.
    pub fn outcome(&self, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// One shard's handle on the shared counters.
#[derive(Clone, Debug)]
pub struct ShardCounters {
    all: std::sync::Arc<Metrics>,
    index: usize,
}

impl ShardCounters {
    /// Shard `index`'s counters in `all`.
    pub fn new(all: std::sync::Arc<Metrics>, index: usize) -> ShardCounters {
        ShardCounters { all, index }
    }

    /// The daemon's metrics (per-site and TLS counters are shared).
    pub fn all(&self) -> &Metrics {
        &self.all
    }
}

impl std::ops::Deref for ShardCounters {
    type Target = ShardMetrics;

    fn deref(&self) -> &ShardMetrics {
        self.all.shard(self.index)
    }
}

/// Facts about the running daemon, as labels of `ringmail_info`.
#[derive(Clone, Debug)]
pub struct DaemonInfo {
    /// `uring` or `epoll`.
    pub io_backend: String,
    /// Number of shards.
    pub shards: usize,
    /// The crate version.
    pub version: &'static str,
}

/// Every shard's counters, shared by the shards and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    shards: Vec<ShardMetrics>,
    info: DaemonInfo,
    started: Instant,
    /// The delivery events' counters, once `[events]` runs.
    events: std::sync::OnceLock<std::sync::Arc<super::events::EventStats>>,
    /// Per site: connections, recipients in flight, outcomes, deferral
    /// reasons, automation actions.
    pub sites: SiteRegistry,
    /// TLS handshakes (shared with the SMTP listener).
    pub tls: Arc<TlsCounters>,
}

impl Metrics {
    /// Counters for `info.shards` shards, all zero.
    pub fn new(info: DaemonInfo) -> Metrics {
        Metrics {
            shards: (0..info.shards.max(1))
                .map(|_| ShardMetrics::default())
                .collect(),
            info,
            started: Instant::now(),
            events: std::sync::OnceLock::new(),
            sites: SiteRegistry::default(),
            tls: Arc::new(TlsCounters::default()),
        }
    }

    /// Adds the delivery events' counters to the exposition (the daemon
    /// calls it once, when `[events]` runs; later calls are ignored).
    pub fn set_events(&self, stats: std::sync::Arc<super::events::EventStats>) {
        let _ = self.events.set(stats);
    }

    /// Shard `index`'s counters (the last shard's for an index beyond).
    pub fn shard(&self, index: usize) -> &ShardMetrics {
        let last = self.shards.len() - 1;
        // `new` makes at least one: `last` is a valid index.
        &self.shards[index.min(last)]
    }

    fn sum(&self, f: impl Fn(&ShardMetrics) -> u64) -> u64 {
        self.shards.iter().map(f).sum()
    }

    /// The text exposition format (version 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(
            &mut out,
            "ringmail_info",
            "gauge",
            "The daemon: io backend, shards and version as labels; always 1.",
        );
        let _ = writeln!(
            out,
            "ringmail_info{{io_backend=\"{}\",shards=\"{}\",version=\"{}\"}} 1",
            escape(&self.info.io_backend),
            self.info.shards,
            escape(self.info.version)
        );
        header(
            &mut out,
            "ringmail_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
        );
        let _ = writeln!(
            out,
            "ringmail_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );

        header(&mut out, "ringmail_messages_received_total", "counter", "Messages queued durably, by where they came in (a campaign counts one per recipient list slice).");
        for o in Origin::ALL {
            let v = self.sum(|s| load(&s.received_messages[o.index()]));
            let _ = writeln!(
                out,
                "ringmail_messages_received_total{{source=\"{}\"}} {v}",
                o.as_str()
            );
        }
        header(
            &mut out,
            "ringmail_recipients_received_total",
            "counter",
            "Recipients queued durably, by where they came in.",
        );
        for o in Origin::ALL {
            let v = self.sum(|s| load(&s.received_recipients[o.index()]));
            let _ = writeln!(
                out,
                "ringmail_recipients_received_total{{source=\"{}\"}} {v}",
                o.as_str()
            );
        }
        header(
            &mut out,
            "ringmail_recipients_total",
            "counter",
            "Recipient delivery attempts by outcome (deferred counts every deferral).",
        );
        for (i, o) in Outcome::ALL.iter().enumerate() {
            let v = self.sum(|s| load(&s.outcomes[i]));
            let _ = writeln!(
                out,
                "ringmail_recipients_total{{outcome=\"{}\"}} {v}",
                o.as_str()
            );
        }
        header(
            &mut out,
            "ringmail_queue_messages",
            "gauge",
            "Messages in the queue now (not yet done for every recipient).",
        );
        let q: i64 = self
            .shards
            .iter()
            .map(|s| s.queue_messages.load(Ordering::Relaxed))
            .sum();
        let _ = writeln!(out, "ringmail_queue_messages {}", q.max(0));
        header(
            &mut out,
            "ringmail_messages_completed_total",
            "counter",
            "Messages that left the queue: every recipient delivered, bounced, expired, suppressed or deleted (Postfix's \"removed\").",
        );
        let done = self.sum(|s| load(&s.messages_completed));
        let _ = writeln!(out, "ringmail_messages_completed_total {done}");
        header(
            &mut out,
            "ringmail_queue_oldest_message_age_seconds",
            "gauge",
            "Age of the oldest message in the queue (0 when empty; refreshed every few seconds).",
        );
        let oldest = self
            .shards
            .iter()
            .map(|s| s.oldest_arrival_micros.load(Ordering::Relaxed))
            .filter(|&t| t > 0)
            .min();
        let age = oldest.map_or(0.0, |t| {
            crate::model::now_micros().saturating_sub(t) as f64 / 1e6
        });
        let _ = writeln!(out, "ringmail_queue_oldest_message_age_seconds {age:.3}");
        histogram(
            &mut out,
            "ringmail_commit_seconds",
            "Group commit latency (write and fdatasync of a batch).",
            self.shards.iter().map(|s| &s.commit_seconds),
            1e6,
        );
        histogram(
            &mut out,
            "ringmail_commit_batch_messages",
            "Messages per group commit.",
            self.shards.iter().map(|s| &s.commit_batch),
            1e6,
        );
        histogram(
            &mut out,
            "ringmail_delivery_seconds",
            "Queued to accepted by the receiver, per recipient.",
            self.shards.iter().map(|s| &s.delivery_seconds),
            1e6,
        );
        self.sites.render(&mut out);
        self.tls.render(&mut out);
        if let Some(e) = self.events.get() {
            for (name, help, value) in [
                (
                    "ringmail_events_written_total",
                    "Delivery events written to the events file.",
                    &e.written,
                ),
                (
                    "ringmail_events_dropped_total",
                    "Delivery events dropped because the events queue was full.",
                    &e.dropped,
                ),
                (
                    "ringmail_events_write_failed_total",
                    "Delivery events lost to a failed write or sync of the events file.",
                    &e.write_failed,
                ),
                (
                    "ringmail_events_rotations_total",
                    "Rotations of the events file.",
                    &e.rotations,
                ),
                (
                    "ringmail_events_posted_total",
                    "Delivery events acknowledged by the webhook.",
                    &e.posted,
                ),
                (
                    "ringmail_events_webhook_failures_total",
                    "Webhook requests that failed (each retried).",
                    &e.post_failures,
                ),
            ] {
                header(&mut out, name, "counter", help);
                let _ = writeln!(out, "{name} {}", load(value));
            }
        }
        out
    }
}

pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(DaemonInfo {
            io_backend: "uring".into(),
            shards: 2,
            version: "0.1.0",
        })
    }

    #[test]
    fn event_counters_appear_once_events_run() {
        let m = metrics();
        assert!(!m.render().contains("ringmail_events_"));
        let stats = std::sync::Arc::new(crate::obs::events::EventStats::default());
        stats.written.fetch_add(7, Ordering::Relaxed);
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        m.set_events(stats);
        let text = m.render();
        assert!(
            text.contains("\nringmail_events_written_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("\nringmail_events_dropped_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ringmail_events_posted_total counter"),
            "{text}"
        );
    }

    #[test]
    fn shards_are_summed_per_label() {
        let m = metrics();
        m.shard(0).received(Origin::Smtp, 3);
        m.shard(1).received(Origin::Smtp, 1);
        m.shard(1).received(Origin::Pickup, 1);
        m.shard(0).outcome(Outcome::Delivered);
        m.shard(1).outcome(Outcome::Delivered);
        m.shard(1).outcome(Outcome::Deferred);
        let text = m.render();
        assert!(
            text.contains("ringmail_messages_received_total{source=\"smtp\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("ringmail_recipients_received_total{source=\"smtp\"} 4\n"));
        assert!(text.contains("ringmail_messages_received_total{source=\"pickup\"} 1\n"));
        assert!(text.contains("ringmail_recipients_total{outcome=\"delivered\"} 2\n"));
        assert!(text.contains("ringmail_recipients_total{outcome=\"deferred\"} 1\n"));
        assert!(
            text.contains("ringmail_info{io_backend=\"uring\",shards=\"2\",version=\"0.1.0\"} 1\n")
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = metrics();
        m.shard(0).commit_seconds.observe(0.0004);
        m.shard(1).commit_seconds.observe(0.003);
        m.shard(1).commit_seconds.observe(5.0);
        let text = m.render();
        assert!(
            text.contains("ringmail_commit_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ringmail_commit_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("ringmail_commit_seconds_bucket{le=\"2\"} 2\n"));
        assert!(text.contains("ringmail_commit_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("ringmail_commit_seconds_count 3\n"));
        assert!(
            text.contains("ringmail_commit_seconds_sum 5.0034\n"),
            "{text}"
        );
    }

    #[test]
    fn every_metric_has_help_and_type() {
        let text = metrics().render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {base} "))
                    || text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE line"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

//! Counters per shaping site (docs/SHAPING.md), with bounded cardinality.
//!
//! A destination takes its site's [`SiteCounters`] from the
//! [`SiteRegistry`] once (one lock when it learns its site) and from then
//! on bumps plain atomics. A scrape shows the [`TOP_SITES`] busiest sites
//! by name and sums the rest as `site="other"`, so the exposition stays
//! small whatever the number of domains mail goes to. Sites no
//! destination holds any more are folded into "other" and forgotten, so
//! the registry follows the destinations in use, not every one ever seen.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{escape, header};

/// Sites shown by name in a scrape; the others are summed as `other`.
pub const TOP_SITES: usize = 20;

/// Registry size from which sites nobody holds are folded and forgotten
/// when a new one is added.
const PRUNE_FROM: usize = 4096;

/// Why a delivery attempt was deferred, by the subject of its enhanced
/// status code (RFC 3463), with TLS apart from other security failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeferralClass {
    /// `4.1.x`: the address (unknown user for now, DNS of the domain).
    Addressing,
    /// `4.2.x`: the mailbox (full, disabled for now).
    Mailbox,
    /// `4.3.x`: the receiving system (out of resources, not accepting).
    System,
    /// `4.4.x`: network and routing (DNS, connect, timeouts, lost
    /// connections).
    Network,
    /// `4.5.x`: the protocol.
    Protocol,
    /// `4.6.x`: the content.
    Content,
    /// `4.7.4` / `4.7.5`: TLS was required and not possible, or the
    /// handshake failed.
    Tls,
    /// `4.7.x` otherwise: policy, reputation and rate limiting (Gmail's
    /// `4.7.28`, Microsoft's `4.7.500`).
    Policy,
    /// No enhanced code, or one outside the classes above.
    Other,
}

impl DeferralClass {
    /// Every class, in the order of the counters.
    pub const ALL: [DeferralClass; 9] = [
        DeferralClass::Addressing,
        DeferralClass::Mailbox,
        DeferralClass::System,
        DeferralClass::Network,
        DeferralClass::Protocol,
        DeferralClass::Content,
        DeferralClass::Tls,
        DeferralClass::Policy,
        DeferralClass::Other,
    ];

    /// The class of enhanced status code `dsn` (`4.7.28`, `4.4.1`, ...).
    pub fn of_dsn(dsn: &str) -> DeferralClass {
        let mut parts = dsn.split('.');
        let (_class, subject, detail) = (parts.next(), parts.next(), parts.next());
        match (subject, detail) {
            (Some("1"), _) => DeferralClass::Addressing,
            (Some("2"), _) => DeferralClass::Mailbox,
            (Some("3"), _) => DeferralClass::System,
            (Some("4"), _) => DeferralClass::Network,
            (Some("5"), _) => DeferralClass::Protocol,
            (Some("6"), _) => DeferralClass::Content,
            (Some("7"), Some("4" | "5")) => DeferralClass::Tls,
            (Some("7"), _) => DeferralClass::Policy,
            _ => DeferralClass::Other,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeferralClass::Addressing => "addressing",
            DeferralClass::Mailbox => "mailbox",
            DeferralClass::System => "system",
            DeferralClass::Network => "network",
            DeferralClass::Protocol => "protocol",
            DeferralClass::Content => "content",
            DeferralClass::Tls => "tls",
            DeferralClass::Policy => "policy",
            DeferralClass::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What reply-driven automation did to a site (docs/SHAPING.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutomationKind {
    /// The site was suspended.
    Suspended,
    /// A limit was cut.
    Cut,
    /// A cut limit went up a step or back.
    Restored,
    /// A suspension ended.
    Resumed,
}

impl AutomationKind {
    /// Every kind, in the order of the counters.
    pub const ALL: [AutomationKind; 4] = [
        AutomationKind::Suspended,
        AutomationKind::Cut,
        AutomationKind::Restored,
        AutomationKind::Resumed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AutomationKind::Suspended => "suspended",
            AutomationKind::Cut => "cut",
            AutomationKind::Restored => "restored",
            AutomationKind::Resumed => "resumed",
        }
    }
}

/// Recipient outcomes counted per site.
const OUTCOMES: [&str; 4] = ["delivered", "deferred", "bounced", "expired"];

/// One site's counters, shared by every shard's destinations of that site.
#[derive(Debug, Default)]
pub struct SiteCounters {
    connections: AtomicI64,
    in_flight: AtomicI64,
    outcomes: [AtomicU64; 4],
    deferrals: [AtomicU64; 9],
    automation: [AtomicU64; 4],
}

impl SiteCounters {
    /// A connection to the site is open; closed when the guard drops.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }

    /// `recipients` recipients are in a transaction to the site until the
    /// guard drops.
    pub fn in_flight(self: &Arc<Self>, recipients: usize) -> InFlight {
        let n = recipients as i64;
        self.in_flight.fetch_add(n, Ordering::Relaxed);
        InFlight(Arc::clone(self), n)
    }

    /// A recipient was accepted by the site.
    pub fn delivered(&self) {
        self.outcomes[0].fetch_add(1, Ordering::Relaxed);
    }

    /// A recipient was deferred, for a reason of this class.
    pub fn deferred(&self, class: DeferralClass) {
        self.outcomes[1].fetch_add(1, Ordering::Relaxed);
        self.deferrals[class.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A recipient was refused for good.
    pub fn bounced(&self) {
        self.outcomes[2].fetch_add(1, Ordering::Relaxed);
    }

    /// A recipient expired in the queue.
    pub fn expired(&self) {
        self.outcomes[3].fetch_add(1, Ordering::Relaxed);
    }

    /// Automation acted on the site.
    pub fn automation(&self, kind: AutomationKind) {
        let i = AutomationKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.automation[i].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            connections: self.connections.load(Ordering::Relaxed).max(0),
            in_flight: self.in_flight.load(Ordering::Relaxed).max(0),
            outcomes: std::array::from_fn(|i| load(&self.outcomes[i])),
            deferrals: std::array::from_fn(|i| load(&self.deferrals[i])),
            automation: std::array::from_fn(|i| load(&self.automation[i])),
        }
    }
}

/// An open connection counted in its site's gauge (see
/// [`SiteCounters::connection_opened`]).
#[derive(Debug)]
pub struct OpenConnection(Arc<SiteCounters>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Recipients in a transaction, counted in their site's gauge (see
/// [`SiteCounters::in_flight`]).
#[derive(Debug)]
pub struct InFlight(Arc<SiteCounters>, i64);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// A site's values read at one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Snapshot {
    connections: i64,
    in_flight: i64,
    outcomes: [u64; 4],
    deferrals: [u64; 9],
    automation: [u64; 4],
}

impl Snapshot {
    fn add(&mut self, o: &Snapshot) {
        self.connections += o.connections;
        self.in_flight += o.in_flight;
        for (a, b) in self.outcomes.iter_mut().zip(o.outcomes) {
            *a += b;
        }
        for (a, b) in self.deferrals.iter_mut().zip(o.deferrals) {
            *a += b;
        }
        for (a, b) in self.automation.iter_mut().zip(o.automation) {
            *a += b;
        }
    }

    /// How busy the site has been: what ranks it among the top sites.
    fn activity(&self) -> u64 {
        self.outcomes.iter().sum::<u64>() + self.connections as u64 + self.in_flight as u64
    }
}

#[derive(Debug, Default)]
struct Registry {
    sites: HashMap<Arc<str>, Arc<SiteCounters>>,
    /// The counters of sites forgotten (part of `other`).
    retired: Snapshot,
    prune_at: usize,
}

impl Registry {
    /// Folds the sites nobody holds into `retired` and forgets them.
    fn prune(&mut self) {
        let mut retired = self.retired;
        self.sites.retain(|_, c| {
            if Arc::strong_count(c) > 1 {
                return true;
            }
            retired.add(&c.snapshot());
            false
        });
        self.retired = retired;
        self.prune_at = (self.sites.len() * 2).max(PRUNE_FROM);
    }
}

/// Every site's counters, shared by the shards and the scrape.
#[derive(Debug, Default)]
pub struct SiteRegistry {
    inner: Mutex<Registry>,
}

impl SiteRegistry {
    /// The counters of `site`, made on first use.
    pub fn site(&self, site: &str) -> Arc<SiteCounters> {
        let mut r = self.lock();
        if let Some(c) = r.sites.get(site) {
            return Arc::clone(c);
        }
        if r.sites.len() >= r.prune_at.max(PRUNE_FROM) {
            r.prune();
        }
        let c = Arc::new(SiteCounters::default());
        r.sites.insert(Arc::from(site), Arc::clone(&c));
        c
    }

    /// Number of sites with counters of their own.
    pub fn len(&self) -> usize {
        self.lock().sites.len()
    }

    /// True when no site has counters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain counters behind:
        // they are still valid.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The top sites by name and the rest as `other`, after forgetting the
    /// sites nobody holds.
    fn ranked(&self, top: usize) -> Vec<(String, Snapshot)> {
        let mut r = self.lock();
        r.prune();
        let mut all: Vec<(String, Snapshot)> = r
            .sites
            .iter()
            .map(|(name, c)| (name.to_string(), c.snapshot()))
            .collect();
        let mut other = r.retired;
        drop(r);
        all.sort_by(|a, b| {
            b.1.activity()
                .cmp(&a.1.activity())
                .then_with(|| a.0.cmp(&b.0))
        });
        for (_, s) in all.iter().skip(top) {
            other.add(s);
        }
        all.truncate(top);
        if other != Snapshot::default() {
            all.push(("other".to_string(), other));
        }
        all
    }

    /// Writes the per-site metrics.
    pub(super) fn render(&self, out: &mut String) {
        let sites = self.ranked(TOP_SITES);
        header(
            out,
            "ringmail_site_connections",
            "gauge",
            "Connections open now, by site (top sites by activity; the rest as \"other\").",
        );
        for (name, s) in &sites {
            let _ = writeln!(
                out,
                "ringmail_site_connections{{site=\"{}\"}} {}",
                escape(name),
                s.connections
            );
        }
        header(
            out,
            "ringmail_site_in_flight_recipients",
            "gauge",
            "Recipients in transactions now, by site.",
        );
        for (name, s) in &sites {
            let _ = writeln!(
                out,
                "ringmail_site_in_flight_recipients{{site=\"{}\"}} {}",
                escape(name),
                s.in_flight
            );
        }
        header(
            out,
            "ringmail_site_recipients_total",
            "counter",
            "Recipient delivery attempts by site and outcome.",
        );
        for (name, s) in &sites {
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ringmail_site_recipients_total{{site=\"{}\",outcome=\"{outcome}\"}} {}",
                    escape(name),
                    s.outcomes[i]
                );
            }
        }
        header(
            out,
            "ringmail_site_deferrals_total",
            "counter",
            "Deferred recipients by site and reason class (the enhanced status code's subject).",
        );
        for (name, s) in &sites {
            for class in DeferralClass::ALL {
                let v = s.deferrals[class.index()];
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "ringmail_site_deferrals_total{{site=\"{}\",class=\"{}\"}} {v}",
                        escape(name),
                        class.as_str()
                    );
                }
            }
        }
        header(
            out,
            "ringmail_site_automation_actions_total",
            "counter",
            "Reply-driven automation actions by site and kind.",
        );
        for (name, s) in &sites {
            for (i, kind) in AutomationKind::ALL.iter().enumerate() {
                let v = s.automation[i];
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "ringmail_site_automation_actions_total{{site=\"{}\",action=\"{}\"}} {v}",
                        escape(name),
                        kind.as_str()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferral_classes_follow_the_enhanced_code() {
        assert_eq!(DeferralClass::of_dsn("4.7.28"), DeferralClass::Policy);
        assert_eq!(DeferralClass::of_dsn("4.7.0"), DeferralClass::Policy);
        assert_eq!(DeferralClass::of_dsn("4.7.5"), DeferralClass::Tls);
        assert_eq!(DeferralClass::of_dsn("4.7.4"), DeferralClass::Tls);
        assert_eq!(DeferralClass::of_dsn("4.4.1"), DeferralClass::Network);
        assert_eq!(DeferralClass::of_dsn("4.2.2"), DeferralClass::Mailbox);
        assert_eq!(DeferralClass::of_dsn("4.3.0"), DeferralClass::System);
        assert_eq!(DeferralClass::of_dsn("4.1.1"), DeferralClass::Addressing);
        assert_eq!(DeferralClass::of_dsn("4.5.0"), DeferralClass::Protocol);
        assert_eq!(DeferralClass::of_dsn("4.6.0"), DeferralClass::Content);
        assert_eq!(DeferralClass::of_dsn(""), DeferralClass::Other);
        assert_eq!(DeferralClass::of_dsn("4.9.9"), DeferralClass::Other);
    }

    #[test]
    fn guards_count_while_held() {
        let r = SiteRegistry::default();
        let c = r.site("gmail");
        let conn = c.connection_opened();
        let flight = c.in_flight(3);
        let mut out = String::new();
        r.render(&mut out);
        assert!(
            out.contains("ringmail_site_connections{site=\"gmail\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("ringmail_site_in_flight_recipients{site=\"gmail\"} 3\n"),
            "{out}"
        );
        drop((conn, flight));
        let mut out = String::new();
        r.render(&mut out);
        assert!(
            out.contains("ringmail_site_connections{site=\"gmail\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("ringmail_site_in_flight_recipients{site=\"gmail\"} 0\n"),
            "{out}"
        );
    }

    #[test]
    fn beyond_the_top_sites_the_rest_is_other() {
        let r = SiteRegistry::default();
        let held: Vec<Arc<SiteCounters>> = (0..TOP_SITES + 5)
            .map(|i| {
                let c = r.site(&format!("site{i:02}"));
                // site00 busiest, then site01, ...
                for _ in 0..(100 - i) {
                    c.delivered();
                }
                c
            })
            .collect();
        held[0].deferred(DeferralClass::Policy);
        held[0].automation(AutomationKind::Suspended);
        let mut out = String::new();
        r.render(&mut out);
        assert!(
            out.contains("site=\"site00\",outcome=\"delivered\"} 100\n"),
            "{out}"
        );
        assert!(out.contains(&format!("site=\"site{:02}\"", TOP_SITES - 1)));
        assert!(!out.contains(&format!("site=\"site{:02}\"", TOP_SITES)));
        // The five smallest: 100-20 .. 100-24 deliveries.
        let other: u64 = (TOP_SITES..TOP_SITES + 5).map(|i| 100 - i as u64).sum();
        assert!(
            out.contains(&format!(
                "ringmail_site_recipients_total{{site=\"other\",outcome=\"delivered\"}} {other}\n"
            )),
            "{out}"
        );
        assert!(out.contains("ringmail_site_deferrals_total{site=\"site00\",class=\"policy\"} 1\n"));
        assert!(out.contains(
            "ringmail_site_automation_actions_total{site=\"site00\",action=\"suspended\"} 1\n"
        ));
    }

    #[test]
    fn sites_nobody_holds_are_folded_into_other_and_forgotten() {
        let r = SiteRegistry::default();
        for i in 0..10_000 {
            let c = r.site(&format!("d{i}.example"));
            c.delivered();
        }
        // Adding sites prunes the ones no destination holds.
        assert!(r.len() <= PRUNE_FROM, "{}", r.len());
        let kept = r.site("kept.example");
        kept.delivered();
        let mut out = String::new();
        r.render(&mut out);
        assert_eq!(r.len(), 1, "only the held site stays after a scrape");
        assert!(
            out.contains(
                "ringmail_site_recipients_total{site=\"other\",outcome=\"delivered\"} 10000\n"
            ),
            "{out}"
        );
        assert!(out.contains("site=\"kept.example\",outcome=\"delivered\"} 1\n"));
    }
}

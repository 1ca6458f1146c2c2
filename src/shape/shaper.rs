//! [`Shaper`]: the facade the scheduler asks. It holds the immutable
//! [`ShapingTable`] and the state that changes as mail goes out, per site
//! and source: automation (suspensions, cuts), rate buckets, warm-up
//! counts, and the round-robin position of each pool. It is `Send + Sync`
//! (one `Mutex` around the per-site map) so all shards share it and a
//! suspension or cut holds for the whole process.
//!
//! Per-site state is created on first use and dropped by
//! [`Shaper::evict_idle`] once nothing is in force, its buckets are full
//! again and it has not been used for the idle time: memory follows the
//! sites mail is going to now, not every domain ever seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::feedback::{Action, Configured, Knob, PathName, SiteFeedback};
use super::limits::{Limits, Provenance};
use super::rate::Bucket;
use super::site::{Site, SiteKey};
use super::slots::{SiteSlot, SiteSlots};
use super::source::{MessageFacts, SmoothWrr, Source, WarmupCounter, WarmupDecision};
use super::status::SiteState;
use super::table::ShapingTable;
use super::units::{scale, scale_rate};
use crate::config::Rate;
use crate::proto::Reply;

/// Limits after automation, and whether the site is suspended.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    /// The limits in force; fields automation changed name it as their
    /// provenance.
    pub limits: Limits,
    /// Until when the site is suspended, if it is.
    pub suspended_until: Option<Instant>,
    /// What changed while moving to `now` (restore steps, an ended
    /// suspension), for the log.
    pub changes: Vec<Action>,
}

/// The state of one site for one source.
#[derive(Debug)]
struct PathState {
    last_used: Instant,
    feedback: SiteFeedback,
    messages: Option<(Bucket, Rate)>,
    connections: Option<(Bucket, Rate)>,
    warmup: WarmupCounter,
}

impl PathState {
    fn new(now: Instant) -> PathState {
        PathState {
            last_used: now,
            feedback: SiteFeedback::default(),
            messages: None,
            connections: None,
            warmup: WarmupCounter::default(),
        }
    }

    fn evictable(&self, now: Instant, unix_now: i64, idle: Duration) -> bool {
        let full =
            |b: &Option<(Bucket, Rate)>| b.as_ref().map_or(true, |(b, r)| b.is_full(*r, now));
        self.feedback.is_idle()
            && now.saturating_duration_since(self.last_used) >= idle
            && full(&self.messages)
            && full(&self.connections)
            && (self.warmup == WarmupCounter::default() || self.warmup.is_stale(unix_now))
    }
}

/// The shaping facade; see the module documentation.
#[derive(Debug)]
pub struct Shaper {
    table: Arc<ShapingTable>,
    state: Mutex<HashMap<PathName, PathState>>,
    pickers: Mutex<Vec<SmoothWrr>>,
    slots: Arc<SiteSlots>,
}

impl Shaper {
    /// A shaper with no state yet.
    pub fn new(table: Arc<ShapingTable>) -> Shaper {
        let pickers = table
            .pools()
            .iter()
            .map(|p| SmoothWrr::new(&p.weights))
            .collect();
        Shaper {
            table,
            state: Mutex::new(HashMap::new()),
            pickers: Mutex::new(pickers),
            slots: SiteSlots::new(),
        }
    }

    /// The configuration it works from.
    pub fn table(&self) -> &ShapingTable {
        &self.table
    }

    fn state(&self) -> MutexGuard<'_, HashMap<PathName, PathState>> {
        // A poisoned lock only means another thread panicked while holding
        // it; every update below leaves the map consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(site: &SiteKey, source: Option<&str>) -> PathName {
        PathName {
            site: site.clone(),
            source: source.map(Arc::from),
        }
    }

    /// The site of `domain` given its MX hosts.
    pub fn site_for(&self, domain: &str, mx_hosts: &[&str]) -> Site {
        self.table.site_for(domain, mx_hosts)
    }

    /// The configured limits (before automation), with provenance.
    pub fn limits_for(&self, site: &SiteKey, domain: Option<&str>, source: Option<&str>) -> Limits {
        self.table.limits_for(site, domain, source)
    }

    /// Feeds a reply from `site` (sent from `source`) to the automation
    /// rules; returns what changed (empty when nothing did). Log each
    /// action's `Display`.
    pub fn on_reply(
        &self,
        site: &SiteKey,
        source: Option<&str>,
        reply: &Reply,
        now: Instant,
    ) -> Vec<Action> {
        let mut rules = self.table.automation_for(site).peekable();
        if rules.peek().is_none() {
            return Vec::new();
        }
        let configured = self.configured(site, source);
        let path = Shaper::path(site, source);
        let mut state = self.state();
        let entry = state
            .entry(path.clone())
            .or_insert_with(|| PathState::new(now));
        entry.last_used = now;
        let mut actions = entry.feedback.advance(&path, configured, now);
        actions.extend(
            entry
                .feedback
                .on_reply(&path, rules, reply, configured, now)
                .unwrap_or_default(),
        );
        actions
    }

    fn configured(&self, site: &SiteKey, source: Option<&str>) -> Configured {
        let l = self.table.limits_for(site, None, source);
        Configured {
            max_connections: l.max_connections.value,
            message_rate: l.message_rate.value,
        }
    }

    /// The limits in force at `now`: configured, then automation's cuts;
    /// takes due restore steps and ends suspensions that are over.
    pub fn effective(
        &self,
        site: &SiteKey,
        domain: Option<&str>,
        source: Option<&str>,
        now: Instant,
    ) -> Effective {
        let mut limits = self.table.limits_for(site, domain, source);
        let configured = Configured {
            max_connections: limits.max_connections.value,
            message_rate: limits.message_rate.value,
        };
        let path = Shaper::path(site, source);
        let mut state = self.state();
        let Some(entry) = state.get_mut(&path) else {
            return Effective {
                limits,
                suspended_until: None,
                changes: Vec::new(),
            };
        };
        let changes = entry.feedback.advance(&path, configured, now);
        let automation = |f: f64| Provenance {
            layer: "automation".to_string(),
            detail: format!("cut to {:.0}% of the configured value", f * 100.0),
        };
        let f = entry.feedback.factor(Knob::Connections);
        if f < 1.0 {
            limits.max_connections.value = scale(limits.max_connections.value, f);
            limits.max_connections.from = automation(f);
            limits.settle();
        }
        let f = entry.feedback.factor(Knob::MessageRate);
        if let (true, Some(r)) = (f < 1.0, limits.message_rate.value) {
            limits.message_rate.value = Some(scale_rate(r, f));
            limits.message_rate.from = automation(f);
        }
        Effective {
            limits,
            suspended_until: entry.feedback.suspended_until(now),
            changes,
        }
    }

    /// Takes a message-rate token for `site` from `source` at `now` under
    /// `effective` limits, or says how long to wait (a suspension counts).
    pub fn take_message(
        &self,
        site: &SiteKey,
        source: Option<&str>,
        effective: &Effective,
        now: Instant,
    ) -> Result<(), Duration> {
        self.take(
            site,
            source,
            effective,
            now,
            |s| &mut s.messages,
            effective.limits.message_rate.value,
        )
    }

    /// Takes a connection-rate token, as [`Shaper::take_message`].
    pub fn take_connection(
        &self,
        site: &SiteKey,
        source: Option<&str>,
        effective: &Effective,
        now: Instant,
    ) -> Result<(), Duration> {
        self.take(
            site,
            source,
            effective,
            now,
            |s| &mut s.connections,
            effective.limits.connection_rate.value,
        )
    }

    fn take(
        &self,
        site: &SiteKey,
        source: Option<&str>,
        effective: &Effective,
        now: Instant,
        bucket: impl Fn(&mut PathState) -> &mut Option<(Bucket, Rate)>,
        rate: Option<Rate>,
    ) -> Result<(), Duration> {
        if let Some(until) = effective.suspended_until.filter(|&u| u > now) {
            return Err(until - now);
        }
        let Some(rate) = rate else { return Ok(()) };
        let mut state = self.state();
        let entry = state
            .entry(Shaper::path(site, source))
            .or_insert_with(|| PathState::new(now));
        entry.last_used = now;
        let slot = bucket(entry);
        let (b, r) = slot.get_or_insert_with(|| (Bucket::full(rate, now), rate));
        *r = rate;
        b.take(rate, now)
    }

    /// A connection slot on `site` from `source` for `shard` if fewer
    /// than `limit` (the effective `max_connections`) are open over all
    /// shards.
    pub fn acquire_connection(
        &self,
        site: &SiteKey,
        source: Option<&str>,
        limit: u32,
        shard: usize,
    ) -> Option<SiteSlot> {
        self.slots
            .try_acquire(&Shaper::path(site, source), limit, shard)
    }

    /// The warm-up verdict for one more message from `source` to `site`
    /// at Unix time `unix_now`; a source without a schedule always sends.
    pub fn warmup_check(
        &self,
        site: &SiteKey,
        source: &str,
        unix_now: i64,
        now: Instant,
    ) -> WarmupDecision {
        let Some(schedule) = self.table.source(source).and_then(|s| s.warmup.as_ref()) else {
            return WarmupDecision::Send;
        };
        let mut state = self.state();
        let entry = state
            .entry(Shaper::path(site, Some(source)))
            .or_insert_with(|| PathState::new(now));
        entry.last_used = now;
        entry.warmup.check(schedule, unix_now)
    }

    /// Counts one message sent from `source` to `site` against its
    /// warm-up cap (no-op without a schedule).
    pub fn warmup_record(&self, site: &SiteKey, source: &str, unix_now: i64, now: Instant) {
        if self
            .table
            .source(source)
            .and_then(|s| s.warmup.as_ref())
            .is_none()
        {
            return;
        }
        let mut state = self.state();
        let entry = state
            .entry(Shaper::path(site, Some(source)))
            .or_insert_with(|| PathState::new(now));
        entry.last_used = now;
        entry.warmup.record(unix_now);
    }

    /// The source for a message: its pool (see
    /// [`ShapingTable::pool_for`]), then the pool's next member by smooth
    /// weighted round-robin. `None` when no pool applies.
    pub fn pick_source(&self, facts: &MessageFacts<'_>) -> Option<&Source> {
        let pool_index = self.table.pool_for(facts)?;
        let pool = self.table.pools().get(pool_index)?;
        let member = {
            let mut pickers = self.pickers.lock().unwrap_or_else(|p| p.into_inner());
            pickers.get_mut(pool_index)?.pick()?
        };
        self.table.sources().get(*pool.members.get(member)?)
    }

    /// Suspends `site` for every source until `until` (`queue suspend`), or
    /// lifts its suspension (`None`: `queue resume`). Returns how many
    /// (site, source) paths it changed.
    pub fn set_suspended(&self, site: &SiteKey, until: Option<Instant>, now: Instant) -> usize {
        let mut state = self.state();
        state
            .entry(Shaper::path(site, None))
            .or_insert_with(|| PathState::new(now));
        let mut changed = 0;
        for (path, s) in state.iter_mut().filter(|(p, _)| &p.site == site) {
            let _ = path;
            s.feedback.set_suspended(until);
            s.last_used = now;
            changed += 1;
        }
        changed
    }

    /// Every site (and source) with state or open connections: what
    /// automation holds at `now`, sorted by site and source. Reads only:
    /// restore steps that are due are shown taken but left for
    /// [`Shaper::effective`] to take (and log).
    pub fn site_states(&self, now: Instant) -> Vec<SiteState> {
        let open: HashMap<PathName, u32> = self.slots.snapshot().into_iter().collect();
        let feedback: HashMap<PathName, SiteFeedback> = self
            .state()
            .iter()
            .map(|(p, s)| (p.clone(), s.feedback.clone()))
            .collect();
        let mut paths: Vec<&PathName> = open.keys().chain(feedback.keys()).collect();
        paths.sort_by(|a, b| (a.site.as_str(), &a.source).cmp(&(b.site.as_str(), &b.source)));
        paths.dedup();
        paths
            .into_iter()
            .map(|path| {
                let source = path.source.as_deref();
                let configured = self.configured(&path.site, source);
                let mut f = feedback.get(path).cloned().unwrap_or_default();
                // A copy moved to now: what `effective` would find.
                let _ = f.advance(path, configured, now);
                let connection_factor = f.factor(Knob::Connections);
                SiteState {
                    site: path.site.clone(),
                    source: path.source.clone(),
                    connections: open.get(path).copied().unwrap_or(0),
                    max_connections: if connection_factor < 1.0 {
                        scale(configured.max_connections, connection_factor)
                    } else {
                        configured.max_connections
                    },
                    suspended_for: f.suspended_until(now).map(|t| t - now),
                    connection_factor,
                    message_rate_factor: f.factor(Knob::MessageRate),
                    next_change_in: f.next_change().map(|t| t.saturating_duration_since(now)),
                }
            })
            .collect()
    }

    /// Drops per-site state that holds nothing (no automation in force,
    /// buckets full again, no warm-up count for today) and was not used
    /// for `idle`. Returns how many entries were dropped.
    pub fn evict_idle(&self, now: Instant, unix_now: i64, idle: Duration) -> usize {
        let mut state = self.state();
        let before = state.len();
        state.retain(|_, s| !s.evictable(now, unix_now, idle));
        before - state.len()
    }

    /// Entries of per-site state held now.
    pub fn len(&self) -> usize {
        self.state().len()
    }

    /// True when no per-site state is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! The queue manager's side of traffic shaping (docs/SHAPING.md): each
//! destination learns its *site* (its domain's MX hosts rolled up by the
//! shaping rules) before its first connection, and from then on the site's
//! effective limits decide how many connections it may open (over all
//! shards), how fast it may send and open connections, how many recipients
//! a transaction carries and how many transactions a connection. Replies
//! feed the automation rules; a suspended site starts no worker, so its
//! mail waits without an attempt being counted.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::site_tls::with_site_tls;
use super::DestKey;
use super::{Dest, Job, Qmgr, State};
use crate::deliver::RcptResult;
use crate::obs::metrics::OpenConnection;
use crate::proto::Reply;
use crate::sched::slots::SlotGuard;
use crate::shape::slots::SiteSlot;
use crate::shape::{Effective, SiteKey, WarmupDecision};

/// How long a destination's merged limits are reused.
const LIMITS_FRESH: Duration = Duration::from_millis(500);

/// A connection slot: per next hop without shaping, per site with it.
/// Held as long as its connection (or the attempt to open it); dropping
/// it frees the slot and takes the connection out of its site's gauge.
pub(super) struct ConnSlot {
    _slot: SlotKind,
    /// The open connection in its site's metrics, once it is open.
    _open: Option<OpenConnection>,
}

/// Which count a [`ConnSlot`] holds a place in.
// The slots are held only for their Drop, which frees them.
#[allow(dead_code)]
enum SlotKind {
    /// Counted per next hop ([`crate::sched::slots::DestinationSlots`]).
    Hop(SlotGuard),
    /// Counted per site and source (the shaper's).
    Site(SiteSlot),
}

impl ConnSlot {
    /// The connection on this slot is open: counted until the slot drops.
    pub(super) fn opened(&mut self, open: OpenConnection) {
        self._open = Some(open);
    }

    /// True when another shard was just refused a slot of this site: an
    /// idle connection on this slot should close rather than wait in the
    /// cache, so that shard gets it.
    pub(super) fn is_wanted(&self) -> bool {
        match &self._slot {
            SlotKind::Site(s) => s.is_wanted(),
            SlotKind::Hop(_) => false,
        }
    }
}

/// What a worker or `kick` needs of the site's limits right now.
pub(super) struct SiteLimits {
    /// The site.
    pub(super) site: SiteKey,
    /// The limits in force.
    pub(super) effective: Effective,
}

impl SiteLimits {
    /// Most connections over all shards.
    pub(super) fn max_connections(&self) -> usize {
        self.effective.limits.max_connections.value.max(1) as usize
    }
}

impl State {
    /// The site's limits for `hop` now (logging what automation changed
    /// on the way); `None` without shaping or before the site is known.
    ///
    /// Merging the rules costs allocations, so the answer is kept for
    /// [`LIMITS_FRESH`] per destination (an automation action on this
    /// shard drops it at once; other shards and `queue suspend` see a
    /// change within that time).
    pub(super) fn site_limits(&self, hop: &DestKey) -> Option<Rc<SiteLimits>> {
        let shaper = self.cfg.shaper.as_ref()?;
        let d = self.dests.get(hop)?;
        let site = d.site.clone()?;
        let now = Instant::now();
        if let Some((at, l)) = &*d.limits.borrow() {
            if now.saturating_duration_since(*at) < LIMITS_FRESH {
                return Some(Rc::clone(l));
            }
        }
        let effective = shaper.effective(&site, d.domain.as_deref(), hop.source.as_deref(), now);
        for change in &effective.changes {
            crate::info_line!(target: "qmgr", "{change}");
        }
        if !effective.changes.is_empty() {
            super::metrics::count_automation(self.site_counters(hop).as_ref(), &effective.changes);
        }
        let l = Rc::new(SiteLimits { site, effective });
        *d.limits.borrow_mut() = Some((now, Rc::clone(&l)));
        Some(l)
    }

    /// Forgets the cached limits of every destination of `site`.
    fn limits_changed(&self, site: &SiteKey) {
        for d in self.dests.values() {
            if d.site.as_ref() == Some(site) {
                *d.limits.borrow_mut() = None;
            }
        }
    }
}

impl Qmgr {
    /// A connection slot for `hop` under `limit` connections: the site's
    /// (over all shards) once shaping knows it, else the next hop's.
    pub(super) fn acquire_slot(
        &self,
        hop: &DestKey,
        limits: Option<&Rc<SiteLimits>>,
    ) -> Option<ConnSlot> {
        let st = self.state.borrow();
        match (st.cfg.shaper.as_ref(), limits) {
            (Some(shaper), Some(l)) => shaper
                .acquire_connection(
                    &l.site,
                    hop.source.as_deref(),
                    l.max_connections() as u32,
                    st.cfg.shard,
                )
                .map(SlotKind::Site),
            _ => st
                .slots
                .try_acquire(&hop.hop, st.cfg.concurrency_limit)
                .map(SlotKind::Hop),
        }
        .map(|slot| ConnSlot {
            _slot: slot,
            _open: None,
        })
    }

    /// True when `hop` still needs its site (shaping is on and its MX
    /// lookup has not finished); starts that lookup once.
    pub(super) fn site_pending(&self, hop: &DestKey) -> bool {
        let start = {
            let mut st = self.state.borrow_mut();
            if st.cfg.shaper.is_none() {
                return false;
            }
            let Some(d) = st.dests.get_mut(hop) else {
                return false;
            };
            if d.site.is_some() {
                return false;
            }
            !std::mem::replace(&mut d.resolving, true)
        };
        if start {
            let me = self.clone();
            let hop = hop.clone();
            tokio::task::spawn_local(async move { me.resolve_site(hop).await });
        }
        true
    }

    /// Names `hop`'s site from its MX hosts (a relay host or a literal is
    /// its own site), takes the site's TLS level (`site_tls.rs`), then
    /// starts its workers.
    async fn resolve_site(self, hop: DestKey) {
        let (connector, shaper) = {
            let st = self.state.borrow();
            (Rc::clone(&st.connector), st.cfg.shaper.clone())
        };
        let Some(shaper) = shaper else { return };
        let names = if hop.hop.mx_lookup {
            // The resolver caches the answer for the connection that follows.
            connector.mx_names(&hop.hop.host).await.unwrap_or_default()
        } else {
            // A relay host or a route's next hop is its own MX: a hop to
            // `*.google.com` belongs to the google site.
            vec![hop.hop.host.trim_matches(['[', ']']).to_string()]
        };
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let site = shaper.site_for(&hop.hop.host, &refs);
        let hosts = super::dead_site::hosts_fingerprint(&names, hop.hop.port);
        tracing::debug!(target: "qmgr", "destination {hop}: site {} ({:?})", site.key.as_str(), site.origin);
        if let Some(d) = self.state.borrow_mut().dests.get_mut(&hop) {
            // The site's `tls` unless the hop has a level of its own.
            if let Some(policy) = with_site_tls(
                &d.policy,
                &shaper,
                &site.key,
                d.domain.as_deref(),
                hop.source.as_deref(),
            ) {
                tracing::debug!(target: "qmgr", "destination {hop}: TLS level {} from site {}", policy.tls, site.key.as_str());
                d.policy = Rc::new(policy);
            }
            d.site = Some(site.key);
            d.hosts = Some(hosts);
            d.resolving = false;
            // Counted under the site from now on.
            *d.counters.borrow_mut() = None;
        }
        self.join_dead_site(&hop);
        self.kick(&hop);
    }

    /// How long the site's message rate (or a suspension) makes the next
    /// transaction to `hop` wait; takes a token when none.
    pub(super) fn site_message_wait(&self, hop: &DestKey) -> Option<Duration> {
        let st = self.state.borrow();
        let shaper = st.cfg.shaper.as_ref()?;
        let l = st.site_limits(hop)?;
        shaper
            .take_message(&l.site, hop.source.as_deref(), &l.effective, Instant::now())
            .err()
    }

    /// When the destination's source has sent its warm-up cap to the site
    /// today: the Unix time the cap grows again (mail waits, it is not a
    /// failure). `None` when it may send.
    pub(super) fn warmup_wait(&self, hop: &DestKey) -> Option<i64> {
        let st = self.state.borrow();
        let shaper = st.cfg.shaper.as_ref()?;
        let source = hop.source.as_deref()?;
        let site = st.dests.get(hop)?.site.clone()?;
        match shaper.warmup_check(
            &site,
            source,
            chrono::Utc::now().timestamp(),
            Instant::now(),
        ) {
            WarmupDecision::Send => None,
            WarmupDecision::WaitUntil(t) => Some(t),
        }
    }

    /// Counts `sent` messages to the destination's site against its
    /// source's warm-up cap.
    pub(super) fn warmup_record(&self, hop: &DestKey, sent: usize) {
        let st = self.state.borrow();
        let (Some(shaper), Some(source)) = (st.cfg.shaper.as_ref(), hop.source.as_deref()) else {
            return;
        };
        let Some(site) = st.dests.get(hop).and_then(|d| d.site.clone()) else {
            return;
        };
        let unix = chrono::Utc::now().timestamp();
        for _ in 0..sent {
            shaper.warmup_record(&site, source, unix, Instant::now());
        }
    }

    /// How long the site's connection rate makes a new connection to `hop`
    /// wait; takes a token when none.
    pub(super) fn site_connection_wait(&self, hop: &DestKey) -> Option<Duration> {
        let st = self.state.borrow();
        let shaper = st.cfg.shaper.as_ref()?;
        let l = st.site_limits(hop)?;
        shaper
            .take_connection(&l.site, hop.source.as_deref(), &l.effective, Instant::now())
            .err()
    }

    /// Cuts `job` to the site's recipients per transaction, leaving the rest
    /// at the head of `hop`'s queue as a job of its own.
    pub(super) fn fit_recipients(&self, hop: &DestKey, mut job: Job) -> Job {
        let mut st = self.state.borrow_mut();
        let Some(max) = st
            .site_limits(hop)
            .map(|l| l.effective.limits.max_recipients.value.max(1) as usize)
        else {
            return job;
        };
        if job.rcpts.len() <= max {
            return job;
        }
        let rest = Job {
            id: job.id,
            rcpts: job.rcpts.split_off(max),
        };
        if let Some(m) = st.msgs.get_mut(&job.id) {
            m.outstanding += 1;
        }
        if let Some(d) = st.dests.get_mut(hop) {
            d.jobs.push_front(rest);
        }
        job
    }

    /// The site's most transactions per connection (0: no limit of its own).
    pub(super) fn site_deliveries_per_connection(&self, hop: &DestKey) -> u32 {
        self.state.borrow().site_limits(hop).map_or(0, |l| {
            l.effective.limits.max_deliveries_per_connection.value
        })
    }

    /// Feeds the first server reply among `results` (or of a refused
    /// connection) to the site's automation rules, logging what they do.
    pub(super) fn site_feedback(&self, hop: &DestKey, results: &[RcptResult]) {
        let reply: Option<&Reply> = results
            .iter()
            .filter(|r| !r.is_sent())
            .find_map(RcptResult::reply);
        let Some(reply) = reply else { return };
        let st = self.state.borrow();
        let (Some(shaper), Some(site)) = (
            st.cfg.shaper.as_ref(),
            st.dests.get(hop).and_then(|d| d.site.clone()),
        ) else {
            return;
        };
        let actions = shaper.on_reply(&site, hop.source.as_deref(), reply, Instant::now());
        for action in &actions {
            crate::info_line!(target: "qmgr", "{action}");
        }
        if !actions.is_empty() {
            super::metrics::count_automation(st.site_counters(hop).as_ref(), &actions);
            st.limits_changed(&site);
        }
    }
}

/// Forgets destinations with nothing queued, running or cached that were
/// not used for `idle`, and the shaper's idle per-site state: memory
/// follows the destinations mail goes to now, not every one ever seen.
pub(super) fn evict_idle(st: &mut State, idle: Duration) -> usize {
    let now = Instant::now();
    let before = st.dests.len();
    st.dests.retain(|_, d: &mut Dest| {
        !(d.jobs.is_empty()
            && d.active == 0
            && !d.resolving
            && d.dead_until.is_none()
            && now.saturating_duration_since(d.last_used) >= idle)
    });
    st.forget_dead_sites(false);
    st.prune_waiting();
    if let Some(shaper) = &st.cfg.shaper {
        let unix = chrono::Utc::now().timestamp();
        shaper.evict_idle(now, unix, idle);
    }
    before - st.dests.len()
}

//! The connection cache (Postfix's smtp_reuse.c): idle connections kept
//! per *pool* — a shaping site and sending source, or the next hop itself
//! before (or without) a site — and taken again by the next worker.
//!
//! A worker first takes a connection its own destination opened; failing
//! that, one another destination of the same site opened, if the
//! connector admits it for this destination (connected to one of its MX
//! hosts, TLS as safe as its level asks: `deliver::reuse`). So the
//! thousand Google Workspace domains of a newsletter share Google's
//! connections instead of opening one set each.
//!
//! Idle connections are closed with QUIT when they idle longer than
//! `smtp_connection_cache_time_limit`, or at once when another shard was
//! refused a connection slot of their site (a cached connection must not
//! keep a shard with mail waiting below the site's limit).

use std::sync::Arc;
use std::time::Instant;

use super::shaping::{ConnSlot, SiteLimits};
use super::DestKey;
use super::{Qmgr, State};
use crate::deliver::{HopPolicy, Session};
use crate::shape::SiteKey;

/// Most connections of other destinations checked for one worker before it
/// opens its own: each check costs cached DNS and MTA-STS lookups.
const MAX_FOREIGN_CHECKS: usize = 4;

/// Where an idle connection waits for its next use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum PoolKey {
    /// Every destination of a site, sent from one source.
    Site(SiteKey, Option<Arc<str>>),
    /// One destination (no site known).
    Hop(DestKey),
}

/// A cached connection.
pub(super) struct IdleConn {
    session: Session,
    slot: ConnSlot,
    since: Instant,
    /// The destination it was opened for.
    from: DestKey,
    /// That destination's policy authenticated with SASL.
    sasl: bool,
}

/// True when a destination waiting for a connection still needs one: jobs
/// queued, not dead, below its window.
fn wants_connection(d: &super::Dest) -> bool {
    !d.jobs.is_empty() && d.dead_until.is_none() && (d.active as f64) < d.window.floor().max(1.0)
}

impl State {
    /// Remembers that `hop` has mail but was refused a connection slot:
    /// the next connection of its pool to come free on this shard is
    /// offered to it ([`Qmgr::hand_over`]).
    pub(super) fn note_waiting(&mut self, hop: &DestKey) {
        // Refused again and again while the site is full (every message
        // planned for it): look before cloning the key.
        if !self.waiting_set.contains(hop) {
            self.waiting_set.insert(hop.clone());
            let key = self.pool_key(hop);
            self.waiting.entry(key).or_default().push_back(hop.clone());
        }
    }

    /// Forgets waiting destinations that no longer exist (evicted), so the
    /// waiting lists follow the destinations there are.
    pub(super) fn prune_waiting(&mut self) {
        let dests = &self.dests;
        self.waiting.retain(|_, queue| {
            queue.retain(|hop| dests.contains_key(hop));
            !queue.is_empty()
        });
        self.waiting_set.retain(|hop| dests.contains_key(hop));
    }

    /// The next destination of pool `key` still waiting for a connection
    /// (jobs queued, not dead, below its window).
    fn next_waiting(&mut self, key: &PoolKey) -> Option<DestKey> {
        loop {
            let queue = self.waiting.get_mut(key)?;
            let Some(hop) = queue.pop_front() else {
                self.waiting.remove(key);
                return None;
            };
            self.waiting_set.remove(&hop);
            if self.dests.get(&hop).is_some_and(wants_connection) {
                return Some(hop);
            }
        }
    }

    /// Idle connections a worker for `hop` might take: how many `hop`
    /// opened itself, and whether other destinations of its site left any.
    pub(super) fn idle_counts(&self, hop: &DestKey) -> (usize, bool) {
        self.idle
            .get(&self.pool_key(hop))
            .map_or((0, false), |pool| {
                let own = pool.iter().filter(|c| c.from == *hop).count();
                (own, pool.len() > own)
            })
    }

    /// The pool `hop`'s connections wait in.
    fn pool_key(&self, hop: &DestKey) -> PoolKey {
        match self.dests.get(hop).and_then(|d| d.site.clone()) {
            Some(site) => PoolKey::Site(site, hop.source.clone()),
            None => PoolKey::Hop(hop.clone()),
        }
    }
}

impl Qmgr {
    /// Closes the idle connections that idled too long (every one with
    /// `all`) with QUIT, and those whose slot is wanted: by another shard
    /// (refused a slot of their site), or by a destination of their pool
    /// on this shard that waits for a slot and could not take them (other
    /// MX hosts, a stricter TLS level). Each QUIT runs as a task of its
    /// own: the timer that calls this must not wait for a slow server's
    /// `221` (up to 5 s per connection) while retries fall due. With `all`
    /// (stopping) it waits until every one is closed.
    pub async fn close_idle(&self, all: bool) {
        let now = Instant::now();
        let mut closing = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            let limit = st.cfg.delivery.idle_time_limit;
            for (key, pool) in st.idle.iter_mut() {
                let waiting: Vec<&DestKey> = st.waiting.get(key).map_or(Vec::new(), |q| {
                    q.iter()
                        .filter(|h| st.dests.get(*h).is_some_and(wants_connection))
                        .collect()
                });
                let (old, keep): (Vec<_>, Vec<_>) = pool.drain(..).partition(|c| {
                    all || now.duration_since(c.since) >= limit
                        || c.slot.is_wanted()
                        || waiting.iter().any(|w| **w != c.from)
                });
                *pool = keep;
                closing.extend(old.into_iter().map(|c| (c.session, c.slot)));
            }
            st.idle.retain(|_, pool| !pool.is_empty());
        }
        let cfg = self.state.borrow().cfg.clone();
        let quits: Vec<_> = closing
            .into_iter()
            .map(|(s, guard)| {
                let cfg = std::rc::Rc::clone(&cfg);
                tokio::task::spawn_local(async move {
                    s.quit(&cfg.delivery).await;
                    // The slot is free once the connection is closed.
                    drop(guard);
                })
            })
            .collect();
        if all {
            for quit in quits {
                let _ = quit.await;
            }
        }
    }

    /// Puts `hop`'s open connection into its pool's cache.
    pub(super) fn park(&self, hop: &DestKey, session: Session, slot: ConnSlot) {
        let mut st = self.state.borrow_mut();
        let sasl = st.dests.get(hop).is_some_and(|d| d.policy.sasl.is_some());
        let key = st.pool_key(hop);
        st.idle.entry(key).or_default().push(IdleConn {
            session,
            slot,
            since: Instant::now(),
            from: hop.clone(),
            sasl,
        });
    }

    /// A cached connection for `hop` (under `policy`): the newest one it
    /// opened itself, else the newest of its site's that the connector
    /// admits for it. Connections idle too long are dropped on the way.
    pub(super) async fn take_idle(
        &self,
        hop: &DestKey,
        policy: Option<&HopPolicy>,
    ) -> Option<(Session, ConnSlot)> {
        let key = {
            let mut st = self.state.borrow_mut();
            let limit = st.cfg.delivery.idle_time_limit;
            let key = st.pool_key(hop);
            let pool = st.idle.get_mut(&key)?;
            // Too old: let them drop (closing a socket needs no reply).
            pool.retain(|c| c.since.elapsed() < limit);
            if let Some(at) = pool.iter().rposition(|c| c.from == *hop) {
                let c = pool.remove(at);
                return Some((c.session, c.slot));
            }
            key
        };
        let policy = policy?;
        if matches!(key, PoolKey::Hop(_)) {
            return None;
        }
        let connector = std::rc::Rc::clone(&self.state.borrow().connector);
        let mut refused = Vec::new();
        let mut found = None;
        for _ in 0..MAX_FOREIGN_CHECKS {
            let candidate = {
                let mut st = self.state.borrow_mut();
                st.idle.get_mut(&key).and_then(|pool| pool.pop())
            };
            let Some(c) = candidate else { break };
            if connector.admits(&c.session, c.sasl, &hop.hop, policy).await {
                tracing::debug!(
                    target: "qmgr",
                    "destination {hop}: reusing the connection to {} opened for {}",
                    c.session.peer(),
                    c.from
                );
                found = Some((c.session, c.slot));
                break;
            }
            refused.push(c);
        }
        if !refused.is_empty() {
            // Back for the destinations they suit, oldest first.
            let mut st = self.state.borrow_mut();
            let pool = st.idle.entry(key).or_default();
            refused.reverse();
            pool.splice(0..0, refused);
        }
        found
    }
}

impl Qmgr {
    /// Offers the connection `hop` has finished with to the destinations
    /// of its pool that wait on this shard for a connection slot: the
    /// first one the connector admits gets a worker over it. Gives the
    /// connection back when none takes it.
    pub(super) async fn hand_over(
        &self,
        hop: &DestKey,
        conn: (Session, ConnSlot),
    ) -> Option<(Session, ConnSlot)> {
        let (key, sasl, connector) = {
            let st = self.state.borrow();
            let key = st.pool_key(hop);
            if matches!(key, PoolKey::Hop(_)) || st.stopping {
                return Some(conn);
            }
            let sasl = st.dests.get(hop).is_some_and(|d| d.policy.sasl.is_some());
            (key, sasl, std::rc::Rc::clone(&st.connector))
        };
        let mut refused = Vec::new();
        let mut conn = Some(conn);
        for _ in 0..MAX_FOREIGN_CHECKS {
            let Some(next) = self.state.borrow_mut().next_waiting(&key) else {
                break;
            };
            let policy = self
                .state
                .borrow()
                .dests
                .get(&next)
                .map(|d| std::rc::Rc::clone(&d.policy));
            let Some(policy) = policy else { continue };
            let Some((session, slot)) = conn.take() else {
                break;
            };
            if !connector.admits(&session, sasl, &next.hop, &policy).await {
                conn = Some((session, slot));
                refused.push(next);
                continue;
            }
            let started = {
                let mut st = self.state.borrow_mut();
                let stopping = st.stopping;
                match st.dests.get_mut(&next) {
                    Some(d) if !d.jobs.is_empty() && !stopping => {
                        d.active += 1;
                        // Counted until it takes its job, so a kick meanwhile
                        // does not start another worker for the same job.
                        Some(super::worker::JobWait::counted(&d.job_waits))
                    }
                    _ => None,
                }
            };
            let Some(wait) = started else {
                conn = Some((session, slot));
                continue;
            };
            tracing::debug!(
                target: "qmgr",
                "destination {next}: taking over the connection to {} opened for {hop}",
                session.peer()
            );
            let me = self.clone();
            tokio::task::spawn_local(async move {
                me.worker(next, None, Some((session, slot)), wait).await
            });
            break;
        }
        let mut st = self.state.borrow_mut();
        for hop in refused {
            st.note_waiting(&hop);
        }
        conn
    }

    /// Starts a worker for `hop` over a cached connection of another
    /// destination of its site if the connector admits one, else over a
    /// new connection slot under `limits`; with neither, `hop` waits for a
    /// slot. The caller counted the worker in `active` already; this gives
    /// it back when it starts none.
    pub(super) fn adopt_idle(
        &self,
        hop: &DestKey,
        limits: Option<std::rc::Rc<SiteLimits>>,
        wait: super::worker::JobWait,
    ) {
        let me = self.clone();
        let hop = hop.clone();
        tokio::task::spawn_local(async move {
            let (policy, cfg) = {
                let st = me.state.borrow();
                let policy = st.dests.get(&hop).map(|d| std::rc::Rc::clone(&d.policy));
                (policy, st.cfg.clone())
            };
            let mut conn = None;
            if let Some(policy) = policy {
                while let Some((mut s, slot)) = me.take_idle(&hop, Some(&policy)).await {
                    if s.probe(&cfg.delivery).await.is_ok() {
                        conn = Some((s, slot));
                        break;
                    }
                    s.abort().await;
                }
            }
            if let Some(conn) = conn {
                return me.worker(hop, None, Some(conn), wait).await;
            }
            match me.acquire_slot(&hop, limits.as_ref()) {
                Some(slot) => me.worker(hop, Some(slot), None, wait).await,
                None => {
                    let mut st = me.state.borrow_mut();
                    if let Some(d) = st.dests.get_mut(&hop) {
                        d.active -= 1;
                    }
                    st.note_waiting(&hop);
                }
            }
        });
    }
}

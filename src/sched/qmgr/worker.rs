//! Delivery workers: how many run per destination, and what one does
//! with its connection (take jobs, wait for rate tokens, open or reuse a
//! connection, send a chain of transactions over it).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chain::{Relay, Sent};
use super::shaping::ConnSlot;
use super::DestKey;
use super::{Job, Qmgr, QmgrConfig, LINGER};
use crate::config::TransactionChaining;
use crate::deliver::Session;
use crate::model::now_micros;

impl Qmgr {
    /// Starts delivery workers for `hop` up to its window, as long as a
    /// cached connection or a free connection slot is there for each.
    pub(super) fn kick(&self, hop: &DestKey) {
        if self.site_pending(hop) {
            // Started again once the site is known.
            return;
        }
        // Another destination found the site's hosts dead meanwhile.
        self.join_dead_site(hop);
        loop {
            let limits = self.state.borrow().site_limits(hop);
            if limits
                .as_ref()
                .is_some_and(|l| l.effective.suspended_until.is_some())
            {
                // Suspended by automation: the mail waits, no attempt is
                // counted; the timer looks again.
                return;
            }
            if self.warmup_wait(hop).is_some() {
                // The source's warm-up cap for the site is used up today:
                // the mail waits (the timer looks again).
                return;
            }
            // Room for one more worker: with a cached connection, or a new
            // connection slot.
            let (room, foreign, wait) = {
                let mut st = self.state.borrow_mut();
                let limit = limits
                    .as_ref()
                    .map_or(st.cfg.concurrency_limit, |l| l.max_connections());
                let stopping = st.stopping;
                let (own, foreign) = st.idle_counts(hop);
                let Some(d) = st.dests.get_mut(hop) else {
                    return;
                };
                let cap = (d.window.floor() as usize).clamp(1, limit);
                if stopping
                    || d.jobs.len() <= d.job_waits.get()
                    || d.active >= cap
                    || d.dead_until.is_some()
                {
                    // No job, or a worker without one (lingering on its
                    // connection, or just started) for each job.
                    return;
                }
                d.active += 1;
                (own >= d.active, foreign, JobWait::counted(&d.job_waits))
            };
            if !room && foreign {
                // A connection another domain of the site opened is idle:
                // take it over if it suits, else open one.
                self.adopt_idle(hop, limits, wait);
                return;
            }
            let start = if room {
                Some(None)
            } else {
                match self.acquire_slot(hop, limits.as_ref()) {
                    Some(slot) => Some(Some(slot)),
                    None => {
                        let mut st = self.state.borrow_mut();
                        st.note_waiting(hop);
                        if let Some(d) = st.dests.get_mut(hop) {
                            d.active -= 1;
                            tracing::debug!(
                                target: "qmgr",
                                "destination {hop}: no free connection slot ({} workers, {} jobs waiting)",
                                d.active,
                                d.jobs.len()
                            );
                        }
                        None
                    }
                }
            };
            let Some(guard) = start else { return };
            let me = self.clone();
            let hop = hop.clone();
            tokio::task::spawn_local(async move { me.worker(hop, guard, None, wait).await });
        }
    }

    /// One connection's worth of work for `hop`: takes jobs until none is
    /// left, reusing the connection. `spare` is a connection slot taken for
    /// it by [`Qmgr::kick`] (none when a cached connection was there);
    /// `first` an open connection handed to it (`reuse.rs`); `wait` its
    /// count among the destination's workers without a job, which its
    /// starter made.
    pub(super) async fn worker(
        self,
        hop: DestKey,
        mut spare: Option<ConnSlot>,
        first: Option<(Session, ConnSlot)>,
        mut wait: JobWait,
    ) {
        let cfg = self.state.borrow().cfg.clone();
        let mut session: Option<(Session, ConnSlot)> = first;
        // A job to send again on a new connection because the reused one
        // turned out to be closing (421 at MAIL FROM): not the message's fault.
        let mut retry_fresh: Option<Job> = None;
        loop {
            // With an open connection, wait up to LINGER for the next job
            // (woken once per job added) before parking it.
            let mut linger_until: Option<tokio::time::Instant> = None;
            let job = loop {
                if let Some(job) = retry_fresh.take() {
                    break Some(job);
                }
                let (job, ready) = {
                    let mut st = self.state.borrow_mut();
                    if st.stopping {
                        break None;
                    }
                    match st.dests.get_mut(&hop) {
                        Some(d) => (d.jobs.pop_front(), Rc::clone(&d.ready)),
                        None => break None,
                    }
                };
                if job.is_some() || session.is_none() {
                    break job;
                }
                let until =
                    *linger_until.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                if tokio::time::Instant::now() >= until {
                    break None;
                }
                wait.set(true);
                let _ = tokio::time::timeout_at(until, ready.notified()).await;
            };
            wait.set(false);
            let Some(job) = job else { break };
            if self.warmup_wait(&hop).is_some() {
                if let Some(d) = self.state.borrow_mut().dests.get_mut(&hop) {
                    d.jobs.push_front(job);
                }
                break;
            }
            let job = self.fit_recipients(&hop, job);
            let (policy, slots) = {
                let st = self.state.borrow();
                let policy = st.dests.get(&hop).map(|d| Rc::clone(&d.policy));
                (policy, Arc::clone(&st.slots))
            };
            // The destination's rate limit, then the campaign's own
            // (`campaign send --rate`).
            let rate = policy.as_ref().and_then(|p| p.rate);
            let ready = self
                .wait_for_token(&mut session, &cfg, || match rate {
                    Some(rate) => slots.rates.take(&hop.hop, rate).err(),
                    None => None,
                })
                .await
                && self
                    .wait_for_token(&mut session, &cfg, || self.site_message_wait(&hop))
                    .await
                && self
                    .wait_for_token(&mut session, &cfg, || {
                        self.state.borrow_mut().campaign_rate_wait(&job)
                    })
                    .await;
            if !ready {
                if let Some(d) = self.state.borrow_mut().dests.get_mut(&hop) {
                    d.jobs.push_front(job);
                }
                break;
            }
            // A cached connection may have been closed by the server while
            // idle: probe it with RSET (as Postfix does) before trusting it.
            while session.is_none() {
                let Some((mut s, g)) = self.take_idle(&hop, policy.as_deref()).await else {
                    break;
                };
                if s.probe(&cfg.delivery).await.is_ok() {
                    session = Some((s, g));
                } else {
                    s.abort().await;
                }
            }
            let started = now_micros();
            let mut setup = Duration::ZERO;
            if session.is_none() {
                let guard = spare.take().or_else(|| {
                    let limits = self.state.borrow().site_limits(&hop);
                    self.acquire_slot(&hop, limits.as_ref())
                });
                let Some(guard) = guard else {
                    // Every slot is taken (by other shards): leave the job
                    // for later; the timer retries the destination.
                    let mut st = self.state.borrow_mut();
                    if let Some(d) = st.dests.get_mut(&hop) {
                        d.jobs.push_front(job);
                    }
                    st.note_waiting(&hop);
                    break;
                };
                // The site's connection rate.
                if !self
                    .wait_for_token(&mut session, &cfg, || self.site_connection_wait(&hop))
                    .await
                {
                    drop(guard);
                    if let Some(d) = self.state.borrow_mut().dests.get_mut(&hop) {
                        d.jobs.push_front(job);
                    }
                    break;
                }
                let t = Instant::now();
                let connector = Rc::clone(&self.state.borrow().connector);
                let policy = policy
                    .clone()
                    .unwrap_or_else(|| Rc::new(self.state.borrow().router.policy(&hop.hop)));
                match connector.open(&hop.hop, &policy, &cfg.delivery).await {
                    Ok(s) => {
                        setup = t.elapsed();
                        let mut guard = guard;
                        self.count_connection(&hop, &s, &mut guard);
                        session = Some((s, guard));
                        self.connected(&hop);
                    }
                    Err(e) => {
                        drop(guard);
                        self.count_connection_failure(&e);
                        self.destination_failed(&hop, job, &e, started);
                        break;
                    }
                }
            }
            let Some((mut s, guard)) = session.take() else {
                break;
            };
            let msg = self.state.borrow_mut().outgoing(&job);
            let Some(msg) = msg else {
                // Message gone (removed meanwhile): nothing to send.
                self.state.borrow_mut().job_done(job.id, &cfg);
                session = Some((s, guard));
                continue;
            };
            // The first job, then (with PIPELINING) every job that arrives
            // for this destination while the connection is busy, each
            // overlapping the previous one (see `Session::send_chain`).
            let relay = s.peer().to_string();
            // Transactions so far on this connection, this one included.
            let mut conn_use = s.transactions() + 1;
            let first = Sent {
                _in_flight: self.in_flight(&hop, &job),
                job,
                started,
                setup,
                at: Instant::now(),
                first: true,
                conn_use,
            };
            let mut broke = false;
            let chain = match cfg.delivery.chaining {
                TransactionChaining::Off => false,
                TransactionChaining::On => true,
                TransactionChaining::Auto => !slots.chain_refusals.refuses(&hop.hop),
            };
            // The relay information of the results: who, and whether the
            // RFC 3461 requests went on with the messages.
            let relay = Relay {
                name: relay,
                dsn_passed: s.passes_dsn(),
                site: self.site_name(&hop),
            };
            s.send_chain(
                (first, msg),
                &cfg.delivery,
                chain,
                || {
                    let next = self.next_chained(&hop, policy.as_deref(), conn_use + 1);
                    if next.is_some() {
                        conn_use += 1;
                    }
                    next
                },
                |sent, result| {
                    let ok = self.chain_done(&hop, sent, result, &relay, &mut retry_fresh);
                    broke |= !ok;
                },
            )
            .await;
            if let Some(refusal) = s.take_chain_refusal() {
                if cfg.delivery.chaining == TransactionChaining::Auto
                    && slots.chain_refusals.remember(&hop.hop)
                {
                    tracing::warn!(
                        target: "smtp",
                        "host {} refused a transaction pipelined after end of data \
                         ({refusal}) and accepted it unpipelined: no longer chaining \
                         transactions to {hop}",
                        relay.name
                    );
                }
            }
            let per_connection = self.site_deliveries_per_connection(&hop);
            let used_up = per_connection > 0 && s.transactions() >= per_connection;
            if retry_fresh.is_some() || broke || used_up || !s.reusable(&cfg.delivery) {
                if retry_fresh.is_some() || broke {
                    // The connection is in an unknown state (or closing).
                    s.abort().await;
                } else {
                    s.quit(&cfg.delivery).await;
                }
                drop(guard);
            } else {
                session = Some((s, guard));
            }
        }
        // A destination of the site waiting for a slot here gets the
        // connection first.
        let session = match session {
            Some(conn) => self.hand_over(&hop, conn).await,
            None => None,
        };
        if let Some((s, guard)) = session {
            if guard.is_wanted() {
                // Another shard waits for a slot of this site: close
                // rather than cache, and leave it the slot.
                tracing::debug!(target: "qmgr", "destination {hop}: closing a connection another shard wants");
                let cfg = Rc::clone(&cfg);
                tokio::task::spawn_local(async move {
                    s.quit(&cfg.delivery).await;
                    drop(guard);
                });
            } else {
                self.park(&hop, s, guard);
            }
        }
        let more = {
            let mut st = self.state.borrow_mut();
            match st.dests.get_mut(&hop) {
                Some(d) => {
                    d.active -= 1;
                    !d.jobs.is_empty()
                }
                None => false,
            }
        };
        if more {
            self.kick(&hop);
        }
    }

    /// Waits until `take` finds a token (it returns how long to wait while
    /// there is none); a connection that would idle longer than the cache
    /// time limit meanwhile is closed. False when the daemon is stopping.
    pub(super) async fn wait_for_token(
        &self,
        session: &mut Option<(Session, ConnSlot)>,
        cfg: &QmgrConfig,
        mut take: impl FnMut() -> Option<Duration>,
    ) -> bool {
        while let Some(wait) = take() {
            if wait > cfg.delivery.idle_time_limit {
                // Do not hold a connection idle for long.
                if let Some((s, guard)) = session.take() {
                    s.quit(&cfg.delivery).await;
                    drop(guard);
                }
            }
            tokio::time::sleep(wait).await;
            if self.state.borrow().stopping {
                return false;
            }
        }
        !self.state.borrow().stopping
    }

    /// Starts workers for `hop` once the current task yields (not from
    /// inside a chain's callback, which runs while state may be borrowed).
    pub(super) fn kick_later(&self, hop: &DestKey) {
        let me = self.clone();
        let hop = hop.clone();
        tokio::task::spawn_local(async move { me.kick(&hop) });
    }
}

/// A worker counted among its destination's workers without a job
/// (`Dest::job_waits`): while counted, a job added for the destination is
/// left to it rather than to a new worker. Uncounted when dropped.
pub(super) struct JobWait {
    count: Rc<Cell<usize>>,
    counted: bool,
}

impl JobWait {
    /// A worker about to start, counted at once (so the starter does not
    /// start another one for the same job).
    pub(super) fn counted(count: &Rc<Cell<usize>>) -> JobWait {
        count.set(count.get() + 1);
        JobWait {
            count: Rc::clone(count),
            counted: true,
        }
    }

    /// Counts the worker as waiting for a job, or not.
    fn set(&mut self, waiting: bool) {
        if waiting != self.counted {
            let n = self.count.get();
            self.count
                .set(if waiting { n + 1 } else { n.saturating_sub(1) });
            self.counted = waiting;
        }
    }
}

impl Drop for JobWait {
    fn drop(&mut self) {
        self.set(false);
    }
}

//! The queue manager of one shard: which message goes to which next hop,
//! over how many connections, and when deferred mail is tried again.
//!
//! Strategy, in the manner of Postfix's qmgr:
//!
//! - **Destinations.** Each live recipient is routed to a next hop; a
//!   message's recipients for one hop form jobs of at most
//!   `default_destination_recipient_limit` recipients (one SMTP transaction
//!   each). Every next hop has a FIFO of jobs.
//! - **Concurrency and slow start.** A destination may use at most its share
//!   of `default_destination_concurrency_limit` (the global limit divided
//!   over the shards, rounded up). It starts at its share of
//!   `initial_destination_concurrency`; each successful transaction adds
//!   1/window, each failed connection takes 1/window away (Postfix's
//!   positive and negative feedback).
//! - **Connection reuse.** A worker keeps its connection for the next job of
//!   the same destination, within the reuse count and time limits; idle
//!   connections are kept for `smtp_connection_cache_time_limit` and closed
//!   with QUIT after that.
//! - **Dead destinations.** A connection failure at a window of one marks the
//!   destination dead for `minimal_backoff_time`: its queued jobs are
//!   deferred at once with the same reason, and new ones are deferred
//!   without connecting, instead of retrying message by message.
//! - **Retry.** A message with deferred recipients is retried after
//!   `minimal_backoff_time * 2^(attempts-1)`, capped at
//!   `maximal_backoff_time`, with ±20 % jitter so retries do not arrive in
//!   lock step. Mail older than `maximal_queue_lifetime` is not retried: its
//!   live recipients are returned as expired.
//! - **Flush** (`sendmail -q`) makes every deferred message due now and
//!   forgets dead destinations.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::sync::Notify;

use super::campaigns::{suppress_hard_bounce, CampaignCache, CampaignSettings, Unsendable};
use super::notices::{failed_recipient, queue_notice, relayed_recipient, NoticeConfig};
use super::slots::{DestinationSlots, SlotGuard};
use crate::bounce::{FailedRecipient, NoticeKind};
use crate::config::{Config, TransactionChaining};
use crate::deliver::session::ChainResult;
use crate::deliver::{
    self, Connector, DeliverError, DeliveryConfig, HopPolicy, RcptResult, Router, Session,
};
use crate::model::{now_micros, BodyType, DsnParams, MessageFlags, Nexthop, QueueId, RcptStatus};
use crate::queue::campaign_state::CampaignState;
use crate::queue::Store;

/// Scheduling settings of one shard.
#[derive(Clone, Debug)]
pub struct QmgrConfig {
    /// The per-destination concurrency limit over all shards (enforced
    /// through shared [`DestinationSlots`]).
    pub concurrency_limit: usize,
    /// This shard's share of the initial concurrency.
    pub initial_concurrency: usize,
    /// Most recipients per transaction.
    pub recipient_limit: usize,
    /// Shortest retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Age at which mail expires.
    pub lifetime: Duration,
    /// Age at which null-sender mail (bounces) expires.
    pub bounce_lifetime: Duration,
    /// Age after which the sender of still-deferred mail is warned once;
    /// `None` never warns.
    pub delay_warning: Option<Duration>,
    /// Settings of the notices themselves.
    pub notices: NoticeConfig,
    /// Connection and protocol settings.
    pub delivery: DeliveryConfig,
    /// Rendering of campaign recipients (the token key, cleanup limits);
    /// `None` defers them.
    pub campaigns: Option<CampaignSettings>,
    /// This shard's Prometheus counters (the daemon's; none in tests).
    pub metrics: Option<crate::obs::metrics::ShardCounters>,
}

impl QmgrConfig {
    /// One shard's settings: global limits split over `shards`.
    pub fn from_config(c: &Config, shards: usize, delivery: DeliveryConfig) -> QmgrConfig {
        let share = |n: usize| n.div_ceil(shards.max(1)).max(1);
        QmgrConfig {
            concurrency_limit: share(c.default_destination_concurrency_limit),
            initial_concurrency: share(c.initial_destination_concurrency)
                .min(share(c.default_destination_concurrency_limit)),
            recipient_limit: c.default_destination_recipient_limit,
            min_backoff: Duration::from_secs(c.minimal_backoff_time),
            max_backoff: Duration::from_secs(c.maximal_backoff_time),
            lifetime: Duration::from_secs(c.maximal_queue_lifetime),
            bounce_lifetime: Duration::from_secs(c.bounce_queue_lifetime),
            delay_warning: (c.delay_warning_time > 0)
                .then(|| Duration::from_secs(c.delay_warning_time)),
            notices: NoticeConfig {
                myhostname: c.myhostname.clone(),
                bounce_size_limit: c.bounce_size_limit,
            },
            delivery,
            campaigns: None,
            metrics: None,
        }
    }
}

/// One SMTP transaction's worth of recipients of one message.
#[derive(Clone, Debug)]
struct Job {
    id: QueueId,
    rcpts: Vec<u32>,
}

/// The live recipients (index, address) of a slice, and its campaign and
/// first index.
type LiveOfSlice = (Vec<(u32, String)>, Option<(u64, u32)>);

/// What a campaign job comes to.
enum CampaignJob {
    /// Its rendered message.
    Send(deliver::session::Outgoing),
    /// A result to record instead (the recipient's fields do not render).
    Record(RcptResult),
    /// Nothing now: the campaign is paused.
    Skip,
    /// Never: the address is on the suppression list (the reason).
    Suppressed(String),
}

/// Campaign slices of one shard in a delivery pass at once: at most this
/// many × 1,024 recipients are jobs in memory; the others wait their turn.
const MAX_ACTIVE_SLICES: usize = 16;

/// How soon a slice of a paused campaign (or one still being accepted) is
/// looked at again.
const CAMPAIGN_RECHECK_MICROS: u64 = 1_000_000;

/// How long a worker with an open connection waits for more jobs before
/// parking its connection in the idle pool: under load the next commit
/// batch arrives within milliseconds, and a parked connection costs an RSET
/// probe when it is taken again.
const LINGER: Duration = Duration::from_millis(50);

/// Per next-hop state.
struct Dest {
    jobs: VecDeque<Job>,
    /// Woken when jobs are added, for lingering workers.
    ready: Rc<Notify>,
    active: usize,
    window: f64,
    dead_until: Option<(Instant, String)>,
    idle: Vec<(Session, SlotGuard, Instant)>,
    /// TLS level, rate limit and credentials for this hop.
    policy: Rc<HopPolicy>,
}

/// Per message state while it has jobs out or waits for a retry.
#[derive(Default)]
struct MsgState {
    outstanding: u32,
    attempts: u32,
    /// When the message entered the queue manager (for delays=a/b).
    queued_micros: u64,
    /// Recipients that failed for good in this pass and whose sender wants
    /// to know (NOTIFY): reported in one notice when the pass ends, their
    /// status written after its commit.
    failed: Vec<(u32, FailedRecipient)>,
    /// Recipients deferred in this pass whose sender wants a delay
    /// warning.
    delayed: Vec<FailedRecipient>,
    /// Recipients sent in this pass whose sender asked for a success
    /// notice (`NOTIFY=SUCCESS`): reported in one notice when the pass
    /// ends, their status written after its commit.
    relayed: Vec<(u32, FailedRecipient)>,
    /// A delay warning was sent.
    warned: bool,
}

struct State {
    store: Rc<RefCell<Store>>,
    cfg: Rc<QmgrConfig>,
    router: Router,
    connector: Rc<Connector>,
    dests: HashMap<Nexthop, Dest>,
    msgs: HashMap<QueueId, MsgState>,
    retry: BinaryHeap<Reverse<(u64, QueueId)>>,
    slots: Arc<DestinationSlots>,
    stopping: bool,
    /// Recipients whose notice (failure, or success for `NOTIFY=SUCCESS`)
    /// waits for the next commit: their final status is written after it.
    after_commit: Vec<(QueueId, u32, RcptStatus)>,
    /// Notices appended since the last commit, scheduled after it.
    new_notices: Vec<QueueId>,
    /// What the commit in progress covers (taken from `after_commit` and
    /// `new_notices` by [`Qmgr::before_commit`]): a notice appended while
    /// the commit's fdatasync runs is not durable when it returns, so it
    /// waits for the next one.
    committing: (Vec<(QueueId, u32, RcptStatus)>, Vec<QueueId>),
    /// Compiled campaign templates.
    campaigns: CampaignCache,
    /// Campaign slices whose pass is under way (their recipients are jobs).
    campaign_active: std::collections::HashSet<QueueId>,
    /// Campaign slices waiting for a pass: the cursor that keeps the jobs
    /// in memory to [`MAX_ACTIVE_SLICES`] slices, whatever the list's size.
    campaign_waiting: VecDeque<QueueId>,
    /// The retry timer's wake-up (a waiting slice may start now).
    timer_wake: Rc<Notify>,
}

/// The queue manager of one shard. Cheap to clone (shared state on the
/// shard's thread).
#[derive(Clone)]
pub struct Qmgr {
    state: Rc<RefCell<State>>,
    /// Woken when the retry heap gets an earlier entry or a flush arrives.
    timer_wake: Rc<Notify>,
    /// Woken when status bytes were written and want a commit.
    dirty_wake: Rc<Notify>,
}

impl Qmgr {
    /// A queue manager over `store`.
    pub fn new(
        store: Rc<RefCell<Store>>,
        cfg: QmgrConfig,
        router: Router,
        slots: Arc<DestinationSlots>,
    ) -> Qmgr {
        let timer_wake = Rc::new(Notify::new());
        Qmgr {
            state: Rc::new(RefCell::new(State {
                campaign_active: std::collections::HashSet::new(),
                campaign_waiting: VecDeque::new(),
                timer_wake: Rc::clone(&timer_wake),
                store,
                connector: Rc::new(Connector::new(&cfg.delivery)),
                campaigns: CampaignCache::new(cfg.campaigns.clone()),
                cfg: Rc::new(cfg),
                router,
                dests: HashMap::new(),
                msgs: HashMap::new(),
                retry: BinaryHeap::new(),
                slots,
                stopping: false,
                after_commit: Vec::new(),
                new_notices: Vec::new(),
                committing: (Vec::new(), Vec::new()),
            })),
            timer_wake,
            dirty_wake: Rc::new(Notify::new()),
        }
    }

    /// Resolves when delivery wrote status bytes that want a commit.
    pub async fn dirty(&self) {
        self.dirty_wake.notified().await;
    }

    /// Schedules every live recipient of message `id` now.
    pub fn schedule(&self, id: QueueId) {
        let kicks = {
            let mut st = self.state.borrow_mut();
            st.plan(id)
        };
        for hop in kicks {
            self.kick(&hop);
        }
    }

    /// Called by the shard just before a commit writes and syncs the
    /// queue: the notices appended so far (and the statuses waiting for
    /// them) are the ones [`Qmgr::after_commit`] may treat as durable once
    /// that commit succeeds. What a failed commit covered stays for the next.
    pub fn before_commit(&self) {
        let mut st = self.state.borrow_mut();
        st.campaigns.flush_results();
        let statuses = std::mem::take(&mut st.after_commit);
        let notices = std::mem::take(&mut st.new_notices);
        st.committing.0.extend(statuses);
        st.committing.1.extend(notices);
    }

    /// Called by the shard after every successful commit: the notices
    /// appended before [`Qmgr::before_commit`] are durable, so the
    /// recipients they report get their final status now (bounced, or sent
    /// for a success notice; durable with the next commit) and the notices
    /// are scheduled.
    pub fn after_commit(&self) {
        let (statuses, notices) = {
            let mut st = self.state.borrow_mut();
            std::mem::take(&mut st.committing)
        };
        if statuses.is_empty() && notices.is_empty() {
            return;
        }
        {
            let st = self.state.borrow();
            let mut store = st.store.borrow_mut();
            for (id, rcpt, status) in statuses {
                set_final_status(&mut store, id, rcpt, status);
            }
            write_statuses(&mut store);
        }
        self.dirty_wake.notify_one();
        for id in notices {
            self.schedule(id);
        }
    }

    /// True while notices or statuses wait for a commit.
    pub fn has_pending(&self) -> bool {
        let st = self.state.borrow();
        !st.after_commit.is_empty()
            || !st.new_notices.is_empty()
            || !st.committing.0.is_empty()
            || !st.committing.1.is_empty()
    }

    /// Makes all deferred mail due now and forgets dead destinations.
    pub fn flush(&self) {
        let mut st = self.state.borrow_mut();
        let due: Vec<QueueId> = st.retry.drain().map(|Reverse((_, id))| id).collect();
        for id in due {
            st.retry.push(Reverse((0, id)));
        }
        for d in st.dests.values_mut() {
            d.dead_until = None;
        }
        drop(st);
        self.timer_wake.notify_one();
    }

    /// Stops starting transactions; idle connections are closed by [`Qmgr::run_timer`].
    pub fn stop(&self) {
        self.state.borrow_mut().stopping = true;
        self.timer_wake.notify_one();
    }

    /// Number of messages this shard's queue manager holds.
    pub fn queued_messages(&self) -> usize {
        self.state.borrow().msgs.len()
    }

    /// Number of delivery workers running.
    pub fn active_workers(&self) -> usize {
        self.state.borrow().dests.values().map(|d| d.active).sum()
    }

    /// Closes every idle connection with QUIT.
    pub async fn close_idle(&self, all: bool) {
        let now = Instant::now();
        let mut closing = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            let limit = st.cfg.delivery.idle_time_limit;
            for d in st.dests.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) = d
                    .idle
                    .drain(..)
                    .partition(|(_, _, since)| all || now.duration_since(*since) >= limit);
                d.idle = keep;
                closing.extend(old.into_iter().map(|(s, g, _)| (s, g)));
            }
        }
        let cfg = self.state.borrow().cfg.clone();
        for (s, guard) in closing {
            s.quit(&cfg.delivery).await;
            drop(guard);
        }
    }

    /// Runs retries and idle-connection expiry until stopped.
    pub async fn run_timer(&self) {
        loop {
            if self.state.borrow().stopping {
                self.close_idle(true).await;
                return;
            }
            let now = now_micros();
            let mut due = Vec::new();
            let next = {
                let mut st = self.state.borrow_mut();
                while let Some(Reverse((at, id))) = st.retry.peek().copied() {
                    if at > now {
                        break;
                    }
                    st.retry.pop();
                    due.push(id);
                }
                st.retry.peek().map(|Reverse((at, _))| *at)
            };
            for id in due {
                self.schedule(id);
            }
            // Destinations with waiting jobs: another shard may have freed a
            // connection slot since.
            let waiting: Vec<Nexthop> = self
                .state
                .borrow()
                .dests
                .iter()
                .filter(|(_, d)| !d.jobs.is_empty())
                .map(|(h, _)| h.clone())
                .collect();
            for hop in waiting {
                self.kick(&hop);
            }
            self.close_idle(false).await;
            let wait = next
                .map(|at| Duration::from_micros(at.saturating_sub(now_micros())))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let _ = tokio::time::timeout(wait, self.timer_wake.notified()).await;
        }
    }

    /// Starts delivery workers for `hop` up to its window, as long as a
    /// cached connection or a free connection slot is there for each.
    fn kick(&self, hop: &Nexthop) {
        loop {
            let start = {
                let mut st = self.state.borrow_mut();
                let cfg = st.cfg.clone();
                let stopping = st.stopping;
                let slots = Arc::clone(&st.slots);
                let Some(d) = st.dests.get_mut(hop) else {
                    return;
                };
                let cap = (d.window.floor() as usize).clamp(1, cfg.concurrency_limit);
                if stopping || d.jobs.is_empty() || d.active >= cap || d.dead_until.is_some() {
                    None
                } else if d.idle.len() > d.active {
                    Some(None)
                } else {
                    slots.try_acquire(hop, cfg.concurrency_limit).map(Some)
                }
                .inspect(|_| d.active += 1)
            };
            let Some(guard) = start else { return };
            let me = self.clone();
            let hop = hop.clone();
            tokio::task::spawn_local(async move { me.worker(hop, guard).await });
        }
    }

    /// One connection's worth of work for `hop`: takes jobs until none is
    /// left, reusing the connection. `spare` is a connection slot taken for
    /// it by [`Qmgr::kick`] (none when a cached connection was there).
    async fn worker(self, hop: Nexthop, mut spare: Option<SlotGuard>) {
        let cfg = self.state.borrow().cfg.clone();
        let mut session: Option<(Session, SlotGuard)> = None;
        // A job to send again on a new connection because the reused one
        // turned out to be closing (421 at MAIL FROM): not the message's fault.
        let mut retry_fresh: Option<Job> = None;
        loop {
            let mut lingered = false;
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
                if job.is_some() || lingered || session.is_none() {
                    break job;
                }
                lingered = true;
                let _ = tokio::time::timeout(LINGER, ready.notified()).await;
            };
            let Some(job) = job else { break };
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
                    Some(rate) => slots.rates.take(&hop, rate).err(),
                    None => None,
                })
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
                let Some((mut s, g)) = self.take_idle(&hop) else {
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
                    let slots = Arc::clone(&self.state.borrow().slots);
                    slots.try_acquire(&hop, cfg.concurrency_limit)
                });
                let Some(guard) = guard else {
                    // Every slot is taken (by other shards): leave the job
                    // for later; the timer retries the destination.
                    if let Some(d) = self.state.borrow_mut().dests.get_mut(&hop) {
                        d.jobs.push_front(job);
                    }
                    break;
                };
                let t = Instant::now();
                let connector = Rc::clone(&self.state.borrow().connector);
                let policy = policy
                    .clone()
                    .unwrap_or_else(|| Rc::new(self.state.borrow().router.policy(&hop)));
                match connector.open(&hop, &policy, &cfg.delivery).await {
                    Ok(s) => {
                        setup = t.elapsed();
                        session = Some((s, guard));
                    }
                    Err(e) => {
                        drop(guard);
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
            let first = Sent {
                job,
                started,
                setup,
                at: Instant::now(),
                first: true,
            };
            let mut broke = false;
            let chain = match cfg.delivery.chaining {
                TransactionChaining::Off => false,
                TransactionChaining::On => true,
                TransactionChaining::Auto => !slots.chain_refusals.refuses(&hop),
            };
            // The relay information of the results: who, and whether the
            // RFC 3461 requests went on with the messages.
            let relay = Relay {
                name: relay,
                dsn_passed: s.passes_dsn(),
            };
            s.send_chain(
                (first, msg),
                &cfg.delivery,
                chain,
                || self.next_chained(&hop, policy.as_deref()),
                |sent, result| {
                    let ok = self.chain_done(&hop, sent, result, &relay, &mut retry_fresh);
                    broke |= !ok;
                },
            )
            .await;
            if let Some(refusal) = s.take_chain_refusal() {
                if cfg.delivery.chaining == TransactionChaining::Auto
                    && slots.chain_refusals.remember(&hop)
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
            if retry_fresh.is_some() || broke || !s.reusable(&cfg.delivery) {
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
        if let Some((s, guard)) = session {
            let mut st = self.state.borrow_mut();
            if let Some(d) = st.dests.get_mut(&hop) {
                d.idle.push((s, guard, Instant::now()));
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
    async fn wait_for_token(
        &self,
        session: &mut Option<(Session, SlotGuard)>,
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

    /// The next job for `hop` to chain onto a busy connection: none while
    /// stopping, or when the rate limit has no token right now.
    fn next_chained(
        &self,
        hop: &Nexthop,
        policy: Option<&HopPolicy>,
    ) -> Option<(Sent, deliver::session::Outgoing)> {
        let mut st = self.state.borrow_mut();
        if st.stopping {
            return None;
        }
        let cfg = Rc::clone(&st.cfg);
        loop {
            let job = st.dests.get_mut(hop)?.jobs.pop_front()?;
            if let Some(rate) = policy.and_then(|p| p.rate) {
                if st.slots.rates.take(hop, rate).is_err() {
                    if let Some(d) = st.dests.get_mut(hop) {
                        d.jobs.push_front(job);
                    }
                    return None;
                }
            }
            if st.campaign_rate_wait(&job).is_some() {
                if let Some(d) = st.dests.get_mut(hop) {
                    d.jobs.push_front(job);
                }
                return None;
            }
            let Some(msg) = st.outgoing(&job) else {
                st.job_done(job.id, &cfg);
                continue;
            };
            let sent = Sent {
                job,
                started: now_micros(),
                setup: Duration::ZERO,
                at: Instant::now(),
                first: false,
            };
            return Some((sent, msg));
        }
    }

    /// Records what became of one job of a chain; false when the
    /// connection failed with it.
    fn chain_done(
        &self,
        hop: &Nexthop,
        sent: Sent,
        result: ChainResult,
        relay: &Relay,
        retry_fresh: &mut Option<Job>,
    ) -> bool {
        let timing = Timing {
            started: sent.started,
            setup: sent.setup,
            xfer: sent.at.elapsed(),
        };
        match result {
            ChainResult::Done(results) => {
                self.finish_job(&sent.job, &results, Some(relay), &timing);
                self.feedback(hop, true);
                true
            }
            ChainResult::NotAttempted => {
                // Nothing of it was accepted: again, on another connection,
                // without charging the message (as Postfix does with its
                // connection cache).
                if sent.first {
                    *retry_fresh = Some(sent.job);
                } else if let Some(d) = self.state.borrow_mut().dests.get_mut(hop) {
                    d.jobs.push_front(sent.job);
                    self.kick_later(hop);
                }
                true
            }
            ChainResult::Failed(e) => {
                let results: Vec<RcptResult> = sent
                    .job
                    .rcpts
                    .iter()
                    .map(|_| RcptResult::from_error(&e))
                    .collect();
                self.finish_job(&sent.job, &results, Some(relay), &timing);
                self.feedback(hop, false);
                false
            }
        }
    }

    /// Starts workers for `hop` once the current task yields (not from
    /// inside a chain's callback, which runs while state may be borrowed).
    fn kick_later(&self, hop: &Nexthop) {
        let me = self.clone();
        let hop = hop.clone();
        tokio::task::spawn_local(async move { me.kick(&hop) });
    }

    fn take_idle(&self, hop: &Nexthop) -> Option<(Session, SlotGuard)> {
        let mut st = self.state.borrow_mut();
        let limit = st.cfg.delivery.idle_time_limit;
        let d = st.dests.get_mut(hop)?;
        while let Some((s, g, since)) = d.idle.pop() {
            if since.elapsed() < limit {
                return Some((s, g));
            }
            // Too old: let it drop (closing a socket needs no reply).
            drop((s, g));
        }
        None
    }

    /// Slow start: a success widens the window by 1/window (and starts
    /// another worker when that makes room), a failure narrows it.
    fn feedback(&self, hop: &Nexthop, ok: bool) {
        {
            let mut st = self.state.borrow_mut();
            let limit = st.cfg.concurrency_limit as f64;
            if let Some(d) = st.dests.get_mut(hop) {
                if ok {
                    d.window = (d.window + 1.0 / d.window).min(limit);
                } else {
                    d.window = (d.window - 1.0 / d.window).max(1.0);
                }
            }
        }
        if ok {
            self.kick(hop);
        }
    }

    /// A connection to `hop` failed: defer this job; at a window of one the
    /// destination is dead and every queued job is deferred with it.
    fn destination_failed(&self, hop: &Nexthop, job: Job, e: &DeliverError, started: u64) {
        let timing = Timing {
            started,
            setup: Duration::ZERO,
            xfer: Duration::ZERO,
        };
        let result = RcptResult::from_error(e);
        let mut jobs = vec![job];
        {
            let mut st = self.state.borrow_mut();
            let min_backoff = st.cfg.min_backoff;
            if let Some(d) = st.dests.get_mut(hop) {
                if !e.is_transient() {
                    // The destination refuses mail for good (null MX, no
                    // such domain, 5xx greeting): everything queued for it
                    // fails the same way; later mail asks again.
                    jobs.extend(d.jobs.drain(..));
                } else if d.window <= 1.0 {
                    d.dead_until = Some((Instant::now() + min_backoff, e.to_string()));
                    jobs.extend(d.jobs.drain(..));
                    tracing::info!(target: "qmgr", "destination {hop} marked dead: {e}");
                } else {
                    d.window = (d.window - 1.0 / d.window).max(1.0);
                }
            }
        }
        for job in jobs {
            let results: Vec<RcptResult> = job.rcpts.iter().map(|_| result.clone()).collect();
            self.finish_job(&job, &results, None, &timing);
        }
    }

    /// Records the results of a job: status bytes, defer records, log lines;
    /// schedules a retry or logs removal once the message has no job out.
    fn finish_job(
        &self,
        job: &Job,
        results: &[RcptResult],
        relay: Option<&Relay>,
        timing: &Timing,
    ) {
        let mut st = self.state.borrow_mut();
        let cfg = st.cfg.clone();
        st.record_results(job, results, relay, timing);
        st.job_done(job.id, &cfg);
        drop(st);
        self.dirty_wake.notify_one();
        self.timer_wake.notify_one();
    }
}

/// A job on its way out in a chain, with what its log line needs.
struct Sent {
    job: Job,
    /// When the job left the destination's queue.
    started: u64,
    /// Connection setup time (first job of a new connection only).
    setup: Duration,
    /// When its transaction began.
    at: Instant,
    /// The chain's first job (a stale reused connection retries it at once).
    first: bool,
}

/// Where a job's results came from.
struct Relay {
    /// `host[ip]:port`, for `relay=`.
    name: String,
    /// The server took the RFC 3461 requests (it announced DSN): it, not
    /// ringmail, reports a successful delivery to a NOTIFY=SUCCESS.
    dsn_passed: bool,
}

/// When a transaction's phases happened, for `delays=a/b/c/d`.
struct Timing {
    started: u64,
    setup: Duration,
    xfer: Duration,
}

impl State {
    /// Splits message `id`'s live recipients into jobs per next hop; returns
    /// the hops that got work.
    fn plan(&mut self, id: QueueId) -> Vec<Nexthop> {
        let cfg = self.cfg.clone();
        let store = self.store.clone();
        let store = store.borrow();
        let Some((view, status)) = store.peek(id) else {
            self.msgs.remove(&id);
            return Vec::new();
        };
        let now = now_micros();
        let entry = self.msgs.entry(id).or_insert_with(|| MsgState {
            queued_micros: now,
            ..MsgState::default()
        });
        let lifetime = if view.sender.is_empty() {
            cfg.bounce_lifetime
        } else {
            cfg.lifetime
        };
        let expired = now.saturating_sub(view.arrival_micros) > lifetime.as_micros() as u64;
        let campaign = view.campaign.is_some();
        let gate = view
            .campaign
            .map(|f| {
                let mut state = self.campaigns.state(f.campaign);
                if state == Some(CampaignState::Running)
                    && self.campaigns.starts_in(f.campaign).is_some()
                {
                    // Not before its start time (`--at`): held as if paused.
                    state = Some(CampaignState::Paused);
                }
                (f.campaign, state)
            })
            .filter(|(_, state)| *state != Some(CampaignState::Running));
        if let Some((cid, state)) = gate {
            drop((view, status));
            drop(store);
            match state {
                Some(CampaignState::Cancelled) => {
                    self.drop_slice(id, &format!("campaign {cid} cancelled"));
                }
                None => self.drop_slice(
                    id,
                    &format!("campaign {cid} was never accepted (its acceptance was interrupted)"),
                ),
                // Accepting or paused: looked at again within a second (the
                // timer runs at least that often); not an attempt.
                _ => self
                    .retry
                    .push(Reverse((now + CAMPAIGN_RECHECK_MICROS, id))),
            }
            return Vec::new();
        }
        if campaign && !self.campaign_active.contains(&id) {
            if self.campaign_active.len() >= MAX_ACTIVE_SLICES {
                if !self.campaign_waiting.contains(&id) {
                    self.campaign_waiting.push_back(id);
                }
                return Vec::new();
            }
            self.campaign_active.insert(id);
        }
        let mut by_hop: HashMap<Nexthop, Vec<u32>> = HashMap::new();
        let mut unroutable: Vec<(u32, RcptResult)> = Vec::new();
        for (i, rcpt) in view.recipients.iter().enumerate() {
            if !RcptStatus::from_byte(status.get(i).unwrap_or(0)).is_live() {
                continue;
            }
            if expired && entry.attempts > 0 {
                unroutable.push((i as u32, RcptResult::expired()));
                continue;
            }
            match self.router.route(rcpt) {
                Ok(hop) => by_hop.entry(hop).or_default().push(i as u32),
                Err(e) => {
                    unroutable.push((i as u32, RcptResult::from_error(&DeliverError::Route(e))))
                }
            }
        }
        drop(store);
        let mut kicks = Vec::new();
        let mut jobs_out = 0;
        for (hop, rcpts) in by_hop {
            let router = &self.router;
            let d = self.dests.entry(hop.clone()).or_insert_with(|| Dest {
                jobs: VecDeque::new(),
                ready: Rc::new(Notify::new()),
                active: 0,
                window: cfg.initial_concurrency as f64,
                dead_until: None,
                idle: Vec::new(),
                policy: Rc::new(router.policy(&hop)),
            });
            if let Some((until, _)) = &d.dead_until {
                if Instant::now() >= *until {
                    d.dead_until = None;
                }
            }
            if let Some((_, reason)) = d.dead_until.clone() {
                for r in rcpts {
                    unroutable.push((
                        r,
                        RcptResult::deferred(
                            "4.4.1",
                            format!("delivery temporarily suspended: {reason}"),
                        ),
                    ));
                }
                continue;
            }
            // A campaign recipient is its own transaction: its message and
            // VERP sender are its own.
            let per_job = if campaign {
                1
            } else {
                cfg.recipient_limit.max(1)
            };
            for chunk in rcpts.chunks(per_job) {
                d.jobs.push_back(Job {
                    id,
                    rcpts: chunk.to_vec(),
                });
                jobs_out += 1;
            }
            d.ready.notify_waiters();
            kicks.push(hop);
        }
        if let Some(m) = self.msgs.get_mut(&id) {
            m.outstanding += jobs_out;
        }
        if !unroutable.is_empty() {
            let job = Job {
                id,
                rcpts: unroutable.iter().map(|(i, _)| *i).collect(),
            };
            let results: Vec<RcptResult> = unroutable.into_iter().map(|(_, r)| r).collect();
            let timing = Timing {
                started: now,
                setup: Duration::ZERO,
                xfer: Duration::ZERO,
            };
            if let Some(m) = self.msgs.get_mut(&id) {
                m.outstanding += 1;
            }
            self.record_results(&job, &results, None, &timing);
            self.job_done(id, &cfg);
        } else if jobs_out == 0 {
            self.job_done_if_idle(id, &cfg);
        }
        kicks
    }

    /// The message data a job sends. `None` when there is nothing to send:
    /// the message is gone or damaged, or (a campaign recipient) its
    /// message could not be rendered, which is recorded as its result here.
    fn outgoing(&mut self, job: &Job) -> Option<deliver::session::Outgoing> {
        match self.outgoing_campaign(job) {
            Some(CampaignJob::Send(msg)) => return Some(msg),
            Some(CampaignJob::Skip) => return None,
            Some(CampaignJob::Suppressed(why)) => {
                self.suppressed(job, &why);
                return None;
            }
            Some(CampaignJob::Record(result)) => {
                let timing = Timing {
                    started: now_micros(),
                    setup: Duration::ZERO,
                    xfer: Duration::ZERO,
                };
                self.record_results(job, std::slice::from_ref(&result), None, &timing);
                return None;
            }
            None => {}
        }
        let store = self.store.borrow();
        let Some((view, _)) = store.get(job.id) else {
            if store.peek(job.id).is_some() {
                // Readable but damaged since it was verified: never send
                // it, and say so at each attempt (the record stays for
                // inspection; it is retried like a deferral).
                tracing::error!(target: "qmgr", "{}: queue record fails its checksum: not sent; left in the queue", job.id);
            }
            return None;
        };
        Some(deliver::session::Outgoing {
            sender: view.sender.to_string(),
            recipients: job
                .rcpts
                .iter()
                .filter_map(|&i| view.recipients.get(i as usize).map(|r| r.to_string()))
                .collect(),
            wire: view.wire.to_vec(),
            flags: delivery_flags(view.flags, view.dsn.body),
            dsn: DsnParams {
                ret: view.dsn.ret,
                envid: view.dsn.envid.clone(),
                body: view.dsn.body,
                // Parallel to the job's recipients; empty when none asked.
                rcpts: if view.dsn.rcpts.is_empty() {
                    Vec::new()
                } else {
                    job.rcpts
                        .iter()
                        .map(|&i| view.dsn.rcpts.get(i as usize).cloned().unwrap_or_default())
                        .collect()
                },
            },
        })
    }

    /// How long `job` must wait for its campaign's rate limit, if it is a
    /// campaign job and has no token yet (one is taken when it may go).
    fn campaign_rate_wait(&mut self, job: &Job) -> Option<Duration> {
        let cid = self.store.borrow().slice_campaign(job.id)?;
        self.campaigns.rate_wait(cid)
    }

    /// Drops a campaign recipient found on the suppression list.
    fn suppressed(&mut self, job: &Job, why: &str) {
        let Some(&i) = job.rcpts.first() else { return };
        let (addr, campaign) = {
            let store = self.store.borrow();
            let Some((slice, e)) = store.slice_entry(job.id, i as usize) else {
                return;
            };
            (
                e.email.to_string(),
                Some((slice.campaign, slice.first_index)),
            )
        };
        crate::info_line!(target: "qmgr", "{}: to=<{addr}>, status=suppressed ({why})", job.id);
        if let Some(m) = &self.cfg.metrics {
            m.outcome(crate::obs::metrics::Outcome::Suppressed);
        }
        if let Some((cid, first)) = campaign {
            self.campaigns.note(
                cid,
                first.saturating_add(i),
                &addr,
                "suppressed",
                "5.7.1",
                why,
            );
            self.campaigns.write_results();
        }
        let mut store = self.store.borrow_mut();
        set_final_status(&mut store, job.id, i, RcptStatus::Dropped);
        write_statuses(&mut store);
    }

    /// Drops every live recipient of campaign slice `id` (cancelled, or
    /// never accepted), logging `status=cancelled` for each.
    fn drop_slice(&mut self, id: QueueId, why: &str) {
        let (live, campaign): LiveOfSlice = {
            let store = self.store.borrow();
            let Some((view, status)) = store.peek(id) else {
                return;
            };
            let campaign = view.campaign.map(|f| (f.campaign, f.first_index));
            let live = view
                .recipients
                .iter()
                .enumerate()
                .filter(|(i, _)| RcptStatus::from_byte(status.get(*i).unwrap_or(0)).is_live())
                .map(|(i, r)| (i as u32, r.to_string()))
                .collect();
            (live, campaign)
        };
        if let Some((cid, first)) = campaign {
            for (i, addr) in &live {
                self.campaigns.note(
                    cid,
                    first.saturating_add(*i),
                    addr,
                    "cancelled",
                    "5.0.0",
                    why,
                );
            }
        }
        self.campaigns.write_results();
        let mut store = self.store.borrow_mut();
        for (i, addr) in &live {
            crate::info_line!(target: "qmgr", "{id}: to=<{addr}>, status=cancelled ({why})");
            if let Some(m) = &self.cfg.metrics {
                m.outcome(crate::obs::metrics::Outcome::Cancelled);
            }
            set_final_status(&mut store, id, *i, RcptStatus::Dropped);
        }
        write_statuses(&mut store);
        drop(store);
        self.msgs.remove(&id);
    }

    /// For a job of a campaign slice: its recipient's rendered message, or
    /// the result to record instead. `None` for an ordinary message.
    fn outgoing_campaign(&mut self, job: &Job) -> Option<CampaignJob> {
        let store = self.store.clone();
        let store = store.borrow();
        store.slice_campaign(job.id)?;
        let &row = job.rcpts.first()?;
        let Some((slice, recipient)) = store.slice_entry(job.id, row as usize) else {
            // Unreadable since it was planned: deferred, tried again.
            return Some(CampaignJob::Record(RcptResult::deferred(
                "4.3.0",
                "campaign slice unreadable".into(),
            )));
        };
        if self.campaigns.state(slice.campaign) != Some(CampaignState::Running) {
            // Paused (or cancelled) since it was planned: not sent; the
            // pass ends and the slice is looked at again.
            return Some(CampaignJob::Skip);
        }
        Some(
            match self.campaigns.render(
                || store.campaign(slice.campaign),
                &slice,
                row as usize,
                &recipient,
            ) {
                Ok(msg) => CampaignJob::Send(msg),
                Err(Unsendable::Result(result)) => CampaignJob::Record(result),
                Err(Unsendable::Suppressed(why)) => CampaignJob::Suppressed(why),
            },
        )
    }

    fn record_results(
        &mut self,
        job: &Job,
        results: &[RcptResult],
        relay: Option<&Relay>,
        timing: &Timing,
    ) {
        let dsn_passed = relay.is_some_and(|r| r.dsn_passed);
        let now = now_micros();
        let queued = self
            .msgs
            .get(&job.id)
            .map(|m| m.queued_micros)
            .unwrap_or(now);
        let attempts = self.msgs.get(&job.id).map(|m| m.attempts).unwrap_or(0);
        let next_retry = now + self.backoff(attempts + 1).as_micros() as u64;
        let mut store = self.store.borrow_mut();
        // What the log lines and notices need: for a campaign slice, read
        // through its index (the job's recipients only).
        let (arrival, null_sender, campaign, dsn, addrs) = if store.slice_campaign(job.id).is_some()
        {
            let mut slice = None;
            let addrs: Vec<String> = job
                .rcpts
                .iter()
                .map(|&i| match store.slice_entry(job.id, i as usize) {
                    Some((ix, e)) => {
                        slice = Some(ix);
                        e.email.to_string()
                    }
                    None => String::new(),
                })
                .collect();
            let Some(slice) = slice else {
                return;
            };
            // Campaign recipients are reported in the campaign, never by a
            // notice to the (VERP) sender.
            (
                slice.arrival_micros,
                true,
                Some((slice.campaign, slice.first_index)),
                DsnParams::default(),
                addrs,
            )
        } else {
            let Some((view, _)) = store.peek(job.id) else {
                return;
            };
            let addrs: Vec<String> = job
                .rcpts
                .iter()
                .map(|&i| {
                    view.recipients
                        .get(i as usize)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                })
                .collect();
            (
                view.arrival_micros,
                view.sender.is_empty(),
                None,
                view.dsn.clone(),
                addrs,
            )
        };
        let relay = relay.map_or("none", |r| r.name.as_str());
        let a = secs(queued.saturating_sub(arrival));
        let b = secs(timing.started.saturating_sub(queued));
        let c = timing.setup.as_secs_f64();
        let d = timing.xfer.as_secs_f64();
        let delay = secs(now.saturating_sub(arrival));
        for ((&i, addr), result) in job.rcpts.iter().zip(&addrs).zip(results) {
            let (status, word) = match result {
                RcptResult::Sent { .. } => (RcptStatus::Sent, "sent"),
                RcptResult::Deferred { .. } => (RcptStatus::Deferred, "deferred"),
                RcptResult::Bounced { .. } => (RcptStatus::Bounced, "bounced"),
                RcptResult::Expired { .. } => (RcptStatus::Bounced, "expired"),
            };
            if let Some(m) = &self.cfg.metrics {
                use crate::obs::metrics::Outcome;
                m.outcome(match result {
                    RcptResult::Sent { .. } => {
                        m.delivery_seconds.observe(secs(now.saturating_sub(queued)));
                        Outcome::Delivered
                    }
                    RcptResult::Deferred { .. } => Outcome::Deferred,
                    RcptResult::Bounced { .. } => Outcome::Bounced,
                    RcptResult::Expired { .. } => Outcome::Expired,
                });
            }
            crate::info_line!(
                target: "smtp",
                "{}: to=<{addr}>, relay={relay}, delay={}, delays={}/{}/{}/{}, dsn={}, status={word} ({})",
                job.id,
                Secs(delay),
                Secs(a),
                Secs(b),
                Secs(c),
                Secs(d),
                result.dsn(),
                result.text()
            );
            if let Some((cid, first)) = campaign {
                self.campaigns.note(
                    cid,
                    first.saturating_add(i),
                    addr,
                    word,
                    result.dsn(),
                    result.text(),
                );
                if let (RcptResult::Bounced { dsn, text }, Some(settings)) =
                    (result, self.campaigns.settings())
                {
                    suppress_hard_bounce(settings, cid, addr, dsn, text);
                }
            }
            // What the sender asked to be told (RFC 3461 NOTIFY; without
            // it: failures and delays).
            let notify = dsn.notify(i as usize);
            let orcpt = dsn.orcpt(i as usize);
            if let RcptResult::Deferred { text, .. } = result {
                match store.append_defer(job.id, i, next_retry, text) {
                    // Without room (logged by the store) only the reason
                    // shown by `mailq` is lost: the status byte below is
                    // written in place.
                    Err(e) if !e.is_no_room() => {
                        tracing::error!(target: "qmgr", "{}: cannot record deferral: {e}", job.id)
                    }
                    _ => {}
                }
                if let Some(m) = self
                    .msgs
                    .get_mut(&job.id)
                    .filter(|_| notify.wants_delay() && !null_sender)
                {
                    m.delayed.push(failed_recipient(addr, orcpt, result));
                }
            }
            if status == RcptStatus::Bounced && !null_sender && notify.wants_failure() {
                // Written once the notice reporting it is committed.
                if let Some(m) = self.msgs.get_mut(&job.id) {
                    m.failed.push((i, failed_recipient(addr, orcpt, result)));
                    continue;
                }
            }
            // A server that took the NOTIFY reports success itself (RFC 3461
            // section 6.2.2: no "relayed" notice from here then).
            let passed_on = dsn_passed && notify.is_specified();
            if status == RcptStatus::Sent && !null_sender && notify.wants_success() && !passed_on {
                // Written once the success notice is committed.
                if let Some(m) = self.msgs.get_mut(&job.id) {
                    m.relayed
                        .push((i, relayed_recipient(addr, orcpt, relay, result)));
                    continue;
                }
            }
            set_final_status(&mut store, job.id, i, status);
        }
        write_statuses(&mut store);
        if campaign.is_some() {
            self.campaigns.write_results();
        }
    }

    fn job_done(&mut self, id: QueueId, cfg: &QmgrConfig) {
        if let Some(m) = self.msgs.get_mut(&id) {
            m.outstanding = m.outstanding.saturating_sub(1);
        }
        self.job_done_if_idle(id, cfg);
    }

    /// When no job of `id` is out: send the notices this pass calls for,
    /// then forget the message if it is done, else schedule a retry.
    fn job_done_if_idle(&mut self, id: QueueId, cfg: &QmgrConfig) {
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        if m.outstanding > 0 {
            return;
        }
        if self.campaign_active.remove(&id) {
            // The pass of a slice is over: let the next waiting ones start.
            let mut started = 0;
            while self.campaign_active.len() + started < MAX_ACTIVE_SLICES {
                let Some(next) = self.campaign_waiting.pop_front() else {
                    break;
                };
                self.retry.push(Reverse((now_micros(), next)));
                started += 1;
            }
            if started > 0 {
                self.timer_wake.notify_one();
            }
        }
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        let failed = std::mem::take(&mut m.failed);
        let relayed = std::mem::take(&mut m.relayed);
        let delayed = std::mem::take(&mut m.delayed);
        let warn = !m.warned && !delayed.is_empty();
        let attempts = m.attempts + 1;
        if !failed.is_empty() {
            self.notify_final(id, NoticeKind::Failure, failed, cfg);
        }
        if !relayed.is_empty() {
            self.notify_final(id, NoticeKind::Success, relayed, cfg);
        }
        if warn {
            self.maybe_warn(id, &delayed, cfg);
        }
        let live = self.store.borrow().contains(id);
        if !live {
            self.msgs.remove(&id);
            return;
        }
        let campaign = self.store.borrow().slice_campaign(id);
        if let Some(cid) = campaign {
            if self.campaigns.state(cid) != Some(CampaignState::Running) {
                // Paused while this pass ran: not an attempt; plan() looks
                // again (and keeps looking while it stays paused).
                self.retry
                    .push(Reverse((now_micros() + CAMPAIGN_RECHECK_MICROS, id)));
                return;
            }
        }
        let due = now_micros() + self.backoff(attempts).as_micros() as u64;
        if let Some(m) = self.msgs.get_mut(&id) {
            m.attempts = attempts;
        }
        self.retry.push(Reverse((due, id)));
    }

    /// Queues one notice of `kind` (failure or success) for `reported`,
    /// recipients of `id` that got their final result in this pass; their
    /// status (bounced or sent) is written after the notice's commit.
    fn notify_final(
        &mut self,
        id: QueueId,
        kind: NoticeKind,
        reported: Vec<(u32, FailedRecipient)>,
        cfg: &QmgrConfig,
    ) {
        let status = match kind {
            NoticeKind::Success => RcptStatus::Sent,
            NoticeKind::Failure | NoticeKind::Delay => RcptStatus::Bounced,
        };
        let reports: Vec<FailedRecipient> = reported.iter().map(|(_, f)| f.clone()).collect();
        let result = queue_notice(
            &mut self.store.borrow_mut(),
            id,
            kind,
            &reports,
            &cfg.notices,
        );
        let set_now = |qmgr: &mut State| {
            let mut store = qmgr.store.borrow_mut();
            for (i, _) in &reported {
                set_final_status(&mut store, id, *i, status);
            }
            write_statuses(&mut store);
        };
        match result {
            Ok(Some(notice)) => {
                self.new_notices.push(notice);
                self.after_commit
                    .extend(reported.iter().map(|(i, _)| (id, *i, status)));
            }
            Ok(None) => set_now(self),
            Err(e) if e.is_transient() && kind == NoticeKind::Failure => {
                // The recipients stay live: tried again, bounced again, and
                // the notice with them. Never lost. A full disk is logged
                // by the store, once a minute.
                if !e.is_no_room() {
                    tracing::error!(target: "bounce", "{id}: {e}; will try again");
                }
            }
            Err(e) if kind == NoticeKind::Success => {
                // Keeping them live would deliver the message again: the
                // recipients are sent, the success notice is not.
                tracing::error!(target: "bounce", "{id}: {e}; recipients marked sent without the success notice");
                set_now(self);
            }
            Err(e) => {
                tracing::error!(target: "bounce", "{id}: {e}; recipients marked bounced without a notice");
                set_now(self);
            }
        }
    }

    /// Sends one delay warning when `id` has been queued longer than
    /// `delay_warning_time` and still has deferred recipients.
    fn maybe_warn(&mut self, id: QueueId, delayed: &[FailedRecipient], cfg: &QmgrConfig) {
        let Some(after) = cfg.delay_warning else {
            return;
        };
        let age = {
            let store = self.store.borrow();
            let Some((view, _)) = store.get(id) else {
                return;
            };
            if view.sender.is_empty() || view.campaign.is_some() {
                return;
            }
            now_micros().saturating_sub(view.arrival_micros)
        };
        if age < after.as_micros() as u64 {
            return;
        }
        let result = queue_notice(
            &mut self.store.borrow_mut(),
            id,
            NoticeKind::Delay,
            delayed,
            &cfg.notices,
        );
        match result {
            Ok(notice) => {
                self.new_notices.extend(notice);
                if let Some(m) = self.msgs.get_mut(&id) {
                    m.warned = true;
                }
            }
            // Not warned yet: tried again with the next deferral.
            Err(e) if e.is_no_room() => {}
            Err(e) => tracing::error!(target: "bounce", "{id}: delay warning: {e}"),
        }
    }

    /// Retry delay after `attempts` attempts, with ±20 % jitter.
    fn backoff(&self, attempts: u32) -> Duration {
        backoff(
            self.cfg.min_backoff,
            self.cfg.max_backoff,
            attempts,
            fastrand::f64(),
        )
    }
}

/// The flags delivery goes by: those cleanup found in the message, plus
/// `BODY=8BITMIME` when the submitter declared it (`sendmail -B8BITMIME`,
/// `BODY=8BITMIME` at injection) even if every byte is 7-bit. A declared
/// `7BIT` does not hide 8-bit content cleanup found.
fn delivery_flags(found: MessageFlags, declared: Option<BodyType>) -> MessageFlags {
    let mut flags = found;
    if declared == Some(BodyType::EightBitMime) {
        flags.set(MessageFlags::BODY_8BIT);
    }
    flags
}

/// Writes the statuses set since the last call to the segment files, where
/// a killed daemon does not lose them (one write for all of them: call it
/// after a loop of [`set_final_status`]).
fn write_statuses(store: &mut Store) {
    if let Err(e) = store.flush_statuses() {
        tracing::error!(target: "qmgr", "cannot record delivery statuses: {e}");
    }
}

/// Sets a recipient's final status (written by [`write_statuses`]); logs
/// `removed` when that was the message's last live recipient.
fn set_final_status(store: &mut Store, id: QueueId, rcpt: u32, status: RcptStatus) {
    match store.set_status(id, rcpt as usize, status) {
        Ok(true) => crate::info_line!(target: "qmgr", "{id}: removed"),
        Ok(false) => {}
        Err(e) => tracing::error!(target: "qmgr", "{id}: cannot record delivery status: {e}"),
    }
}

/// `min * 2^(attempts-1)`, capped at `max`, scaled by `0.8 + 0.4 * dice`
/// (`dice` in 0..1): the jitter keeps retries from arriving in lock step.
fn backoff(min: Duration, max: Duration, attempts: u32, dice: f64) -> Duration {
    let base = min.as_secs_f64() * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    Duration::from_secs_f64(base.min(max.as_secs_f64()) * (0.8 + 0.4 * dice))
}

fn secs(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Postfix's delay format: two decimals for small values, fewer for large.
/// Formats with integer arithmetic into the log line directly (a log line
/// carries five of these, and float formatting showed in profiles).
struct Secs(f64);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.0.is_finite() && self.0 > 0.0 {
            self.0
        } else {
            0.0
        };
        if s >= 10.0 {
            write!(f, "{}", s.round() as u64)
        } else if s >= 0.1 {
            let tenths = (s * 10.0).round() as u64;
            if tenths % 10 == 0 {
                write!(f, "{}", tenths / 10)
            } else {
                write!(f, "{}.{}", tenths / 10, tenths % 10)
            }
        } else {
            match (s * 100.0).round() as u64 {
                0 => f.write_str("0"),
                hundredths => write!(f, "0.{hundredths:02}"),
            }
        }
    }
}

/// [`Secs`] as a string.
#[cfg(test)]
fn fmt_secs(s: f64) -> String {
    Secs(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notice appended while a commit's fdatasync runs is not durable
    /// when that commit returns: `after_commit` must leave it (and the
    /// statuses waiting for it) for the next commit.
    #[test]
    fn after_commit_acts_only_on_what_the_commit_covered() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        let config = Config::default();
        let cfg = QmgrConfig::from_config(
            &config,
            1,
            DeliveryConfig::from_config(&config, crate::rt::IoBackend::Epoll),
        );
        let qmgr = Qmgr::new(
            Rc::new(RefCell::new(store)),
            cfg,
            Router::from_config(&config).unwrap(),
            DestinationSlots::new(),
        );
        let (a, b) = (QueueId::new(0, 1), QueueId::new(0, 2));
        {
            let mut st = qmgr.state.borrow_mut();
            st.new_notices.push(a);
            st.after_commit.push((a, 0, RcptStatus::Bounced));
        }
        qmgr.before_commit();
        {
            // Appended during the fdatasync.
            let mut st = qmgr.state.borrow_mut();
            st.new_notices.push(b);
            st.after_commit.push((b, 0, RcptStatus::Sent));
        }
        qmgr.after_commit();
        {
            let st = qmgr.state.borrow();
            assert_eq!(st.new_notices, vec![b]);
            assert_eq!(st.after_commit, vec![(b, 0, RcptStatus::Sent)]);
            assert!(st.committing.0.is_empty() && st.committing.1.is_empty());
        }
        assert!(qmgr.has_pending());
        // A failed commit keeps what it covered for the next one.
        qmgr.before_commit();
        assert!(qmgr.has_pending());
        qmgr.before_commit();
        assert_eq!(qmgr.state.borrow().committing.1, vec![b]);
        qmgr.after_commit();
        assert!(!qmgr.has_pending());
    }

    #[test]
    fn a_declared_8bit_body_is_sent_as_8bitmime() {
        let plain = MessageFlags::default();
        let eight = MessageFlags(MessageFlags::BODY_8BIT);
        let body8 = |f: MessageFlags| f.has(MessageFlags::BODY_8BIT);
        assert!(body8(delivery_flags(plain, Some(BodyType::EightBitMime))));
        assert!(!body8(delivery_flags(plain, Some(BodyType::SevenBit))));
        assert!(!body8(delivery_flags(plain, None)));
        assert!(body8(delivery_flags(eight, Some(BodyType::SevenBit))));
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let (min, max) = (Duration::from_secs(300), Duration::from_secs(4000));
        let mid = |n| backoff(min, max, n, 0.5).as_secs_f64();
        assert_eq!(mid(1), 300.0);
        assert_eq!(mid(2), 600.0);
        assert_eq!(mid(4), 2400.0);
        assert_eq!(mid(5), 4000.0);
        assert_eq!(mid(60), 4000.0);
        assert_eq!(backoff(min, max, 1, 0.0).as_secs_f64(), 240.0);
        assert_eq!(backoff(min, max, 1, 1.0).as_secs_f64(), 360.0);
    }

    #[test]
    fn delay_format_matches_postfix_style() {
        assert_eq!(fmt_secs(0.0), "0");
        assert_eq!(fmt_secs(0.044), "0.04");
        assert_eq!(fmt_secs(0.44), "0.4");
        assert_eq!(fmt_secs(27.3), "27");
        assert_eq!(fmt_secs(1.0), "1");
        assert_eq!(fmt_secs(2.25), "2.3");
        assert_eq!(fmt_secs(9.97), "10");
        assert_eq!(fmt_secs(0.0999), "0.10");
        assert_eq!(fmt_secs(0.005), "0.01");
        assert_eq!(fmt_secs(0.004), "0");
        assert_eq!(fmt_secs(-1.0), "0");
        assert_eq!(fmt_secs(f64::NAN), "0");
        assert_eq!(fmt_secs(4000.4), "4000");
    }
}

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
//!   with QUIT after that. A cached connection also serves the other
//!   recipient domains of its site when it is connected to one of their MX
//!   hosts with TLS as safe as their level asks (`reuse.rs`).
//! - **Dead destinations.** A connection failure at a window of one marks the
//!   destination dead for `minimal_backoff_time`: its queued jobs are
//!   deferred at once with the same reason, and new ones are deferred
//!   without connecting, instead of retrying message by message. The other
//!   destinations of its site behind the same MX hosts are dead with it
//!   (`dead_site.rs`).
//! - **Retry.** A message with deferred recipients is retried after
//!   `minimal_backoff_time * 2^(attempts-1)`, capped at
//!   `maximal_backoff_time`, with ±20 % jitter so retries do not arrive in
//!   lock step; with shaping, the `min_retry`/`max_retry` of the site where
//!   recipients were deferred instead (`site_retry.rs`). Mail older than `maximal_queue_lifetime` is not retried: its
//!   live recipients are returned as expired.
//! - **Flush** (`sendmail -q`) makes every deferred message due now and
//!   forgets dead destinations.

mod admin;
mod campaign_jobs;
mod chain;
mod config;
mod dead_site;
mod delays;
mod events;
mod feedback;
#[cfg(test)]
mod feedback_tests;
mod metrics;
mod notify;
mod outgoing;
mod plan;
mod results;
mod retry;
mod reuse;
#[cfg(test)]
mod reuse_tests;
mod shaping;
mod site_retry;
#[cfg(test)]
mod site_retry_tests;
mod site_tls;
mod status;
#[cfg(test)]
mod tests;
mod worker;

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::campaigns::CampaignCache;
use super::slots::DestinationSlots;
use crate::bounce::FailedRecipient;
use crate::deliver::{Connector, HopPolicy, RcptResult, Router};
use crate::model::fast_hash::FastMap;
use crate::model::{Nexthop, QueueId, RcptStatus};
use crate::queue::Store;

use chain::Relay;
pub use config::QmgrConfig;
use results::Timing;
use status::{set_final_status, write_statuses};

/// A destination: a next hop, and the sending source (`[[source]]`) its
/// connections use, if a pool chose one. Limits, queues and cached
/// connections are kept per destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct DestKey {
    /// Where the mail goes.
    pub(super) hop: Nexthop,
    /// The source it is sent from (`None`: the system's choice).
    pub(super) source: Option<Arc<str>>,
}

impl std::fmt::Display for DestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(src) => write!(f, "{} (source {src})", self.hop),
            None => write!(f, "{}", self.hop),
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
    Send(crate::deliver::session::Outgoing),
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
    /// Woken (once per job) when jobs are added, for lingering workers.
    ready: Rc<Notify>,
    active: usize,
    /// Workers of `active` without a job: just started, or lingering for
    /// the next one. A new job goes to one of them before `kick` starts
    /// another worker (and opens another connection) for it.
    job_waits: Rc<std::cell::Cell<usize>>,
    window: f64,
    /// Slow start's first phase: the window grows by one per successful
    /// transaction (doubling every round) until the destination first
    /// fails; then by 1/window (Postfix's feedback). See `feedback.rs`.
    ramping: bool,
    dead_until: Option<(Instant, String)>,
    /// TLS level, rate limit and credentials for this hop.
    policy: Rc<HopPolicy>,
    /// Its site once shaping named it (see `shaping.rs`).
    site: Option<crate::shape::SiteKey>,
    /// A fingerprint of its MX hosts and port, known with the site (the
    /// dead-site cache's key, `dead_site.rs`).
    hosts: Option<u64>,
    /// Its recipient domain, for domain rules (MX destinations only).
    domain: Option<String>,
    /// The site's MX lookup is under way.
    resolving: bool,
    /// When jobs last arrived (idle destinations are forgotten).
    last_used: Instant,
    /// The site's merged limits, and when they were merged.
    limits: RefCell<Option<(Instant, Rc<shaping::SiteLimits>)>>,
    /// Its site's metrics, once looked up (see `metrics.rs`).
    counters: RefCell<Option<Arc<crate::obs::metrics::SiteCounters>>>,
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
    /// The retry delays of the sites where recipients were deferred in
    /// this pass (`site_retry.rs`); `None`: the configuration's.
    retry_bounds: Option<site_retry::RetryBounds>,
}

struct State {
    store: Rc<RefCell<Store>>,
    cfg: Rc<QmgrConfig>,
    router: Router,
    connector: Rc<Connector>,
    dests: FastMap<DestKey, Dest>,
    /// Cached connections, per site and source (`reuse.rs`).
    idle: FastMap<reuse::PoolKey, Vec<reuse::IdleConn>>,
    /// Destinations refused a connection slot, per pool, in the order
    /// they asked: offered the next connection of their pool that comes
    /// free (`reuse.rs`).
    waiting: FastMap<reuse::PoolKey, VecDeque<DestKey>>,
    /// The destinations in `waiting`.
    waiting_set: crate::model::fast_hash::FastSet<DestKey>,
    /// Sites (with their hosts) found dead, until when and why
    /// (`dead_site.rs`).
    dead_sites: FastMap<dead_site::DeadKey, (Instant, String)>,
    msgs: FastMap<QueueId, MsgState>,
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
                dests: FastMap::default(),
                idle: FastMap::default(),
                waiting: FastMap::default(),
                waiting_set: Default::default(),
                dead_sites: FastMap::default(),
                msgs: FastMap::default(),
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

    /// The name of `hop`'s site, as events and metrics report it.
    fn site_name(&self, hop: &DestKey) -> Rc<str> {
        let st = self.state.borrow();
        match st.dests.get(hop).and_then(|d| d.site.as_ref()) {
            Some(site) => Rc::from(site.as_str()),
            None => Rc::from(hop.hop.to_string()),
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
    /// Returns the campaign results journals written since the last
    /// commit, which the commit fdatasyncs before the segments (their
    /// lines must be on disk no later than the status bytes they explain).
    pub fn before_commit(&self) -> Vec<(Arc<std::fs::File>, std::path::PathBuf)> {
        let mut st = self.state.borrow_mut();
        let journals = st.campaigns.take_unsynced_results();
        let statuses = std::mem::take(&mut st.after_commit);
        let notices = std::mem::take(&mut st.new_notices);
        st.committing.0.extend(statuses);
        st.committing.1.extend(notices);
        journals
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
        st.forget_dead_sites(true);
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

    /// Records the results of a job to `hop`: status bytes, defer records, log lines;
    /// schedules a retry or logs removal once the message has no job out.
    fn finish_job(
        &self,
        hop: &DestKey,
        job: &Job,
        results: &[RcptResult],
        relay: Option<&Relay>,
        timing: &Timing,
    ) {
        let mut st = self.state.borrow_mut();
        let cfg = st.cfg.clone();
        let bounds = st.hop_retry_bounds(hop);
        st.record_results(job, results, relay, timing, bounds);
        st.job_done(job.id, &cfg);
        drop(st);
        self.dirty_wake.notify_one();
        self.timer_wake.notify_one();
    }
}

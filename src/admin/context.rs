//! What the handlers share: [`AdminContext`], handed over by the daemon's
//! wiring, plus the tokens, the limits and the counts of requests in
//! progress made from `[http]`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::cleanup::intake::SiteParams;
use crate::compose::TokenKey;
use crate::config::HttpConfig;
use crate::daemon::campaign_intake::CampaignIntake;
use crate::queue::suppress::SharedSuppressions;

use super::auth::Tokens;

/// Campaigns being accepted at once (as on `campaign.sock`).
const MAX_CAMPAIGNS_AT_ONCE: usize = 4;

/// Messages being queued at once (as on `submit.sock`).
const MAX_MESSAGES_AT_ONCE: usize = 64;

/// Largest body of `POST /u/TOKEN` (RFC 8058's is 26 bytes).
pub(super) const MAX_UNSUBSCRIBE_BODY: u64 = 4096;

/// Where single messages go: the signing stage before the pickup ring,
/// with cleanup's settings.
#[derive(Clone)]
pub struct MessageIntake {
    /// The signing stage, which passes them to the ring the shards drain.
    pub ring: Arc<crate::sign::SignStage>,
    /// Set when the daemon stops taking mail.
    pub closed: Arc<AtomicBool>,
    /// `myhostname`, `myorigin`, `message_size_limit`.
    pub site: SiteParams,
}

/// What the daemon hands the HTTP server.
#[derive(Clone)]
pub struct AdminContext {
    /// Takes campaigns and pause, resume, cancel.
    pub intake: Arc<CampaignIntake>,
    /// The campaign token key (`spool_dir/campaign.key`).
    pub key: TokenKey,
    /// The suppression list; `None` when it could not be read at start
    /// (unsubscribes then answer 503).
    pub suppressions: Option<SharedSuppressions>,
    /// The spool's `campaigns/` (state files and results journals).
    pub campaigns_dir: PathBuf,
    /// Single messages.
    pub messages: MessageIntake,
    /// The shards' counters, for `GET /metrics`.
    pub metrics: Arc<crate::obs::metrics::Metrics>,
    /// Queue commands to the shards (`None`: not available here).
    pub queue: Option<crate::sched::queue_admin::QueueAdmin>,
    /// `spool_dir/queue`, read by the queue listings.
    pub queue_root: PathBuf,
    /// Where `unsubscribed` events go (a disabled sink without `[events]`).
    pub events: crate::obs::events::EventSink,
}

/// The handlers' state.
pub(super) struct Shared {
    pub(super) ctx: AdminContext,
    pub(super) tokens: Tokens,
    pub(super) max_body: u64,
    pub(super) recipients_dir: Option<PathBuf>,
    pub(super) campaigns_at_once: Semaphore,
    pub(super) messages_at_once: Semaphore,
    /// The daemon's user: the uid of messages taken over HTTP.
    pub(super) uid: u32,
    /// Numbers the messages' acknowledgements.
    pub(super) next_ack: AtomicU64,
    /// Campaign results tallied for the metrics, between scrapes.
    pub(super) campaign_tallies: super::campaign_gauges::Tallies,
}

impl Shared {
    /// The state for `ctx` under `config`.
    pub(super) fn new(ctx: AdminContext, config: &HttpConfig) -> Shared {
        Shared {
            ctx,
            tokens: Tokens::new(&config.tokens),
            max_body: config.max_body,
            recipients_dir: config.recipients_dir.clone(),
            campaigns_at_once: Semaphore::new(MAX_CAMPAIGNS_AT_ONCE),
            messages_at_once: Semaphore::new(MAX_MESSAGES_AT_ONCE),
            uid: rustix::process::geteuid().as_raw(),
            next_ack: AtomicU64::new(0),
            campaign_tallies: Default::default(),
        }
    }
}

/// The state as the router holds it.
pub(super) type State = Arc<Shared>;

/// A context over a spool in `spool`, for tests.
#[cfg(test)]
pub(super) fn for_tests(spool: &std::path::Path) -> AdminContext {
    let campaigns = spool.join("campaigns");
    std::fs::create_dir_all(&campaigns).unwrap();
    let registry = crate::queue::campaign_state::CampaignRegistry::load(&campaigns).unwrap();
    let ring = Arc::new(crate::sched::PickupRing::new(4));
    let closed = Arc::new(AtomicBool::new(false));
    AdminContext {
        intake: Arc::new(crate::daemon::campaign_intake::CampaignIntake::new(
            Arc::clone(&ring),
            Arc::clone(&closed),
            registry,
        )),
        key: TokenKey::new(&[3u8; 32]),
        suppressions: Some(SharedSuppressions::new(
            crate::queue::suppress::SuppressionList::open(spool).unwrap(),
        )),
        campaigns_dir: campaigns,
        events: crate::obs::events::EventSink::disabled(),
        metrics: Arc::new(crate::obs::metrics::Metrics::new(
            crate::obs::metrics::DaemonInfo {
                io_backend: "epoll".into(),
                shards: 1,
                version: "test",
            },
        )),
        queue: None,
        queue_root: spool.join("queue"),
        messages: MessageIntake {
            ring: Arc::new(crate::sign::SignStage::start(
                ring,
                Arc::new(crate::sign::CurrentKeys::default()),
                1,
            )),
            closed,
            site: crate::cleanup::intake::SiteParams {
                myhostname: "mx.example.org".into(),
                origin: "example.org".into(),
                message_size_limit: 1 << 20,
            },
        },
    }
}

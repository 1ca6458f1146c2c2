//! The queue manager's settings: the global limits of the configuration,
//! split over the shards.

use std::time::Duration;

use super::super::campaigns::CampaignSettings;
use super::super::notices::NoticeConfig;
use crate::config::Config;
use crate::deliver::DeliveryConfig;

/// Scheduling settings of one shard.
#[derive(Clone, Debug)]
pub struct QmgrConfig {
    /// This shard's index (connection slots remember which shard was
    /// refused one).
    pub shard: usize,
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
    /// Where delivery events go (`[events]`; a disabled sink without it).
    pub events: crate::obs::events::EventSink,
    /// Traffic shaping, shared by every shard (`None`: per-destination
    /// limits of the configuration only, as in unit tests).
    pub shaper: Option<std::sync::Arc<crate::shape::Shaper>>,
}

impl QmgrConfig {
    /// One shard's settings: global limits split over `shards`.
    pub fn from_config(c: &Config, shards: usize, delivery: DeliveryConfig) -> QmgrConfig {
        let share = |n: usize| n.div_ceil(shards.max(1)).max(1);
        QmgrConfig {
            shard: 0,
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
                keys: None,
            },
            delivery,
            campaigns: None,
            metrics: None,
            events: crate::obs::events::EventSink::disabled(),
            shaper: None,
        }
    }
}

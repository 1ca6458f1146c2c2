//! Retry delays per site: a deferred recipient's message is retried after
//! the backoff of its destination's site (the shaping rules' `min_retry`
//! and `max_retry`, which default to `minimal_backoff_time` and
//! `maximal_backoff_time`), not only the configuration's.
//!
//! A message is retried as a whole. When its recipients were deferred at
//! several sites in one pass, the shortest `min_retry` and the shortest
//! `max_retry` among them apply, so no recipient waits longer than its
//! site's rules allow.

use std::time::Duration;

use super::{DestKey, QmgrConfig, State};
use crate::deliver::{RcptResult, ResultClass};
use crate::model::QueueId;

/// The shortest and longest retry delay of one pass of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RetryBounds {
    /// Delay after the first attempt.
    pub(super) min: Duration,
    /// Cap of the doubled delays.
    pub(super) max: Duration,
}

impl RetryBounds {
    /// The configuration's `minimal_backoff_time` and
    /// `maximal_backoff_time`.
    pub(super) fn global(cfg: &QmgrConfig) -> RetryBounds {
        RetryBounds {
            min: cfg.min_backoff,
            max: cfg.max_backoff,
        }
    }

    /// The shorter of each bound of `self` and `other`.
    pub(super) fn tighter(self, other: RetryBounds) -> RetryBounds {
        RetryBounds {
            min: self.min.min(other.min),
            max: self.max.min(other.max),
        }
    }
}

impl State {
    /// The retry bounds of mail deferred at `hop`: its site's effective
    /// `min_retry` / `max_retry` once shaping knows the site, else the
    /// configuration's.
    pub(super) fn hop_retry_bounds(&self, hop: &DestKey) -> RetryBounds {
        match self.site_limits(hop) {
            Some(l) => RetryBounds {
                min: l.effective.limits.min_retry.value,
                max: l.effective.limits.max_retry.value,
            },
            None => RetryBounds::global(&self.cfg),
        }
    }

    /// Folds `bounds` into message `id`'s bounds for this pass when
    /// `results` include a deferral.
    pub(super) fn note_retry_bounds(
        &mut self,
        id: QueueId,
        results: &[RcptResult],
        bounds: RetryBounds,
    ) {
        if !results.iter().any(|r| r.class == ResultClass::Deferred) {
            return;
        }
        if let Some(m) = self.msgs.get_mut(&id) {
            m.retry_bounds = Some(m.retry_bounds.map_or(bounds, |b| b.tighter(bounds)));
        }
    }

    /// Message `id`'s retry bounds for this pass (the configuration's when
    /// no deferral noted any), forgetting them for the next pass.
    pub(super) fn take_retry_bounds(&mut self, id: QueueId) -> RetryBounds {
        let global = RetryBounds::global(&self.cfg);
        self.msgs
            .get_mut(&id)
            .and_then(|m| m.retry_bounds.take())
            .unwrap_or(global)
    }
}

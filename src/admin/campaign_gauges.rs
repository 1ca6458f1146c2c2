//! Campaign progress for `GET /metrics`: per campaign, recipients by
//! status (from its results journals, read incrementally with
//! [`ResultTally`]), the fraction done and its state.
//!
//! Cardinality stays bounded: of the newest [`CANDIDATES`] campaigns that
//! are not cancelled and are at most [`MAX_AGE`] old, the unfinished ones
//! and those that changed within [`RECENT`] are shown, at most
//! [`SHOWN`] of them, newest first.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::obs::metrics::{escape, header};
use crate::queue::campaign_results::{ResultCounts, ResultTally};
use crate::queue::campaign_state::{CampaignInfo, CampaignState};

use super::context::Shared;

/// Campaigns looked at (their journals are tallied).
const CANDIDATES: usize = 100;
/// Campaigns shown.
const SHOWN: usize = 20;
/// Campaigns older than this are not looked at.
const MAX_AGE: Duration = Duration::from_secs(30 * 86_400);
/// A finished campaign stays shown this long after its last change.
const RECENT: Duration = Duration::from_secs(3600);

/// A campaign's tally and when its counts last changed.
#[derive(Debug, Default)]
pub(super) struct Tracked {
    tally: ResultTally,
    counts: ResultCounts,
    changed: Option<Instant>,
}

/// The tallies kept between scrapes, by campaign ID.
pub(super) type Tallies = std::sync::Mutex<HashMap<u64, Tracked>>;

/// Writes the campaign gauges (blocking: reads journals).
pub(super) fn render(shared: &Shared, out: &mut String) {
    let now_micros = crate::model::now_micros();
    let mut candidates: Vec<CampaignInfo> = shared
        .ctx
        .intake
        .registry()
        .list()
        .into_iter()
        .filter(|c| c.state != CampaignState::Cancelled)
        .filter(|c| now_micros.saturating_sub(c.created_micros) <= MAX_AGE.as_micros() as u64)
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.id));
    candidates.truncate(CANDIDATES);
    // A panic while tallying leaves counts that the next update corrects.
    let mut tallies = shared
        .campaign_tallies
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    tallies.retain(|id, _| candidates.iter().any(|c| c.id == *id));
    let now = Instant::now();
    let mut shown = Vec::new();
    for c in &candidates {
        let t = tallies.entry(c.id).or_default();
        match t.tally.update(&shared.ctx.campaigns_dir, c.id) {
            Ok(counts) => {
                if counts != t.counts || t.changed.is_none() {
                    t.counts = counts;
                    t.changed = Some(now);
                }
            }
            Err(e) => {
                tracing::debug!(target: "http", "campaign {} results: {e}", c.id);
                continue;
            }
        }
        let finished = t.counts.done() >= c.recipients;
        let recent = t
            .changed
            .is_some_and(|at| now.saturating_duration_since(at) < RECENT);
        if !finished || recent {
            shown.push((c, t.counts.clone()));
        }
        if shown.len() == SHOWN {
            break;
        }
    }
    drop(tallies);
    write(out, &shown);
}

fn write(out: &mut String, shown: &[(&CampaignInfo, ResultCounts)]) {
    header(
        out,
        "ringmail_campaign_info",
        "gauge",
        "A campaign shown in the progress gauges: its name and state as labels; always 1.",
    );
    for (c, _) in shown {
        let _ = writeln!(
            out,
            "ringmail_campaign_info{{campaign=\"{}\",name=\"{}\",state=\"{}\"}} 1",
            c.id,
            escape(&c.name),
            c.state.as_str()
        );
    }
    header(
        out,
        "ringmail_campaign_recipients",
        "gauge",
        "A campaign's recipients by the status of their last attempt (pending: not tried yet).",
    );
    for (c, n) in shown {
        let pending = c.recipients.saturating_sub(n.seen());
        for (status, v) in [
            ("sent", n.sent),
            ("deferred", n.deferred),
            ("bounced", n.bounced),
            ("expired", n.expired),
            ("suppressed", n.suppressed),
            ("cancelled", n.cancelled),
            ("pending", pending),
        ] {
            let _ = writeln!(
                out,
                "ringmail_campaign_recipients{{campaign=\"{}\",status=\"{status}\"}} {v}",
                c.id
            );
        }
    }
    header(
        out,
        "ringmail_campaign_progress_ratio",
        "gauge",
        "A campaign's recipients with a final outcome, as a fraction of its recipients.",
    );
    for (c, n) in shown {
        let ratio = if c.recipients == 0 {
            1.0
        } else {
            (n.done() as f64 / c.recipients as f64).min(1.0)
        };
        let _ = writeln!(
            out,
            "ringmail_campaign_progress_ratio{{campaign=\"{}\"}} {ratio:.4}",
            c.id
        );
    }
}

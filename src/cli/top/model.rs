//! What `ringmail top` shows, from the admin API's answers: counters read
//! from the `/metrics` text exposition turned into rates over the refresh
//! interval, the queue by domain, campaigns with progress and the most
//! frequent deferral reasons. No I/O here: `mod.rs` fetches, this parses
//! and keeps the history.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;

/// How much rate history the sparklines keep, in seconds.
pub const HISTORY_SECS: u64 = 120;

/// Above this many queued messages the deferral reasons are not counted
/// (reading the whole listing each refresh would cost the daemon too much).
pub const REASONS_MAX_QUEUE: u64 = 10_000;

/// How many deferral reasons are shown.
pub const TOP_REASONS: usize = 5;

/// An answer that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A JSON answer did not have the expected shape.
    #[error("{what}: {source}")]
    Json {
        /// Which answer.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The counters and gauges `top` reads from one `/metrics` scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Messages queued, every source.
    pub received: f64,
    /// Recipients delivered.
    pub delivered: f64,
    /// Deferrals (every one counts).
    pub deferred: f64,
    /// Recipients bounced or expired.
    pub bounced: f64,
    /// Messages in the queue now.
    pub queued: f64,
}

impl Counters {
    /// Reads the text exposition: `ringmail_messages_received_total` summed
    /// over its sources, `ringmail_recipients_total` by outcome
    /// (`bounced` and `expired` together), `ringmail_queue_messages`.
    pub fn parse(text: &str) -> Counters {
        let mut c = Counters::default();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            match name {
                "ringmail_messages_received_total" => c.received += value,
                "ringmail_queue_messages" => c.queued = value,
                "ringmail_recipients_total" => match label(labels, "outcome") {
                    Some("delivered") => c.delivered += value,
                    Some("deferred") => c.deferred += value,
                    Some("bounced" | "expired") => c.bounced += value,
                    _ => {}
                },
                _ => {}
            }
        }
        c
    }
}

/// The value of label `key` in `a="x",b="y"`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// One rate series: per-second values, newest last.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Per-second rates, newest last, at most [`Rates::capacity`] of them.
    pub history: VecDeque<f64>,
    /// The counter's latest value.
    pub total: f64,
}

impl Series {
    /// The latest rate (0 before two samples).
    pub fn now(&self) -> f64 {
        self.history.back().copied().unwrap_or(0.0)
    }

    /// The history scaled for a sparkline (thousandths per second, so a
    /// rate below one still shows).
    pub fn sparkline(&self) -> Vec<u64> {
        self.history
            .iter()
            .map(|r| (r * 1000.0).round() as u64)
            .collect()
    }
}

/// The four rates with their history.
#[derive(Clone, Debug)]
pub struct Rates {
    /// Messages received per second.
    pub received: Series,
    /// Recipients delivered per second.
    pub delivered: Series,
    /// Deferrals per second.
    pub deferred: Series,
    /// Recipients bounced or expired per second.
    pub bounced: Series,
    /// Messages in the queue at the last sample.
    pub queued: f64,
    /// The previous sample and when it was taken (milliseconds).
    last: Option<(Counters, u64)>,
    /// How many points each history keeps.
    capacity: usize,
}

impl Rates {
    /// Empty, keeping [`HISTORY_SECS`] of history at one sample per
    /// `interval_ms`.
    pub fn new(interval_ms: u64) -> Rates {
        let capacity = (HISTORY_SECS * 1000 / interval_ms.max(1)).clamp(2, 2000) as usize;
        Rates {
            received: Series::default(),
            delivered: Series::default(),
            deferred: Series::default(),
            bounced: Series::default(),
            queued: 0.0,
            last: None,
            capacity,
        }
    }

    /// Adds the sample `c` taken at `at_ms`: a rate per series from the
    /// previous sample (a counter that went down, as after a restart,
    /// counts from zero).
    pub fn add(&mut self, c: Counters, at_ms: u64) {
        self.queued = c.queued;
        let capacity = self.capacity;
        let pairs = [
            (&mut self.received, c.received),
            (&mut self.delivered, c.delivered),
            (&mut self.deferred, c.deferred),
            (&mut self.bounced, c.bounced),
        ];
        let prev = self.last.map(|(p, t)| {
            (
                [p.received, p.delivered, p.deferred, p.bounced],
                at_ms.saturating_sub(t),
            )
        });
        for (i, (series, value)) in pairs.into_iter().enumerate() {
            series.total = value;
            if let Some((before, elapsed)) = prev {
                if elapsed == 0 {
                    continue;
                }
                let delta = if value >= before[i] {
                    value - before[i]
                } else {
                    value
                };
                series.history.push_back(delta * 1000.0 / elapsed as f64);
                while series.history.len() > capacity {
                    series.history.pop_front();
                }
            }
        }
        self.last = Some((c, at_ms));
    }
}

/// One row of the queue panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRow {
    /// The recipient domain (`TOTAL` first).
    pub domain: String,
    /// The site the domain's mail goes to, once the API reports one.
    pub site: Option<String>,
    /// Live recipients.
    pub total: u64,
    /// Live recipients older than the first age bucket (5 minutes).
    pub older: u64,
}

/// `/api/v1/queue/shape` as read here.
#[derive(Deserialize)]
struct ShapeJson {
    rows: Vec<ShapeRowJson>,
}

/// One row of `/api/v1/queue/shape`.
#[derive(Deserialize)]
struct ShapeRowJson {
    domain: String,
    total: u64,
    #[serde(default)]
    buckets: Vec<u64>,
    #[serde(default)]
    site: Option<String>,
}

/// The rows of a `/api/v1/queue/shape` answer.
pub fn queue_rows(body: &[u8]) -> Result<Vec<QueueRow>, ModelError> {
    let shape: ShapeJson = serde_json::from_slice(body).map_err(|source| ModelError::Json {
        what: "/api/v1/queue/shape",
        source,
    })?;
    Ok(shape
        .rows
        .into_iter()
        .map(|r| QueueRow {
            older: r.buckets.iter().skip(1).sum(),
            domain: r.domain,
            site: r.site,
            total: r.total,
        })
        .collect())
}

/// A campaign in the list (`GET /api/v1/campaigns`): its ID, for asking
/// for its progress.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct CampaignSummary {
    /// Its ID.
    pub id: u64,
}

/// `GET /api/v1/campaigns`.
#[derive(Deserialize)]
struct CampaignList {
    campaigns: Vec<CampaignSummary>,
}

/// The campaigns of a `/api/v1/campaigns` answer.
pub fn campaign_list(body: &[u8]) -> Result<Vec<CampaignSummary>, ModelError> {
    let list: CampaignList = serde_json::from_slice(body).map_err(|source| ModelError::Json {
        what: "/api/v1/campaigns",
        source,
    })?;
    Ok(list.campaigns)
}

/// A campaign's progress (`GET /api/v1/campaigns/ID`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Campaign {
    /// Its ID.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// `running`, `paused`, `done` ...
    pub state: String,
    /// Recipients accepted.
    pub recipients: u64,
    /// Delivered.
    #[serde(default)]
    pub sent: u64,
    /// Deferred at least once and not yet done.
    #[serde(default)]
    pub deferred: u64,
    /// Bounced.
    #[serde(default)]
    pub bounced: u64,
    /// Not yet tried.
    #[serde(default)]
    pub pending: u64,
}

impl Campaign {
    /// Parses `GET /api/v1/campaigns/ID`.
    pub fn parse(body: &[u8]) -> Result<Campaign, ModelError> {
        serde_json::from_slice(body).map_err(|source| ModelError::Json {
            what: "/api/v1/campaigns/ID",
            source,
        })
    }

    /// The share of recipients no longer pending, 0 to 1.
    pub fn progress(&self) -> f64 {
        if self.recipients == 0 {
            return 1.0;
        }
        let done = self.recipients.saturating_sub(self.pending);
        (done as f64 / self.recipients as f64).clamp(0.0, 1.0)
    }
}

/// The deferral reasons panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reasons {
    /// Not read yet.
    Unknown,
    /// The queue is too large to count them each refresh.
    Skipped {
        /// Messages in the queue.
        queued: u64,
    },
    /// The most frequent reasons with their counts, most frequent first.
    Top(Vec<(String, u64)>),
}

/// A recipient in `GET /api/v1/queue`.
#[derive(Deserialize)]
struct ListedRecipient {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// A message in `GET /api/v1/queue`.
#[derive(Deserialize)]
struct ListedMessage {
    recipients: Vec<ListedRecipient>,
}

/// The [`TOP_REASONS`] most frequent deferral reasons of deferred
/// recipients in a `/api/v1/queue` answer (ties by reason).
pub fn top_reasons(body: &[u8]) -> Result<Vec<(String, u64)>, ModelError> {
    let messages: Vec<ListedMessage> =
        serde_json::from_slice(body).map_err(|source| ModelError::Json {
            what: "/api/v1/queue",
            source,
        })?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for r in messages.into_iter().flat_map(|m| m.recipients) {
        if r.status != "deferred" {
            continue;
        }
        if let Some(reason) = r.reason {
            *counts.entry(reason).or_default() += 1;
        }
    }
    let mut top: Vec<(String, u64)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(TOP_REASONS);
    Ok(top)
}

/// Everything on the screen.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The API's base URL.
    pub url: String,
    /// The rates.
    pub rates: Rates,
    /// The queue by domain, `TOTAL` first.
    pub queue: Vec<QueueRow>,
    /// Campaigns, newest first.
    pub campaigns: Vec<Campaign>,
    /// Campaigns not shown for lack of room.
    pub campaigns_more: usize,
    /// The deferral reasons.
    pub reasons: Reasons,
    /// The last fetch error, if the last refresh failed.
    pub error: Option<String>,
    /// Refreshing is paused.
    pub paused: bool,
    /// When the last refresh was, local time `HH:MM:SS`.
    pub at: String,
}

impl Snapshot {
    /// Nothing read yet.
    pub fn new(url: String, interval_ms: u64) -> Snapshot {
        Snapshot {
            url,
            rates: Rates::new(interval_ms),
            queue: Vec::new(),
            campaigns: Vec::new(),
            campaigns_more: 0,
            reasons: Reasons::Unknown,
            error: None,
            paused: false,
            at: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP ringmail_messages_received_total Messages queued durably.
# TYPE ringmail_messages_received_total counter
ringmail_messages_received_total{source=\"smtp\"} 7
ringmail_messages_received_total{source=\"pickup\"} 3
ringmail_recipients_total{outcome=\"delivered\"} 12
ringmail_recipients_total{outcome=\"deferred\"} 4
ringmail_recipients_total{outcome=\"bounced\"} 1
ringmail_recipients_total{outcome=\"expired\"} 2
ringmail_queue_messages 5
ringmail_commit_seconds_bucket{le=\"+Inf\"} 3
";

    #[test]
    fn counters_are_read_from_the_exposition() {
        let c = Counters::parse(METRICS);
        assert_eq!(
            c,
            Counters {
                received: 10.0,
                delivered: 12.0,
                deferred: 4.0,
                bounced: 3.0,
                queued: 5.0,
            }
        );
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let mut r = Rates::new(1000);
        let c = Counters::parse(METRICS);
        r.add(c, 10_000);
        assert!(r.delivered.history.is_empty());
        assert_eq!(r.delivered.total, 12.0);
        let later = Counters {
            delivered: 22.0,
            ..c
        };
        r.add(later, 12_000);
        assert_eq!(r.delivered.now(), 5.0);
        assert_eq!(r.received.now(), 0.0);
        assert_eq!(r.delivered.sparkline(), vec![5000]);
        // A restart (counters back to small numbers) counts from zero.
        r.add(
            Counters {
                delivered: 2.0,
                ..c
            },
            13_000,
        );
        assert_eq!(r.delivered.now(), 2.0);
    }

    #[test]
    fn history_is_bounded() {
        let mut r = Rates::new(60_000);
        for i in 0..10 {
            r.add(Counters::default(), i * 60_000);
        }
        assert_eq!(r.received.history.len(), 2);
    }

    #[test]
    fn queue_rows_come_from_the_shape() {
        let body = br#"{"bucket_minutes":[5,10],"rows":[
            {"domain":"TOTAL","total":9,"buckets":[4,3,2]},
            {"domain":"example.com","total":9,"buckets":[4,3,2]}]}"#;
        let rows = queue_rows(body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].domain, "example.com");
        assert_eq!(
            (rows[1].total, rows[1].older, rows[1].site.clone()),
            (9, 5, None)
        );
        assert!(queue_rows(b"[]").is_err());
    }

    #[test]
    fn campaigns_and_progress() {
        let list = campaign_list(
            br#"{"campaigns":[{"id":3,"name":"n","state":"running","created":1,
            "recipients":10,"refused":0,"duplicates":0}]}"#,
        )
        .unwrap();
        assert_eq!(list[0].id, 3);
        let c = Campaign::parse(
            br#"{"id":3,"name":"n","state":"running","recipients":10,"sent":6,
            "deferred":1,"bounced":1,"pending":2,"done":false}"#,
        )
        .unwrap();
        assert_eq!(c.progress(), 0.8);
    }

    #[test]
    fn reasons_are_counted_for_deferred_recipients_only() {
        let body = br#"[
          {"recipients":[{"status":"deferred","reason":"busy"},
                         {"status":"deferred","reason":"busy"},
                         {"status":"held","reason":"full"},
                         {"status":"pending","reason":null}]},
          {"recipients":[{"status":"deferred","reason":"refused"}]}]"#;
        assert_eq!(
            top_reasons(body).unwrap(),
            vec![("busy".to_string(), 2), ("refused".to_string(), 1)]
        );
    }
}

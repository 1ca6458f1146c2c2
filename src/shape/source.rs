//! Sending sources and pools, sans-IO: which pool a message uses, which
//! source of the pool sends it (smooth weighted round-robin, as nginx
//! balances upstreams), and a source's warm-up caps.
//!
//! **Warm-up.** A new address earns reputation slowly, so a source may
//! carry a schedule of daily caps per site that grows over days, counted
//! from `warmup_start` (day 1) in UTC: on day `d` the cap is the `per_site`
//! of the last step whose `day ≤ d`; after the last step's day has passed
//! there is no cap. Over the cap, mail waits for the next UTC midnight; it
//! is not a failure. Before `warmup_start` the first step's cap applies.

use std::sync::Arc;

use chrono::NaiveDate;

use super::rules::LimitSet;
use super::units::parse_rate;
use crate::config::{domain_matches, PoolConfig, PoolRuleConfig, SourceConfig};

const DAY: i64 = 86_400;

/// A compiled `[[source]]`.
#[derive(Clone, Debug)]
pub struct Source {
    /// Its name.
    pub name: Arc<str>,
    /// The local address to bind.
    pub address: std::net::IpAddr,
    /// The EHLO name (empty: `myhostname`).
    pub ehlo_name: String,
    /// Its own limits (a layer between `[default]` and site rules).
    pub limits: LimitSet,
    /// Its warm-up schedule, if any.
    pub warmup: Option<WarmupSchedule>,
}

impl Source {
    /// Compiles a checked `[[source]]` (see `config::shaping::check`).
    pub fn from_config(c: &SourceConfig) -> Result<Source, String> {
        let message_rate = c
            .message_rate
            .as_deref()
            .map(|r| parse_rate(r).map(Some))
            .transpose()?;
        let warmup = match &c.warmup_start {
            Some(start) => {
                let date = NaiveDate::parse_from_str(start, "%Y-%m-%d")
                    .map_err(|_| format!("warmup_start {start:?}: expected YYYY-MM-DD"))?;
                Some(WarmupSchedule::new(
                    date,
                    c.warmup.iter().map(|s| (s.day, s.per_site)).collect(),
                )?)
            }
            None => None,
        };
        Ok(Source {
            name: Arc::from(c.name.as_str()),
            address: c.address,
            ehlo_name: c.ehlo_name.clone(),
            limits: LimitSet {
                max_connections: c.max_connections,
                message_rate,
                ..LimitSet::default()
            },
            warmup,
        })
    }
}

/// A warm-up schedule: daily caps per site from a start date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmupSchedule {
    /// Unix time of 00:00 UTC on day 1.
    start: i64,
    /// (day, per_site), days increasing from ≥ 1.
    steps: Vec<(u32, u32)>,
}

/// What the warm-up counter says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmupDecision {
    /// Below today's cap (or warm-up over): send.
    Send,
    /// Today's cap is used up: wait until this Unix time (next 00:00 UTC).
    WaitUntil(i64),
}

impl WarmupSchedule {
    /// A schedule starting on `start` (UTC) with `(day, per_site)` steps.
    pub fn new(start: NaiveDate, steps: Vec<(u32, u32)>) -> Result<WarmupSchedule, String> {
        if steps.is_empty() || steps[0].0 < 1 || steps.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err("warm-up days must start at 1 or later and increase".into());
        }
        let start = start
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .ok_or("bad warm-up start date")?;
        Ok(WarmupSchedule { start, steps })
    }

    /// The day number of Unix time `now` (1 on the start day; ≤ 0 before).
    pub fn day(&self, now: i64) -> i64 {
        (now - self.start).div_euclid(DAY) + 1
    }

    /// Today's cap per site at `now`, `None` when warm-up is over.
    pub fn cap(&self, now: i64) -> Option<u32> {
        let day = self.day(now);
        let (last_day, _) = *self.steps.last()?;
        if day > i64::from(last_day) {
            return None;
        }
        let step = self
            .steps
            .iter()
            .rev()
            .find(|(d, _)| i64::from(*d) <= day)
            .unwrap_or(&self.steps[0]);
        Some(step.1)
    }
}

/// Messages sent today by one source to one site, against its schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WarmupCounter {
    /// The UTC day number (Unix days) the count is for.
    day: i64,
    sent: u32,
}

impl WarmupCounter {
    /// May one more message be sent at Unix time `now`?
    pub fn check(&mut self, schedule: &WarmupSchedule, now: i64) -> WarmupDecision {
        self.roll(now);
        match schedule.cap(now) {
            Some(cap) if self.sent >= cap => {
                WarmupDecision::WaitUntil((now.div_euclid(DAY) + 1) * DAY)
            }
            _ => WarmupDecision::Send,
        }
    }

    /// Counts one message sent at `now`.
    pub fn record(&mut self, now: i64) {
        self.roll(now);
        self.sent = self.sent.saturating_add(1);
    }

    /// True when the counter is for a day before `now`'s (may be dropped).
    pub fn is_stale(&self, now: i64) -> bool {
        self.day < now.div_euclid(DAY)
    }

    fn roll(&mut self, now: i64) {
        let today = now.div_euclid(DAY);
        if today != self.day {
            self.day = today;
            self.sent = 0;
        }
    }
}

/// Smooth weighted round-robin (nginx's): each pick adds every member's
/// weight to its current value, takes the largest, and subtracts the total
/// from it. Weights 5, 1, 1 give `a a b a c a a`, not `a a a a a b c`.
#[derive(Clone, Debug)]
pub struct SmoothWrr {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl SmoothWrr {
    /// A balancer over members with these weights (each ≥ 1).
    pub fn new(weights: &[u32]) -> SmoothWrr {
        SmoothWrr {
            weights: weights.iter().map(|&w| i64::from(w.max(1))).collect(),
            current: vec![0; weights.len()],
        }
    }

    /// The index of the next member, `None` when there are none.
    pub fn pick(&mut self) -> Option<usize> {
        let total: i64 = self.weights.iter().sum();
        let mut best: Option<usize> = None;
        for (i, w) in self.weights.iter().enumerate() {
            self.current[i] += w;
            if best.map_or(true, |b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

/// A compiled `[[pool]]`.
#[derive(Clone, Debug)]
pub struct Pool {
    /// Its name.
    pub name: Arc<str>,
    /// Indexes into the table's sources.
    pub members: Vec<usize>,
    /// One weight per member.
    pub weights: Vec<u32>,
}

/// What a pool rule can look at in a message.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageFacts<'a> {
    /// The envelope sender's domain (empty for the null sender).
    pub sender_domain: &'a str,
    /// The campaign the message belongs to.
    pub campaign: Option<&'a str>,
    /// Header fields (name, value) of the message.
    pub headers: &'a [(&'a str, &'a str)],
}

/// A compiled `[[pool_rule]]`.
#[derive(Clone, Debug)]
pub struct PoolRule {
    /// Index of the pool.
    pub pool: usize,
    /// The config entry.
    pub when: PoolRuleConfig,
}

impl PoolRule {
    /// True when every condition given holds for `m`.
    pub fn matches(&self, m: &MessageFacts<'_>) -> bool {
        let w = &self.when;
        w.sender_domain
            .as_deref()
            .map_or(true, |p| domain_matches(p, m.sender_domain))
            && w.campaign
                .as_deref()
                .map_or(true, |c| m.campaign == Some(c))
            && w.header.as_deref().map_or(true, |name| {
                let want = w.header_value.as_deref().unwrap_or("").trim();
                m.headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.trim() == want)
            })
    }
}

/// Compiles checked pools and rules against `sources` (by name).
pub fn compile_pools(
    sources: &[Source],
    pools: &[PoolConfig],
    rules: &[PoolRuleConfig],
) -> Result<(Vec<Pool>, Vec<PoolRule>), String> {
    let mut out = Vec::new();
    for p in pools {
        let members = p
            .sources
            .iter()
            .map(|n| {
                sources
                    .iter()
                    .position(|s| s.name.as_ref() == n)
                    .ok_or_else(|| format!("pool {:?}: no [[source]] named {n:?}", p.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let weights = if p.weights.is_empty() {
            vec![1; members.len()]
        } else {
            p.weights.clone()
        };
        out.push(Pool {
            name: Arc::from(p.name.as_str()),
            members,
            weights,
        });
    }
    let rules = rules
        .iter()
        .map(|r| {
            out.iter()
                .position(|p| p.name.as_ref() == r.pool)
                .map(|pool| PoolRule {
                    pool,
                    when: r.clone(),
                })
                .ok_or_else(|| format!("pool_rule: no [[pool]] named {:?}", r.pool))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((out, rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn unix(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn smooth_wrr_interleaves_and_keeps_proportions() {
        let mut w = SmoothWrr::new(&[5, 1, 1]);
        let seq: Vec<usize> = (0..7).filter_map(|_| w.pick()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        let mut w = SmoothWrr::new(&[3, 1]);
        let mut counts = [0; 2];
        for _ in 0..4000 {
            counts[w.pick().unwrap()] += 1;
        }
        assert_eq!(counts, [3000, 1000]);
        assert_eq!(SmoothWrr::new(&[]).pick(), None);
    }

    #[test]
    fn warmup_caps_follow_the_schedule_and_utc_days() {
        let s = WarmupSchedule::new(date("2026-12-01"), vec![(1, 2), (3, 5), (10, 100)]).unwrap();
        assert_eq!(
            s.cap(unix("2026-11-30T12:00:00Z")),
            Some(2),
            "before the start: day 1"
        );
        assert_eq!(s.day(unix("2026-12-01T00:00:00Z")), 1);
        assert_eq!(s.cap(unix("2026-12-02T23:59:59Z")), Some(2));
        assert_eq!(s.cap(unix("2026-12-03T00:00:00Z")), Some(5));
        assert_eq!(s.cap(unix("2026-12-10T10:00:00Z")), Some(100));
        assert_eq!(s.cap(unix("2026-12-11T00:00:00Z")), None, "warm-up over");
        let mut c = WarmupCounter::default();
        let t = unix("2026-12-01T23:00:00Z");
        for _ in 0..2 {
            assert_eq!(c.check(&s, t), WarmupDecision::Send);
            c.record(t);
        }
        let midnight = unix("2026-12-02T00:00:00Z");
        assert_eq!(c.check(&s, t), WarmupDecision::WaitUntil(midnight));
        assert!(!c.is_stale(t) && c.is_stale(midnight));
        // One second before midnight: still waiting; at midnight: a new day.
        assert_eq!(
            c.check(&s, midnight - 1),
            WarmupDecision::WaitUntil(midnight)
        );
        assert_eq!(c.check(&s, midnight), WarmupDecision::Send);
        assert!(WarmupSchedule::new(date("2026-12-01"), vec![(2, 1), (2, 3)]).is_err());
        assert!(WarmupSchedule::new(date("2026-12-01"), vec![(0, 1)]).is_err());
    }

    #[test]
    fn pool_rules_match_sender_campaign_and_header() {
        let rule = |c: PoolRuleConfig| PoolRule { pool: 0, when: c };
        let by_domain = rule(PoolRuleConfig {
            pool: "p".into(),
            sender_domain: Some(".news.example".into()),
            ..PoolRuleConfig::default()
        });
        let m = MessageFacts {
            sender_domain: "Bounce.News.Example",
            ..MessageFacts::default()
        };
        assert!(by_domain.matches(&m));
        assert!(!by_domain.matches(&MessageFacts::default()));
        let by_header = rule(PoolRuleConfig {
            pool: "p".into(),
            header: Some("X-Pool".into()),
            header_value: Some("bulk".into()),
            ..PoolRuleConfig::default()
        });
        let headers = [("x-pool", " bulk ")];
        assert!(by_header.matches(&MessageFacts {
            headers: &headers,
            ..MessageFacts::default()
        }));
        let by_campaign = rule(PoolRuleConfig {
            pool: "p".into(),
            campaign: Some("spring".into()),
            sender_domain: Some("a.example".into()),
            ..PoolRuleConfig::default()
        });
        let spring = MessageFacts {
            sender_domain: "a.example",
            campaign: Some("spring"),
            ..MessageFacts::default()
        };
        assert!(by_campaign.matches(&spring));
        assert!(!by_campaign.matches(&MessageFacts {
            campaign: Some("fall"),
            ..spring
        }));
    }
}

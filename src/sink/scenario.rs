//! Provider scenarios for `ringmail bench --scenario FILE` and
//! `ringmail sink --scenario FILE`: several simulated mailbox providers,
//! each a sink listener on its own loopback address with its own reply
//! latency, failure rates, connection cap and message rate limit (answered
//! with that provider's throttle reply), many recipient domains mapped to
//! them through a loopback DNS zone, and a recipient mix.
//!
//! The file is TOML (see `tools/scenarios/providers.toml` and
//! docs/BENCHMARKS.md, "Provider scenario"):
//!
//! ```toml
//! messages = 20000
//! size = 2048
//!
//! [sender]                   # how the bench configures ringmail
//! group_by_provider = true   # one [[route]] per domain to the provider's MX host, with its rate
//! concurrency = 20           # default_destination_concurrency_limit
//!
//! [[provider]]
//! name = "gmail"
//! address = "127.0.0.2"
//! mx = ["gmail-smtp-in.l.google.com"]
//! domains = ["gmail.com", "googlemail.com"]
//! generated_domains = 200    # gmail-1.example ... with the same MX
//! share = 0.66
//! latency_ms = 20
//! tempfail = 0.01
//! permfail = 0.002
//! max_connections = 40
//! rate_per_second = 400
//! throttle_reply = "421 4.7.28 ..."
//! ```
//!
//! [`Scenario::limit`] computes what the caps allow: the scenario's own
//! limit, of which a run's throughput is a share.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::{Faults, Latency, RateLimit, SinkConfig};
use super::dns::{DnsError, Zone};
use super::server::{start, SinkHandle};
use super::SinkError;

/// Replies the sink's latency applies to per message: with pipelining and
/// chaining the final dot's reply and the next MAIL, RCPT and DATA come in
/// one write (four replies); without chaining MAIL, RCPT and DATA (three)
/// then the dot (one). Either way four reply delays per message and
/// connection.
pub const REPLIES_PER_MESSAGE: f64 = 4.0;

/// Errors of scenario files.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("bad scenario: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range or inconsistent.
    #[error("bad scenario: {0}")]
    Invalid(String),
    /// A name does not fit in DNS.
    #[error("bad scenario: {0}")]
    Dns(#[from] DnsError),
    /// A provider's sink could not be started.
    #[error("cannot start the sink of provider {provider}: {source}")]
    Sink {
        /// The provider.
        provider: String,
        /// The underlying error.
        source: SinkError,
    },
}

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Messages to send (one recipient each).
    pub messages: usize,
    /// Approximate size of each message in bytes.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Seed of the sinks' fault draws.
    #[serde(default)]
    pub seed: u64,
    /// How the sending MTA is configured.
    #[serde(default)]
    pub sender: Sender,
    /// The providers.
    #[serde(rename = "provider")]
    pub providers: Vec<Provider>,
}

fn default_size() -> usize {
    2048
}

/// How the bench configures the sending MTA (ringmail, and Postfix in
/// `tools/compare_scenario.sh`), as a bulk sender would.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sender {
    /// Route every domain of a provider to the provider's first MX host
    /// (`[[route]]` with `nexthop = "[host]:port"` and the provider's
    /// `rate`), so the provider's domains share one destination with one
    /// concurrency limit and one rate limit: what KumoMTA calls a site and
    /// Postfix gets with `transport_maps`. Off: each recipient domain is
    /// its own destination (MX lookup), knowing nothing of the caps.
    pub group_by_provider: bool,
    /// `default_destination_concurrency_limit` (per destination).
    pub concurrency: usize,
    /// Extra top-level configuration keys for ringmail, appended before
    /// the generated tables.
    pub extra: String,
    /// ringmail's shaping rules (`shaping.toml` text, docs/SHAPING.md):
    /// written beside the daemon's configuration as its `shaping_file`.
    pub shaping: String,
}

impl Default for Sender {
    fn default() -> Sender {
        Sender {
            group_by_provider: true,
            concurrency: 20,
            extra: String::new(),
            shaping: String::new(),
        }
    }
}

/// One simulated provider: a sink listener and the domains it receives for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// A short name for the report (`gmail`).
    pub name: String,
    /// The listener's address, in 127.0.0.0/8 (the port is the bench's).
    pub address: Ipv4Addr,
    /// MX host names every domain of the provider points at (preference 5,
    /// 10, ...), each with an A record to `address`.
    #[serde(default)]
    pub mx: Vec<String>,
    /// Recipient domains.
    #[serde(default)]
    pub domains: Vec<String>,
    /// This many more domains, `NAME-1.example` ..., with the same MX hosts.
    #[serde(default)]
    pub generated_domains: usize,
    /// Each domain gets its own MX host `mx.DOMAIN` (on `address`) instead
    /// of `mx`: many small receivers, each with the caps below, simulated
    /// by one listener that enforces their sum (caps × domains).
    #[serde(default)]
    pub own_mx: bool,
    /// Share of the recipients (shares are normalised to sum to 1).
    pub share: f64,
    /// Delay before each reply, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Probability of `451 4.3.0` at RCPT (deferred, retried).
    #[serde(default)]
    pub tempfail: f64,
    /// Probability of `550 5.1.1` at RCPT (bounced).
    #[serde(default)]
    pub permfail: f64,
    /// Most connections served at once; more are refused at the greeting.
    pub max_connections: usize,
    /// Most transactions per second (a token bucket checked at MAIL).
    pub rate_per_second: f64,
    /// The bucket's size; default one second's worth.
    #[serde(default)]
    pub burst: Option<f64>,
    /// The reply to a MAIL over the rate (`421 4.7.28 ...`).
    pub throttle_reply: String,
    /// The reply to a connection over the cap; default
    /// `421 4.7.0 <host> too many connections`.
    #[serde(default)]
    pub connection_reply: Option<String>,
}

impl Provider {
    /// Every recipient domain: `domains`, then the generated ones.
    pub fn all_domains(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        all.extend((1..=self.generated_domains).map(|n| format!("{}-{n}.example", self.name)));
        all
    }

    /// The MX hosts of `domain`.
    pub fn mx_hosts(&self, domain: &str) -> Vec<String> {
        if self.own_mx {
            vec![format!("mx.{domain}")]
        } else {
            self.mx.iter().map(|h| h.to_ascii_lowercase()).collect()
        }
    }

    /// The caps the listener enforces, `(connections, messages per
    /// second)`: the provider's, or with `own_mx` their sum over its
    /// domains.
    pub fn listener_caps(&self) -> (usize, f64) {
        if self.own_mx {
            let n = self.all_domains().len().max(1);
            (self.max_connections * n, self.rate_per_second * n as f64)
        } else {
            (self.max_connections, self.rate_per_second)
        }
    }

    /// The sink configuration of this provider's listener on `port`.
    pub fn sink_config(&self, port: u16, seed: u64) -> SinkConfig {
        let (connections, rate) = self.listener_caps();
        let burst = match self.burst {
            Some(b) if self.own_mx => b * self.all_domains().len().max(1) as f64,
            Some(b) => b,
            None => rate.max(1.0),
        };
        SinkConfig {
            listen: SocketAddr::new(IpAddr::V4(self.address), port),
            hostname: self
                .mx
                .first()
                .cloned()
                .unwrap_or_else(|| format!("{}.sink", self.name)),
            max_connections: Some(connections),
            connection_cap_reply: self.connection_reply.clone(),
            rate_limit: Some(RateLimit {
                per_second: rate,
                burst,
                reply: self.throttle_reply.clone(),
            }),
            faults: Faults {
                rcpt_tempfail: self.tempfail,
                rcpt_permfail: self.permfail,
                ..Faults::default()
            },
            latency: if self.latency_ms == 0 {
                Latency::None
            } else {
                Latency::Fixed(Duration::from_millis(self.latency_ms))
            },
            seed: Some(seed),
            threads: 1,
            ..SinkConfig::default()
        }
    }

    /// Transactions per second this provider takes at most: its rate, or
    /// what `max_connections` connections can do at `latency_ms` per reply
    /// if that is less.
    pub fn capacity(&self) -> f64 {
        let (connections, rate) = self.listener_caps();
        let by_connections = if self.latency_ms == 0 {
            f64::INFINITY
        } else {
            connections as f64 / (REPLIES_PER_MESSAGE * self.latency_ms as f64 / 1000.0)
        };
        rate.min(by_connections)
    }
}

/// One provider's part of [`Limit`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderLimit {
    /// Messages for this provider.
    pub messages: usize,
    /// Transactions expected: each tempfail costs one more.
    pub transactions: f64,
    /// Transactions per second the caps allow ([`Provider::capacity`]).
    pub capacity: f64,
    /// Seconds this provider needs at least.
    pub seconds: f64,
}

/// What the providers' caps allow in total.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limit {
    /// Per provider, in the scenario's order.
    pub providers: Vec<ProviderLimit>,
    /// The least time the whole scenario can take: the slowest provider's.
    pub seconds: f64,
    /// Messages per second at that time: the scenario's limit.
    pub messages_per_second: f64,
}

/// A recipient of the scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Which provider receives it.
    pub provider: usize,
    /// `uN@domain`, N the message index.
    pub address: String,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text)
    }

    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.messages == 0 {
            return bad("messages must be at least 1".into());
        }
        if self.providers.is_empty() {
            return bad("no [[provider]]".into());
        }
        if self.sender.concurrency == 0 {
            return bad("sender.concurrency must be at least 1".into());
        }
        let mut names = HashSet::new();
        let mut domains = HashSet::new();
        for p in &self.providers {
            let at = |m: &str| ScenarioError::Invalid(format!("provider {:?}: {m}", p.name));
            if p.name.is_empty()
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(at("the name must be letters, digits and '-'"));
            }
            if !names.insert(p.name.clone()) {
                return Err(at("the name is used twice"));
            }
            if !p.address.is_loopback() {
                return Err(at("the address must be in 127.0.0.0/8"));
            }
            if !p.own_mx && p.mx.is_empty() {
                return Err(at("needs mx hosts (or own_mx = true)"));
            }
            if !(p.share > 0.0 && p.share.is_finite()) {
                return Err(at("share must be above 0"));
            }
            let probability = |x: f64| (0.0..1.0).contains(&x);
            if !probability(p.tempfail)
                || !probability(p.permfail)
                || p.tempfail + p.permfail >= 1.0
            {
                return Err(at("tempfail and permfail must be in 0..1 and sum below 1"));
            }
            if p.max_connections == 0 {
                return Err(at("max_connections must be at least 1"));
            }
            if !(p.rate_per_second > 0.0 && p.rate_per_second.is_finite()) {
                return Err(at("rate_per_second must be above 0"));
            }
            let all = p.all_domains();
            if all.is_empty() {
                return Err(at("no domains"));
            }
            for d in all {
                if !domains.insert(d.clone()) {
                    return Err(at(&format!("domain {d} belongs to two providers")));
                }
            }
            p.sink_config(0, 0)
                .validate()
                .map_err(|e| at(&e.to_string()))?;
        }
        let mut addresses = HashSet::new();
        for p in &self.providers {
            if !addresses.insert(p.address) {
                return bad(format!("address {} is used twice", p.address));
            }
        }
        Ok(())
    }

    /// Messages per provider: shares normalised, rounded by largest
    /// remainder so they add up to `messages`.
    pub fn counts(&self) -> Vec<usize> {
        let total: f64 = self.providers.iter().map(|p| p.share).sum();
        let exact: Vec<f64> = self
            .providers
            .iter()
            .map(|p| p.share / total * self.messages as f64)
            .collect();
        let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
        let mut left = self.messages - counts.iter().sum::<usize>();
        let mut order: Vec<usize> = (0..counts.len()).collect();
        order.sort_by(|&a, &b| {
            let ra = exact[a] - exact[a].floor();
            let rb = exact[b] - exact[b].floor();
            rb.total_cmp(&ra).then(a.cmp(&b))
        });
        for i in order {
            if left == 0 {
                break;
            }
            counts[i] += 1;
            left -= 1;
        }
        counts
    }

    /// Every recipient, message index order: providers interleaved
    /// evenly (each provider's messages spread over the whole run), each
    /// provider's domains taken in turn.
    pub fn recipients(&self) -> Vec<Recipient> {
        let counts = self.counts();
        let domains: Vec<Vec<String>> = self.providers.iter().map(Provider::all_domains).collect();
        let mut given = vec![0usize; counts.len()];
        let n = self.messages as f64;
        (0..self.messages)
            .map(|i| {
                // The provider furthest behind its even share so far.
                let due = |p: usize| counts[p] as f64 * (i + 1) as f64 / n - given[p] as f64;
                let p = (0..counts.len())
                    .filter(|&p| given[p] < counts[p])
                    .max_by(|&a, &b| due(a).total_cmp(&due(b)).then(b.cmp(&a)))
                    .unwrap_or(0);
                let d = &domains[p][given[p] % domains[p].len()];
                given[p] += 1;
                Recipient {
                    provider: p,
                    address: format!("u{i}@{d}"),
                }
            })
            .collect()
    }

    /// The provider of each recipient domain.
    pub fn domain_index(&self) -> HashMap<String, usize> {
        self.providers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.all_domains().into_iter().map(move |d| (d, i)))
            .collect()
    }

    /// What the caps allow: per provider, its transactions (messages,
    /// plus one more per expected tempfail) over its capacity; the
    /// scenario takes at least as long as its slowest provider.
    pub fn limit(&self) -> Limit {
        let providers: Vec<ProviderLimit> = self
            .providers
            .iter()
            .zip(self.counts())
            .map(|(p, messages)| {
                let transactions = messages as f64 / (1.0 - p.tempfail);
                let capacity = p.capacity();
                ProviderLimit {
                    messages,
                    transactions,
                    capacity,
                    seconds: transactions / capacity,
                }
            })
            .collect();
        let seconds = providers.iter().map(|p| p.seconds).fold(0.0, f64::max);
        Limit {
            messages_per_second: self.messages as f64 / seconds.max(1e-9),
            providers,
            seconds,
        }
    }

    /// The DNS zone: each domain's MX records, each MX host's A record.
    pub fn zone(&self) -> Result<Zone, ScenarioError> {
        let mut zone = Zone::new();
        for p in &self.providers {
            for d in p.all_domains() {
                for (i, host) in p.mx_hosts(&d).iter().enumerate() {
                    let pref = u16::try_from(5 + 5 * i).unwrap_or(u16::MAX);
                    zone.mx(&d, pref, host)?;
                    zone.a(host, p.address)?;
                }
            }
        }
        Ok(zone)
    }

    /// Starts one sink per provider, all on the same port of their own
    /// addresses (`port` 0: the first free one found); returns them in
    /// the scenario's order and the port.
    pub fn start_sinks(&self, port: u16) -> Result<(Vec<SinkHandle>, u16), ScenarioError> {
        let tries = if port == 0 { 20 } else { 1 };
        let mut last = None;
        for _ in 0..tries {
            match self.try_start_sinks(port) {
                Ok(started) => return Ok(started),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ScenarioError::Invalid("no provider".into())))
    }

    fn try_start_sinks(&self, port: u16) -> Result<(Vec<SinkHandle>, u16), ScenarioError> {
        let mut sinks: Vec<SinkHandle> = Vec::new();
        let mut port = port;
        for (i, p) in self.providers.iter().enumerate() {
            let seed = self.seed.wrapping_add(i as u64);
            let handle =
                start(p.sink_config(port, seed)).map_err(|source| ScenarioError::Sink {
                    provider: p.name.clone(),
                    source,
                })?;
            port = handle.local_addr.port();
            sinks.push(handle);
        }
        Ok((sinks, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"
messages = 300

[[provider]]
name = "big"
address = "127.0.0.2"
mx = ["mx1.big.test", "mx2.big.test"]
domains = ["big.test"]
generated_domains = 3
share = 2
latency_ms = 10
tempfail = 0.5
max_connections = 4
rate_per_second = 50
throttle_reply = "421 4.7.28 slow down"

[[provider]]
name = "small"
address = "127.0.0.3"
own_mx = true
domains = ["a.test", "b.test"]
share = 1
max_connections = 2
rate_per_second = 10
throttle_reply = "451 4.7.650 rate limited"
"#;

    #[test]
    fn parses_and_counts() {
        let s = Scenario::parse(TINY).unwrap();
        assert_eq!(s.size, 2048);
        assert!(s.sender.group_by_provider);
        assert_eq!(s.counts(), vec![200, 100]);
        assert_eq!(s.providers[0].all_domains().len(), 4);
        assert_eq!(s.providers[0].all_domains()[1], "big-1.example");
        let r = s.recipients();
        assert_eq!(r.len(), 300);
        assert_eq!(r.iter().filter(|x| x.provider == 0).count(), 200);
        // Interleaved: every stretch of 30 has both.
        assert!(r[..30].iter().any(|x| x.provider == 1));
        assert!(r[270..].iter().any(|x| x.provider == 0));
        assert!(r[7].address.starts_with("u7@"));
        let index = s.domain_index();
        assert_eq!(index["a.test"], 1);
        assert_eq!(index["big-3.example"], 0);
    }

    #[test]
    fn rounding_adds_up() {
        let mut s = Scenario::parse(TINY).unwrap();
        for n in [1, 2, 7, 1001] {
            s.messages = n;
            assert_eq!(s.counts().iter().sum::<usize>(), n);
            assert_eq!(s.recipients().len(), n);
        }
    }

    #[test]
    fn limit_is_the_slowest_provider() {
        let s = Scenario::parse(TINY).unwrap();
        let l = s.limit();
        // big: 200 messages, half tempfail: 400 transactions; capacity
        // min(50/s, 4 connections / (4 × 10 ms) = 100/s) = 50/s: 8 s.
        assert_eq!(l.providers[0].capacity, 50.0);
        assert!((l.providers[0].seconds - 8.0).abs() < 1e-9);
        // small: 100 at 2 domains × 10/s (no latency): 5 s.
        assert!((l.providers[1].seconds - 5.0).abs() < 1e-9);
        assert!((l.seconds - 8.0).abs() < 1e-9);
        assert!((l.messages_per_second - 37.5).abs() < 1e-9);
        // Latency binds when connections are few.
        let mut p = s.providers[0].clone();
        p.latency_ms = 100;
        assert!((p.capacity() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn zone_has_mx_and_a() {
        let s = Scenario::parse(TINY).unwrap();
        let z = s.zone().unwrap();
        // big: 4 domains + 2 hosts; small: 2 domains + 2 hosts.
        assert_eq!(z.len(), 10);
    }

    #[test]
    fn refuses_bad_scenarios() {
        let bad = [
            TINY.replace("127.0.0.3", "10.0.0.3"),
            TINY.replace("127.0.0.3", "127.0.0.2"),
            TINY.replace("tempfail = 0.5", "tempfail = 1.5"),
            TINY.replace("max_connections = 2", "max_connections = 0"),
            TINY.replace("rate_per_second = 10", "rate_per_second = 0"),
            TINY.replace("451 4.7.650", "250"),
            TINY.replace("\"a.test\"", "\"big.test\""),
            TINY.replace("name = \"small\"", "name = \"big\""),
            TINY.replace("messages = 300", "messages = 0"),
            TINY.replace("share = 1", "share = 1\nunknown = 2"),
        ];
        for (i, text) in bad.iter().enumerate() {
            assert!(Scenario::parse(text).is_err(), "case {i} parsed");
        }
    }

    #[test]
    fn sink_config_carries_the_caps() {
        let s = Scenario::parse(TINY).unwrap();
        let c = s.providers[0].sink_config(2525, 1);
        assert_eq!(c.listen, "127.0.0.2:2525".parse().unwrap());
        assert_eq!(c.max_connections, Some(4));
        let limit = c.rate_limit.unwrap();
        assert_eq!((limit.per_second, limit.burst), (50.0, 50.0));
        assert_eq!(c.latency, Latency::Fixed(Duration::from_millis(10)));
        // own_mx: the listener enforces the caps of both domains together.
        let c = s.providers[1].sink_config(2525, 1);
        assert_eq!(c.max_connections, Some(4));
        let limit = c.rate_limit.unwrap();
        assert_eq!((limit.per_second, limit.burst), (20.0, 20.0));
        assert_eq!(c.latency, Latency::None);
    }
}

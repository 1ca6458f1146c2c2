//! Effective limits for one site, domain and source, each value with the
//! rule that set it ("provenance"), for the scheduler and for
//! `ringmail shaping show`.

use std::fmt;
use std::time::Duration;

use super::rules::{LimitSet, Rule, RuleOrigin};
use super::units::{duration_text, rate_text};
use crate::config::{Config, Rate, TlsSecurityLevel};

/// Which layer set a value, and where that layer comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// `site google`, `domain comcast.net`, `default`, `source ip-a`,
    /// `ringmail.toml`, `automation`.
    pub layer: String,
    /// `shipped default: <reference>`, `/etc/ringmail/shaping.toml:12`,
    /// `` `default_destination_concurrency_limit` ``.
    pub detail: String,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.layer, self.detail)
    }
}

impl Provenance {
    /// The provenance of the values `rule` sets.
    pub fn of_rule(rule: &Rule) -> Provenance {
        let mut layer = rule.label();
        if !rule.sources.is_empty() {
            layer.push_str(&format!(" for source {}", rule.sources.join(",")));
        }
        let detail = match (&rule.origin, &rule.reference) {
            (RuleOrigin::Shipped, Some(r)) => format!("shipped default: {r}"),
            (RuleOrigin::Shipped, None) => "shipped default".to_string(),
            (RuleOrigin::File { path, line }, None) => format!("{}:{line}", path.display()),
            (RuleOrigin::File { path, line }, Some(r)) => {
                format!("{}:{line}: {r}", path.display())
            }
        };
        Provenance { layer, detail }
    }
}

/// A value and who set it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Who set it.
    pub from: Provenance,
}

/// The limits of one site (and domain, and source).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Most simultaneous connections, over all shards.
    pub max_connections: Sourced<u32>,
    /// Connections to start with (never above `max_connections`).
    pub initial_connections: Sourced<u32>,
    /// Most transactions per connection; 0: no limit.
    pub max_deliveries_per_connection: Sourced<u32>,
    /// Messages per interval; `None`: unlimited.
    pub message_rate: Sourced<Option<Rate>>,
    /// New connections per interval; `None`: unlimited.
    pub connection_rate: Sourced<Option<Rate>>,
    /// Most recipients per transaction.
    pub max_recipients: Sourced<u32>,
    /// Shortest retry delay.
    pub min_retry: Sourced<Duration>,
    /// Longest retry delay (never below `min_retry`).
    pub max_retry: Sourced<Duration>,
    /// TLS level.
    pub tls: Sourced<TlsSecurityLevel>,
}

impl Limits {
    /// The bottom layer: ringmail.toml's destination keys.
    pub fn base(config: &Config) -> Limits {
        let key = |k: &str| Provenance {
            layer: "ringmail.toml".to_string(),
            detail: format!("`{k}`"),
        };
        let rate = if config.default_destination_rate_limit.is_empty() {
            None
        } else {
            Rate::parse(&config.default_destination_rate_limit).ok()
        };
        Limits {
            max_connections: Sourced {
                value: to_u32(config.default_destination_concurrency_limit),
                from: key("default_destination_concurrency_limit"),
            },
            initial_connections: Sourced {
                value: to_u32(config.initial_destination_concurrency),
                from: key("initial_destination_concurrency"),
            },
            max_deliveries_per_connection: Sourced {
                value: config.smtp_connection_reuse_count_limit,
                from: key("smtp_connection_reuse_count_limit"),
            },
            message_rate: Sourced {
                value: rate,
                from: key("default_destination_rate_limit"),
            },
            connection_rate: Sourced {
                value: None,
                from: Provenance {
                    layer: "built-in".to_string(),
                    detail: "no limit".to_string(),
                },
            },
            max_recipients: Sourced {
                value: to_u32(config.default_destination_recipient_limit),
                from: key("default_destination_recipient_limit"),
            },
            min_retry: Sourced {
                value: Duration::from_secs(config.minimal_backoff_time),
                from: key("minimal_backoff_time"),
            },
            max_retry: Sourced {
                value: Duration::from_secs(config.maximal_backoff_time),
                from: key("maximal_backoff_time"),
            },
            tls: Sourced {
                value: config.smtp_tls_security_level,
                from: key("smtp_tls_security_level"),
            },
        }
    }

    /// Overwrites every field `set` gives, recording `from`.
    pub fn apply(&mut self, set: &LimitSet, from: &Provenance) {
        fn put<T: Clone>(field: &mut Sourced<T>, v: &Option<T>, from: &Provenance) {
            if let Some(v) = v {
                *field = Sourced {
                    value: v.clone(),
                    from: from.clone(),
                };
            }
        }
        put(&mut self.max_connections, &set.max_connections, from);
        put(
            &mut self.initial_connections,
            &set.initial_connections,
            from,
        );
        put(
            &mut self.max_deliveries_per_connection,
            &set.max_deliveries_per_connection,
            from,
        );
        put(&mut self.message_rate, &set.message_rate, from);
        put(&mut self.connection_rate, &set.connection_rate, from);
        put(&mut self.max_recipients, &set.max_recipients, from);
        put(&mut self.min_retry, &set.min_retry, from);
        put(&mut self.max_retry, &set.max_retry, from);
        put(&mut self.tls, &set.tls, from);
    }

    /// Makes the merged values consistent: `initial_connections` at most
    /// `max_connections`, `max_retry` at least `min_retry`.
    pub fn settle(&mut self) {
        if self.initial_connections.value > self.max_connections.value {
            self.initial_connections.value = self.max_connections.value;
            self.initial_connections
                .from
                .detail
                .push_str(" (capped by max_connections)");
        }
        if self.max_retry.value < self.min_retry.value {
            self.max_retry.value = self.min_retry.value;
            self.max_retry
                .from
                .detail
                .push_str(" (raised to min_retry)");
        }
    }

    /// Each field as `(name, printed value, provenance)`, in a fixed order.
    pub fn fields(&self) -> Vec<(&'static str, String, &Provenance)> {
        let rate = |r: &Option<Rate>| r.map_or_else(|| "unlimited".to_string(), rate_text);
        let deliveries = match self.max_deliveries_per_connection.value {
            0 => "unlimited".to_string(),
            n => n.to_string(),
        };
        vec![
            (
                "max_connections",
                self.max_connections.value.to_string(),
                &self.max_connections.from,
            ),
            (
                "initial_connections",
                self.initial_connections.value.to_string(),
                &self.initial_connections.from,
            ),
            (
                "max_deliveries_per_connection",
                deliveries,
                &self.max_deliveries_per_connection.from,
            ),
            (
                "message_rate",
                rate(&self.message_rate.value),
                &self.message_rate.from,
            ),
            (
                "connection_rate",
                rate(&self.connection_rate.value),
                &self.connection_rate.from,
            ),
            (
                "max_recipients",
                self.max_recipients.value.to_string(),
                &self.max_recipients.from,
            ),
            (
                "min_retry",
                duration_text(self.min_retry.value),
                &self.min_retry.from,
            ),
            (
                "max_retry",
                duration_text(self.max_retry.value),
                &self.max_retry.from,
            ),
            ("tls", self.tls.value.to_string(), &self.tls.from),
        ]
    }
}

/// Prints one `name = value   (provenance)` line per field.
impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value, from) in self.fields() {
            let left = format!("{name} = {value}");
            writeln!(f, "{left:<40} ({from})")?;
        }
        Ok(())
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

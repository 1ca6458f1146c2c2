//! Configuration for traffic shaping: the rules file, sending sources
//! (local addresses), pools of sources and how a message picks its pool.
//! Plain values with serde defaults; [`check`] validates them and
//! `crate::shape` compiles them.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One `[[source]]`: a local address to send from, with its own name and
/// limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The name pools and rules use.
    pub name: String,
    /// The local IP address outgoing connections bind to.
    pub address: IpAddr,
    /// The EHLO name for connections from this address (its PTR name);
    /// empty: `myhostname`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ehlo_name: String,
    /// Most connections from this source to any one site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Most messages per interval from this source to any one site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_rate: Option<String>,
    /// First day of the warm-up schedule, `YYYY-MM-DD` (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_start: Option<String>,
    /// Daily caps per site while warming up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmup: Vec<WarmupStepConfig>,
}

/// One step of a warm-up schedule: from `day` on, at most `per_site`
/// messages a day to each site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupStepConfig {
    /// 1 is `warmup_start`'s day.
    pub day: u32,
    /// Messages per UTC day to one site.
    pub per_site: u32,
}

/// One `[[pool]]`: sources used together, by weight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name; the pool named `default` is used when no
    /// `[[pool_rule]]` picks another.
    pub name: String,
    /// Names of `[[source]]`s.
    pub sources: Vec<String>,
    /// One weight per source (default: all 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<u32>,
}

/// One `[[pool_rule]]`: which messages go to `pool`. Every condition
/// given must hold; the first matching rule wins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRuleConfig {
    /// The pool.
    pub pool: String,
    /// The envelope sender's domain: `example.com` or `.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_domain: Option<String>,
    /// A header field's name (case-insensitive) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// ... and its value (exact, after trimming blanks); with `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_value: Option<String>,
    /// A campaign's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
}

/// Checks sources, pools and pool rules; the error names the table and
/// entry.
pub fn check(
    sources: &[SourceConfig],
    pools: &[PoolConfig],
    rules: &[PoolRuleConfig],
) -> Result<(), (&'static str, usize, String)> {
    let mut names = HashSet::new();
    for (i, s) in sources.iter().enumerate() {
        let bad = |m: String| ("source", i, format!("{:?}: {m}", s.name));
        if s.name.is_empty() || s.name.contains(char::is_whitespace) {
            return Err(("source", i, "needs a name without blanks".into()));
        }
        if !names.insert(s.name.as_str()) {
            return Err(bad("listed twice".into()));
        }
        if s.address.is_unspecified() {
            return Err(bad(format!("address {} is not one address", s.address)));
        }
        if s.ehlo_name.contains(char::is_whitespace) {
            return Err(bad("ehlo_name has blanks".into()));
        }
        if s.max_connections == Some(0) {
            return Err(bad("max_connections must be at least 1".into()));
        }
        if let Some(r) = &s.message_rate {
            super::Rate::parse(r).map_err(bad)?;
        }
        match (&s.warmup_start, s.warmup.is_empty()) {
            (None, false) => return Err(bad("warmup needs warmup_start".into())),
            (Some(_), true) => return Err(bad("warmup_start without warmup steps".into())),
            (Some(d), false) => {
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| bad(format!("warmup_start {d:?}: expected YYYY-MM-DD")))?;
            }
            (None, true) => {}
        }
        let mut last = 0;
        for step in &s.warmup {
            if step.day <= last {
                return Err(bad(format!(
                    "warmup days must start at 1 or later and increase (day {} after {last})",
                    step.day
                )));
            }
            if step.per_site == 0 {
                return Err(bad(format!(
                    "warmup day {}: per_site must be at least 1",
                    step.day
                )));
            }
            last = step.day;
        }
    }
    let mut pool_names = HashSet::new();
    for (i, p) in pools.iter().enumerate() {
        let bad = |m: String| ("pool", i, format!("{:?}: {m}", p.name));
        if p.name.is_empty() || !pool_names.insert(p.name.as_str()) {
            return Err(bad("needs a name, once".into()));
        }
        if p.sources.is_empty() {
            return Err(bad("needs at least one source".into()));
        }
        if let Some(unknown) = p.sources.iter().find(|s| !names.contains(s.as_str())) {
            return Err(bad(format!("no [[source]] named {unknown:?}")));
        }
        if !p.weights.is_empty() && p.weights.len() != p.sources.len() {
            return Err(bad(format!(
                "{} weights for {} sources",
                p.weights.len(),
                p.sources.len()
            )));
        }
        if p.weights.contains(&0) {
            return Err(bad("weights must be at least 1".into()));
        }
    }
    for (i, r) in rules.iter().enumerate() {
        let bad = |m: String| ("pool_rule", i, format!("pool {:?}: {m}", r.pool));
        if !pool_names.contains(r.pool.as_str()) {
            return Err(bad("no such [[pool]]".into()));
        }
        if r.sender_domain.is_none() && r.header.is_none() && r.campaign.is_none() {
            return Err(bad("give sender_domain, header or campaign".into()));
        }
        if r.header.is_some() != r.header_value.is_some() {
            return Err(bad("header and header_value go together".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string()
    }

    const TWO: &str = "[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\n\n\
                       [[source]]\nname = \"b\"\naddress = \"2001:db8::2\"\nehlo_name = \"b.example\"\n";

    #[test]
    fn sources_pools_and_rules_parse_and_print_back() {
        let text = format!(
            "shaping_file = \"/etc/ringmail/shaping.toml\"\n{TWO}\
             [[pool]]\nname = \"default\"\nsources = [\"a\", \"b\"]\nweights = [2, 1]\n\
             [[pool_rule]]\npool = \"default\"\ncampaign = \"spring\"\n"
        );
        let c = Config::parse(&text, Path::new("c.toml")).unwrap();
        assert_eq!(c.source.len(), 2);
        assert_eq!(c.pool[0].weights, [2, 1]);
        let again = Config::parse(&c.to_toml(), Path::new("printed")).unwrap();
        assert_eq!(again.source, c.source);
        assert_eq!(again.pool, c.pool);
        assert_eq!(again.pool_rule, c.pool_rule);
        assert_eq!(again.shaping_file, c.shaping_file);
        assert!(Config::default().source.is_empty() && Config::default().shaping_file.is_none());
    }

    #[test]
    fn bad_entries_name_their_own_line() {
        let e = err(&format!(
            "{TWO}\n[[source]]\nname = \"a\"\naddress = \"192.0.2.3\"\n"
        ));
        assert!(
            e.starts_with("c.toml:10: bad value for `source`: \"a\": listed twice"),
            "{e}"
        );
        let e = err("[[source]]\nname = \"a\"\naddress = \"0.0.0.0\"\n");
        assert!(e.contains("not one address"), "{e}");
        let e = err("[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nwarmup = [{ day = 1, per_site = 5 }]\n");
        assert!(e.contains("warmup needs warmup_start"), "{e}");
        let e = err(
            "[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nwarmup_start = \"2026-13-01\"\n\
             warmup = [{ day = 1, per_site = 5 }]\n",
        );
        assert!(e.contains("expected YYYY-MM-DD"), "{e}");
        let e = err(
            "[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nwarmup_start = \"2026-12-01\"\n\
             warmup = [{ day = 2, per_site = 5 }, { day = 2, per_site = 9 }]\n",
        );
        assert!(e.contains("increase"), "{e}");
        let e = err(&format!(
            "{TWO}[[pool]]\nname = \"p\"\nsources = [\"a\", \"c\"]\n"
        ));
        assert!(
            e.starts_with("c.toml:9:") && e.contains("no [[source]] named \"c\""),
            "{e}"
        );
        let e = err(&format!(
            "{TWO}[[pool]]\nname = \"p\"\nsources = [\"a\"]\nweights = [1, 2]\n"
        ));
        assert!(e.contains("2 weights for 1 sources"), "{e}");
        let e = err(&format!(
            "{TWO}[[pool]]\nname = \"p\"\nsources = [\"a\"]\n[[pool_rule]]\npool = \"q\"\ncampaign = \"x\"\n"
        ));
        assert!(
            e.starts_with("c.toml:12:") && e.contains("no such [[pool]]"),
            "{e}"
        );
        let e = err(&format!(
            "{TWO}[[pool]]\nname = \"p\"\nsources = [\"a\"]\n[[pool_rule]]\npool = \"p\"\n"
        ));
        assert!(e.contains("give sender_domain, header or campaign"), "{e}");
        let e = err("shaping_file = \"\"\n");
        assert!(e.contains("shaping_file"), "{e}");
    }
}

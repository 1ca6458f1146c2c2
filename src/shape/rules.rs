//! `shaping.toml`: the shaping rules, parsed and validated.
//!
//! ```toml
//! [default]                      # every site
//! max_connections = 10
//!
//! [[site]]                       # a site: MX roll-up by `mx` patterns
//! name = "google"
//! mx = ["*.google.com", "*.googlemail.com"]
//! reference = "https://support.google.com/mail/answer/81126"
//! max_connections = 5
//! max_deliveries_per_connection = 50
//!
//! [[site.automation]]            # belongs to the [[site]] above it
//! enhanced = "4.7.28"
//! action = "cut"
//! connections = 0.5
//! duration = "30m"
//!
//! [[domain]]                     # one or more recipient domains
//! domains = ["example.com", ".example.net"]
//! max_recipients = 10
//! ```
//!
//! Limit fields (all optional; an absent field leaves the value from the
//! layer below): `max_connections`, `initial_connections`,
//! `max_deliveries_per_connection` (0: no limit), `message_rate` and
//! `connection_rate` (`N/s`, `N/m`, `N/h` or `"unlimited"`),
//! `max_recipients`, `min_retry`, `max_retry` (`30s`, `15m`, `2h`, `1d`)
//! and `tls` (`smtp_tls_security_level` values). A `[[site]]` or
//! `[[domain]]` may carry `sources = [...]`: it then applies only to mail
//! sent from those `[[source]]`s, and beats the same kind of rule without.
//! `reference` says where the numbers come from; `ringmail shaping show`
//! prints it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::RegexBuilder;
use serde::Deserialize;

use super::feedback::{AutomationAction, AutomationRule, ReplyMatcher};
use super::site::{canonical, MxPattern};
use super::units::{parse_duration, parse_rate};
use crate::config::{Rate, TlsSecurityLevel};
use crate::proto::EnhancedCode;

/// The shipped rules (`src/shape/defaults.toml`).
pub const SHIPPED: &str = include_str!("defaults.toml");

/// Where a rule was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleOrigin {
    /// ringmail's shipped defaults.
    Shipped,
    /// A user's file and the line of the rule's table header.
    File {
        /// The file.
        path: Arc<Path>,
        /// 1-based line.
        line: usize,
    },
}

/// Errors in a shaping file; each names the file, the line and the field.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("{path}: cannot read shaping rules: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, an unknown field or a value of the wrong type.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file (`<shipped defaults>` for the built-in rules).
        path: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value of the right type that is not acceptable.
    #[error("{path}:{line}: {table} `{field}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the field (or of its table).
        line: usize,
        /// `[default]`, `[[site]] google`, `[[domain]] comcast.net`, ...
        table: String,
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
}

/// Limit values a rule sets; `None` leaves the layer below.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitSet {
    /// Most simultaneous connections to the site.
    pub max_connections: Option<u32>,
    /// Connections a site starts with before slow start raises them.
    pub initial_connections: Option<u32>,
    /// Most transactions over one connection; 0: no limit.
    pub max_deliveries_per_connection: Option<u32>,
    /// Messages per interval; `Some(None)`: unlimited.
    pub message_rate: Option<Option<Rate>>,
    /// New connections per interval; `Some(None)`: unlimited.
    pub connection_rate: Option<Option<Rate>>,
    /// Most recipients in one transaction.
    pub max_recipients: Option<u32>,
    /// Shortest retry delay.
    pub min_retry: Option<Duration>,
    /// Longest retry delay.
    pub max_retry: Option<Duration>,
    /// TLS level.
    pub tls: Option<TlsSecurityLevel>,
}

/// What a rule applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleScope {
    /// Every site (`[default]`).
    Default,
    /// A site by name; `mx` patterns (possibly none) name it from MX hosts.
    Site {
        /// The site's name.
        name: String,
        /// Patterns that put a domain into this site.
        mx: Vec<MxPattern>,
    },
    /// Recipient domains: `example.com` exactly, `.example.com` every
    /// subdomain.
    Domain {
        /// The patterns, lower case.
        domains: Vec<String>,
    },
}

/// One rule of a shaping file.
#[derive(Clone, Debug)]
pub struct Rule {
    /// What it applies to.
    pub scope: RuleScope,
    /// Only for these sending sources (empty: all).
    pub sources: Vec<String>,
    /// The values it sets.
    pub limits: LimitSet,
    /// Where the numbers come from (a URL, a note).
    pub reference: Option<String>,
    /// Where the rule was read.
    pub origin: RuleOrigin,
    /// Reply-driven automation (`[default]` and `[[site]]` only).
    pub automation: Vec<AutomationRule>,
}

impl Rule {
    /// `default`, `site google`, `domain comcast.net` (for provenance).
    pub fn label(&self) -> String {
        match &self.scope {
            RuleScope::Default => "default".to_string(),
            RuleScope::Site { name, .. } => format!("site {name}"),
            RuleScope::Domain { domains } => format!("domain {}", domains.join(",")),
        }
    }

    /// True when the rule applies to mail from `source`.
    pub fn applies_to_source(&self, source: Option<&str>) -> bool {
        self.sources.is_empty() || source.is_some_and(|s| self.sources.iter().any(|x| x == s))
    }
}

/// The rules of one file, in file order.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// `[default]`, `[[site]]` and `[[domain]]` share their fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    #[serde(default)]
    mx: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    sources: Vec<String>,
    reference: Option<String>,
    max_connections: Option<u32>,
    initial_connections: Option<u32>,
    max_deliveries_per_connection: Option<u32>,
    message_rate: Option<String>,
    connection_rate: Option<String>,
    max_recipients: Option<u32>,
    min_retry: Option<String>,
    max_retry: Option<String>,
    tls: Option<TlsSecurityLevel>,
    #[serde(default)]
    automation: Vec<RawAutomation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutomation {
    code: Option<u16>,
    enhanced: Option<String>,
    text: Option<String>,
    action: String,
    duration: String,
    connections: Option<f64>,
    message_rate: Option<f64>,
    restore_interval: Option<String>,
    restore_factor: Option<f64>,
    reference: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default: Option<RawRule>,
    #[serde(default)]
    site: Vec<RawRule>,
    #[serde(default)]
    domain: Vec<RawRule>,
}

/// Where in the text a table starts, for field line numbers.
struct Locator<'a> {
    text: &'a str,
    path: String,
}

impl Locator<'_> {
    /// 1-based line of the `index`-th header `[[key]]` (or `[key]`), or 0.
    fn header(&self, key: &str, index: usize) -> usize {
        let is_header = |l: &str| {
            let l = l.trim();
            let inner = l
                .strip_prefix("[[")
                .and_then(|r| r.strip_suffix("]]"))
                .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')));
            inner.is_some_and(|k| k.trim() == key)
        };
        self.text
            .lines()
            .enumerate()
            .filter(|(_, l)| is_header(l))
            .nth(index)
            .map_or(0, |(i, _)| i + 1)
    }

    /// 1-based line of `field = ` at or after line `from`, before the next
    /// table header; `from` when not found.
    fn field(&self, from: usize, field: &str) -> usize {
        let start = from.max(1);
        for (i, l) in self.text.lines().enumerate().skip(start) {
            let t = l.trim_start();
            if t.starts_with('[') {
                break;
            }
            if t.strip_prefix(field)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                return i + 1;
            }
        }
        from
    }
}

impl RuleSet {
    /// The shipped defaults.
    pub fn shipped() -> Result<RuleSet, RulesError> {
        RuleSet::parse(SHIPPED, "<shipped defaults>", RuleOrigin::Shipped)
    }

    /// Reads and parses a user's shaping file.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = RuleOrigin::File {
            path: Arc::from(path),
            line: 0,
        };
        RuleSet::parse(&text, &path.display().to_string(), origin)
    }

    /// Parses `text`; `name` is the file name for errors, `origin` the
    /// origin given to each rule (its line is filled in).
    pub fn parse(text: &str, name: &str, origin: RuleOrigin) -> Result<RuleSet, RulesError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| RulesError::Parse {
            path: name.to_string(),
            line: e.span().map_or(0, |s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            }),
            message: e.message().trim().to_string(),
        })?;
        let loc = Locator {
            text,
            path: name.to_string(),
        };
        let mut rules = Vec::new();
        let with_line = |line: usize| match &origin {
            RuleOrigin::Shipped => RuleOrigin::Shipped,
            RuleOrigin::File { path, .. } => RuleOrigin::File {
                path: Arc::clone(path),
                line,
            },
        };
        if let Some(d) = raw.default {
            let line = loc.header("default", 0);
            rules.push(compile(d, Kind::Default, &loc, line, with_line(line))?);
        }
        for (i, s) in raw.site.into_iter().enumerate() {
            let line = loc.header("site", i);
            rules.push(compile(s, Kind::Site, &loc, line, with_line(line))?);
        }
        for (i, d) in raw.domain.into_iter().enumerate() {
            let line = loc.header("domain", i);
            rules.push(compile(d, Kind::Domain, &loc, line, with_line(line))?);
        }
        Ok(RuleSet { rules })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Default,
    Site,
    Domain,
}

/// Turns a raw table into a checked rule.
fn compile(
    raw: RawRule,
    kind: Kind,
    loc: &Locator<'_>,
    line: usize,
    origin: RuleOrigin,
) -> Result<Rule, RulesError> {
    let table = match kind {
        Kind::Default => "[default]".to_string(),
        Kind::Site => format!("[[site]] {}", raw.name.as_deref().unwrap_or("")),
        Kind::Domain => format!("[[domain]] {}", raw.domains.join(",")),
    };
    let bad = |field: &'static str, message: String| RulesError::Invalid {
        path: loc.path.clone(),
        line: loc.field(line, field),
        table: table.trim_end().to_string(),
        field,
        message,
    };
    let scope = match kind {
        Kind::Default => {
            for (field, set) in [
                ("name", raw.name.is_some()),
                ("mx", !raw.mx.is_empty()),
                ("domains", !raw.domains.is_empty()),
                ("sources", !raw.sources.is_empty()),
            ] {
                if set {
                    return Err(bad(field, "not allowed in [default]".into()));
                }
            }
            RuleScope::Default
        }
        Kind::Site => {
            let name = canonical(raw.name.as_deref().unwrap_or(""));
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(bad("name", "a site needs a name without blanks".into()));
            }
            if !raw.domains.is_empty() {
                return Err(bad(
                    "domains",
                    "domains go in a [[domain]] rule, not a [[site]]".into(),
                ));
            }
            let mut mx = Vec::new();
            for p in &raw.mx {
                mx.push(MxPattern::parse(p).ok_or_else(|| {
                    bad(
                        "mx",
                        format!(
                            "bad pattern {p:?}: expected *.example.com, .example.com or a host"
                        ),
                    )
                })?);
            }
            RuleScope::Site { name, mx }
        }
        Kind::Domain => {
            if raw.name.is_some() || !raw.mx.is_empty() {
                let field = if raw.name.is_some() { "name" } else { "mx" };
                return Err(bad(field, "a [[domain]] rule has `domains` only".into()));
            }
            if raw.domains.is_empty() {
                return Err(bad("domains", "give at least one domain".into()));
            }
            let mut domains = Vec::new();
            for d in &raw.domains {
                let c = canonical(d);
                let bare = c.trim_start_matches('.');
                if bare.is_empty()
                    || c.contains(|ch: char| ch.is_whitespace() || ch == '@' || ch == '*')
                {
                    return Err(bad(
                        "domains",
                        format!("bad domain {d:?}: expected example.com or .example.com"),
                    ));
                }
                domains.push(c);
            }
            if !raw.automation.is_empty() {
                return Err(bad(
                    "automation",
                    "automation acts on a site; put it on a [[site]] or [default]".into(),
                ));
            }
            RuleScope::Domain { domains }
        }
    };
    let rate =
        |field: &'static str, v: &Option<String>| -> Result<Option<Option<Rate>>, RulesError> {
            match v.as_deref() {
                None => Ok(None),
                Some("unlimited") => Ok(Some(None)),
                Some(s) => parse_rate(s)
                    .map(|r| Some(Some(r)))
                    .map_err(|e| bad(field, e)),
            }
        };
    let duration =
        |field: &'static str, v: &Option<String>| -> Result<Option<Duration>, RulesError> {
            v.as_deref()
                .map(|s| parse_duration(s).map_err(|e| bad(field, e)))
                .transpose()
        };
    let limits = LimitSet {
        max_connections: raw.max_connections,
        initial_connections: raw.initial_connections,
        max_deliveries_per_connection: raw.max_deliveries_per_connection,
        message_rate: rate("message_rate", &raw.message_rate)?,
        connection_rate: rate("connection_rate", &raw.connection_rate)?,
        max_recipients: raw.max_recipients,
        min_retry: duration("min_retry", &raw.min_retry)?,
        max_retry: duration("max_retry", &raw.max_retry)?,
        tls: raw.tls,
    };
    for (field, v) in [
        ("max_connections", limits.max_connections),
        ("initial_connections", limits.initial_connections),
        ("max_recipients", limits.max_recipients),
    ] {
        if v == Some(0) {
            return Err(bad(field, "must be at least 1".into()));
        }
    }
    if let (Some(init), Some(max)) = (limits.initial_connections, limits.max_connections) {
        if init > max {
            return Err(bad(
                "initial_connections",
                format!("{init} is more than max_connections {max}"),
            ));
        }
    }
    if let (Some(min), Some(max)) = (limits.min_retry, limits.max_retry) {
        if max < min {
            return Err(bad("max_retry", "must not be less than min_retry".into()));
        }
    }
    let site_name = match &scope {
        RuleScope::Site { name, .. } => name.clone(),
        _ => "default".to_string(),
    };
    let mut automation = Vec::new();
    for (i, a) in raw.automation.into_iter().enumerate() {
        let id: Arc<str> = Arc::from(format!("{site_name}#{}", i + 1));
        let abad = |field: &'static str, message: String| RulesError::Invalid {
            path: loc.path.clone(),
            line,
            table: format!("{} automation {id}", table.trim_end()),
            field,
            message,
        };
        automation.push(compile_automation(a, Arc::clone(&id), &abad)?);
    }
    Ok(Rule {
        scope,
        sources: raw.sources,
        limits,
        reference: raw.reference,
        origin,
        automation,
    })
}

/// Checks one `[[site.automation]]` entry.
fn compile_automation(
    a: RawAutomation,
    id: Arc<str>,
    bad: &dyn Fn(&'static str, String) -> RulesError,
) -> Result<AutomationRule, RulesError> {
    let enhanced = match &a.enhanced {
        None => None,
        Some(e) => match EnhancedCode::parse_prefix(e.trim()) {
            Some((code, "")) => Some(code),
            _ => {
                return Err(bad(
                    "enhanced",
                    format!("bad enhanced code {e:?}: expected e.g. 4.7.28"),
                ))
            }
        },
    };
    if let Some(c) = a.code {
        if !(200..=599).contains(&c) {
            return Err(bad("code", format!("{c} is not a reply code")));
        }
    }
    let text = match &a.text {
        None => None,
        Some(t) => Some(
            RegexBuilder::new(t)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| bad("text", format!("bad regular expression: {e}")))?,
        ),
    };
    if a.code.is_none() && enhanced.is_none() && text.is_none() {
        return Err(bad(
            "text",
            "give at least one of code, enhanced, text".into(),
        ));
    }
    let duration = parse_duration(&a.duration).map_err(|e| bad("duration", e))?;
    let action = match a.action.as_str() {
        "suspend" => {
            for (field, set) in [
                ("connections", a.connections.is_some()),
                ("message_rate", a.message_rate.is_some()),
                ("restore_interval", a.restore_interval.is_some()),
                ("restore_factor", a.restore_factor.is_some()),
            ] {
                if set {
                    return Err(bad(field, "only for action = \"cut\"".into()));
                }
            }
            AutomationAction::Suspend { duration }
        }
        "cut" => {
            for (field, f) in [
                ("connections", a.connections),
                ("message_rate", a.message_rate),
            ] {
                if f.is_some_and(|f| !(f > 0.0 && f < 1.0)) {
                    return Err(bad(field, "a factor between 0 and 1 (exclusive)".into()));
                }
            }
            if a.connections.is_none() && a.message_rate.is_none() {
                return Err(bad(
                    "connections",
                    "cut needs connections, message_rate or both".into(),
                ));
            }
            let restore_interval = match &a.restore_interval {
                Some(s) => parse_duration(s).map_err(|e| bad("restore_interval", e))?,
                None => duration,
            };
            let restore_factor = a.restore_factor.unwrap_or(2.0);
            if !(restore_factor > 1.0 && restore_factor.is_finite()) {
                return Err(bad("restore_factor", "must be more than 1".into()));
            }
            AutomationAction::Cut {
                connections: a.connections,
                message_rate: a.message_rate,
                hold: duration,
                restore_interval,
                restore_factor,
            }
        }
        other => {
            return Err(bad(
                "action",
                format!("{other:?}: expected \"suspend\" or \"cut\""),
            ))
        }
    };
    Ok(AutomationRule {
        id,
        matcher: ReplyMatcher {
            code: a.code,
            enhanced,
            text,
        },
        action,
        reference: a.reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleSet, RulesError> {
        RuleSet::parse(
            text,
            "s.toml",
            RuleOrigin::File {
                path: Arc::from(Path::new("s.toml")),
                line: 0,
            },
        )
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn shipped_defaults_parse_and_every_rule_cites_a_source() {
        let set = RuleSet::shipped().unwrap();
        assert!(set.rules.len() >= 10);
        for r in &set.rules {
            assert!(
                r.reference.as_deref().is_some_and(|s| s.contains("http")),
                "{} has no reference",
                r.label()
            );
            assert_eq!(r.origin, RuleOrigin::Shipped);
        }
        let names: Vec<String> = set.rules.iter().map(|r| r.label()).collect();
        for want in [
            "site google",
            "site outlook",
            "site office365",
            "site yahoo",
            "site apple",
            "site gmx",
            "site yandex",
            "site mailru",
            "site comcast",
            "site orange",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
    }

    #[test]
    fn fields_parse_with_lines() {
        let set = parse(
            "[default]\nmax_connections = 8\nmessage_rate = \"unlimited\"\n\n\
             [[site]]\nname = \"Google\"\nmx = [\"*.google.com\"]\nmin_retry = \"5m\"\n\
             [[site.automation]]\nenhanced = \"4.7.28\"\naction = \"suspend\"\nduration = \"1h\"\n\n\
             [[domain]]\ndomains = [\"Example.COM\", \".example.net\"]\nsources = [\"ip-a\"]\n\
             tls = \"encrypt\"\nconnection_rate = \"3000/h\"\n",
        )
        .unwrap();
        assert_eq!(set.rules.len(), 3);
        assert_eq!(set.rules[0].limits.max_connections, Some(8));
        assert_eq!(set.rules[0].limits.message_rate, Some(None));
        assert_eq!(set.rules[1].label(), "site google");
        assert_eq!(set.rules[1].automation[0].id.as_ref(), "google#1");
        assert_eq!(
            set.rules[1].origin,
            RuleOrigin::File {
                path: Arc::from(Path::new("s.toml")),
                line: 5
            }
        );
        let d = &set.rules[2];
        assert_eq!(d.label(), "domain example.com,.example.net");
        assert_eq!(d.limits.tls, Some(TlsSecurityLevel::Encrypt));
        assert_eq!(d.limits.connection_rate.unwrap().unwrap().count, 3000);
        assert!(d.applies_to_source(Some("ip-a")) && !d.applies_to_source(None));
    }

    #[test]
    fn errors_name_file_line_table_and_field() {
        let e = err("[[site]]\nname = \"g\"\nmx = [\"*.g.com\"]\nmax_connections = 0\n");
        assert_eq!(
            e,
            "s.toml:4: [[site]] g `max_connections`: must be at least 1"
        );
        let e = err("[[site]]\nname = \"g\"\n\n[[domain]]\ndomains = [\"a.example\"]\nmessage_rate = \"fast\"\n");
        assert!(
            e.starts_with("s.toml:6: [[domain]] a.example `message_rate`: bad rate"),
            "{e}"
        );
        let e = err("[[site]]\nname = \"g\"\nmax_conections = 3\n");
        assert!(
            e.starts_with("s.toml:3:") && e.contains("max_conections"),
            "{e}"
        );
        let e = err("[[site]]\nname = \"g\"\nmx = [\"*google.com\"]\n");
        assert!(e.contains("`mx`: bad pattern"), "{e}");
        let e = err("[default]\nsources = [\"a\"]\n");
        assert!(e.contains("[default] `sources`: not allowed"), "{e}");
        let e = err("[[domain]]\ndomains = []\n");
        assert!(e.contains("give at least one domain"), "{e}");
        let e = err("[[site]]\nname = \"g\"\nmin_retry = \"1h\"\nmax_retry = \"5m\"\n");
        assert!(e.starts_with("s.toml:4:") && e.contains("max_retry"), "{e}");
        let e = err("[[site]]\nname = \"g\"\ninitial_connections = 5\nmax_connections = 2\n");
        assert!(e.contains("initial_connections"), "{e}");
    }

    #[test]
    fn automation_is_checked() {
        let site = "[[site]]\nname = \"g\"\n[[site.automation]]\n";
        for (body, want) in [
            (
                "action = \"suspend\"\nduration = \"1h\"\n",
                "at least one of code",
            ),
            (
                "text = \"(\"\naction = \"suspend\"\nduration = \"1h\"\n",
                "bad regular expression",
            ),
            (
                "code = 42\naction = \"suspend\"\nduration = \"1h\"\n",
                "not a reply code",
            ),
            (
                "enhanced = \"4.7\"\naction = \"suspend\"\nduration = \"1h\"\n",
                "bad enhanced code",
            ),
            (
                "code = 421\naction = \"nap\"\nduration = \"1h\"\n",
                "expected \"suspend\" or \"cut\"",
            ),
            (
                "code = 421\naction = \"cut\"\nduration = \"1h\"\n",
                "cut needs connections",
            ),
            (
                "code = 421\naction = \"cut\"\nconnections = 1.5\nduration = \"1h\"\n",
                "between 0 and 1",
            ),
            (
                "code = 421\naction = \"suspend\"\nconnections = 0.5\nduration = \"1h\"\n",
                "only for action",
            ),
            (
                "code = 421\naction = \"suspend\"\nduration = \"soon\"\n",
                "bad duration",
            ),
        ] {
            let e = err(&format!("{site}{body}"));
            assert!(
                e.contains(want) && e.contains("automation g#1"),
                "{body}: {e}"
            );
        }
        let e = err("[[domain]]\ndomains = [\"a.example\"]\n[[domain.automation]]\ncode = 421\naction = \"suspend\"\nduration = \"1h\"\n");
        assert!(e.contains("put it on a [[site]]"), "{e}");
        let ok = parse(&format!(
            "{site}code = 421\ntext = \"(?i)too many connections\"\naction = \"cut\"\n\
             connections = 0.5\nduration = \"30m\"\nrestore_interval = \"10m\"\n"
        ))
        .unwrap();
        match &ok.rules[0].automation[0].action {
            AutomationAction::Cut {
                restore_interval,
                restore_factor,
                ..
            } => {
                assert_eq!(*restore_interval, Duration::from_secs(600));
                assert_eq!(*restore_factor, 2.0);
            }
            other => panic!("{other:?}"),
        }
    }
}

//! The MTA-STS policy file (RFC 8461 section 3.2), sans-IO: parsing the
//! text served at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` and
//! matching MX host names against its `mx` patterns (section 4.1).
//!
//! ```text
//! version: STSv1
//! mode: enforce
//! mx: mail.example.com
//! mx: *.example.net
//! max_age: 86400
//! ```
//!
//! Lines end in CRLF (a bare LF is accepted too, as every sender does).
//! Unknown keys are ignored; of a repeated key other than `mx` the first
//! one counts. `max_age` above [`MAX_AGE_CAP`] (one year) is capped.

use std::fmt;

/// The largest `max_age` honoured, in seconds (RFC 8461 section 3.2).
pub const MAX_AGE_CAP: u64 = 31_557_600;

/// Why a policy text is not a valid MTA-STS policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A line is not `key: value`.
    #[error("line {0}: not a key: value pair")]
    BadLine(usize),
    /// `version` is missing or not `STSv1`.
    #[error("version is not STSv1")]
    Version,
    /// `mode` is missing or not one of `enforce`, `testing`, `none`.
    #[error("mode is missing or not enforce, testing or none")]
    Mode,
    /// `max_age` is missing or not 1 to 10 digits.
    #[error("max_age is missing or not a number of seconds")]
    MaxAge,
    /// An `mx` value is not a host name or `*.` followed by one.
    #[error("bad mx pattern {0:?}")]
    BadMx(String),
    /// Mode `enforce` or `testing` without any `mx`.
    #[error("no mx pattern in a policy of mode {0}")]
    NoMx(Mode),
}

impl PolicyError {
    /// A bad policy stays bad until its owner fixes it; the fetch is
    /// tried again later like any failed fetch (never a bounce).
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// A policy's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Deliver as usual; report what enforce would have refused.
    Testing,
    /// No policy (how a domain withdraws one).
    None,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        })
    }
}

/// One `mx` value: a host name, or `*.` and a domain (the wildcard stands
/// for exactly one label). Stored in lower case without a final dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxPattern(String);

impl MxPattern {
    /// Parses one `mx` value.
    pub fn parse(text: &str) -> Result<MxPattern, PolicyError> {
        let bad = || PolicyError::BadMx(text.to_string());
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        let host = lower.strip_prefix("*.").unwrap_or(&lower);
        if !crate::mail::address::is_domain_name(host) {
            return Err(bad());
        }
        Ok(MxPattern(lower))
    }

    /// True when MX host `host` matches: equal names (case-insensitive,
    /// a final dot ignored), or, for `*.example.net`, a name of exactly
    /// one more label (`mx1.example.net`, not `a.b.example.net` nor
    /// `example.net`).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self.0.strip_prefix("*.") {
            Some(parent) => match host.split_once('.') {
                Some((first, rest)) => !first.is_empty() && rest == parent,
                None => false,
            },
            None => host == self.0,
        }
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Its mode.
    pub mode: Mode,
    /// The MX patterns (empty only in mode `none`).
    pub mx: Vec<MxPattern>,
    /// Lifetime in seconds, capped at [`MAX_AGE_CAP`].
    pub max_age: u64,
}

impl Policy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line = line.trim_end_matches([' ', '\t']);
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once(':').ok_or(PolicyError::BadLine(i + 1))?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(PolicyError::BadLine(i + 1));
            }
            let value = value.trim_start_matches([' ', '\t']);
            match key {
                "version" => {
                    version.get_or_insert(value);
                }
                "mode" => {
                    mode.get_or_insert(value);
                }
                "max_age" => {
                    max_age.get_or_insert(value);
                }
                "mx" => mx.push(MxPattern::parse(value)?),
                _ => {}
            }
        }
        if version != Some("STSv1") {
            return Err(PolicyError::Version);
        }
        let mode = match mode {
            Some("enforce") => Mode::Enforce,
            Some("testing") => Mode::Testing,
            Some("none") => Mode::None,
            _ => return Err(PolicyError::Mode),
        };
        let max_age = match max_age {
            Some(v) if !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()) => {
                v.parse::<u64>().map_err(|_| PolicyError::MaxAge)?
            }
            _ => return Err(PolicyError::MaxAge),
        };
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx(mode));
        }
        Ok(Policy {
            mode,
            mx,
            max_age: max_age.min(MAX_AGE_CAP),
        })
    }

    /// True when MX host `host` matches one of the policy's patterns.
    pub fn matches(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }

    /// The patterns as a list for messages: `mx.example.com, *.example.net`.
    pub fn patterns(&self) -> String {
        let v: Vec<String> = self.mx.iter().map(ToString::to_string).collect();
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n\
                               mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    #[test]
    fn the_rfc_example() {
        let p = Policy::parse(RFC_EXAMPLE).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(p.mx.len(), 3);
        assert_eq!(
            p.patterns(),
            "mail.example.com, *.example.net, backupmx.example.com"
        );
        assert!(p.matches("mail.example.com"));
        assert!(p.matches("MAIL.Example.COM."));
        assert!(p.matches("mx1.example.net"));
        assert!(!p.matches("a.b.example.net"), "a wildcard is one label");
        assert!(!p.matches("example.net"));
        assert!(!p.matches("mail.example.org"));
        assert!(!p.matches("xmail.example.com"));
    }

    #[test]
    fn bare_lf_whitespace_unknown_keys_and_first_value_wins() {
        let p = Policy::parse(
            "version: STSv1\nmode:testing  \nextension_key: whatever: value\nmode: enforce\n\
             mx:\tmx.example.org\nmax_age: 99999999999\n",
        );
        assert_eq!(p, Err(PolicyError::MaxAge), "11 digits are refused");
        let p = Policy::parse(
            "version: STSv1\nmode:testing  \nextension_key: whatever\nmode: enforce\n\
             mx:\tmx.example.org\nmax_age: 9999999999\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Testing);
        assert_eq!(p.max_age, MAX_AGE_CAP, "capped at a year");
        assert!(p.matches("mx.example.org"));
    }

    #[test]
    fn invalid_policies() {
        let base = |v: &str, m: &str, mx: &str, age: &str| {
            format!("version: {v}\nmode: {m}\n{mx}max_age: {age}\n")
        };
        assert_eq!(
            Policy::parse(&base("STSv2", "enforce", "mx: a.example\n", "1")),
            Err(PolicyError::Version)
        );
        assert_eq!(
            Policy::parse(&base("STSv1", "ENFORCE", "mx: a.example\n", "1")),
            Err(PolicyError::Mode)
        );
        assert_eq!(
            Policy::parse(&base("STSv1", "enforce", "mx: a.example\n", "-1")),
            Err(PolicyError::MaxAge)
        );
        assert_eq!(
            Policy::parse(&base("STSv1", "enforce", "", "86400")),
            Err(PolicyError::NoMx(Mode::Enforce))
        );
        assert!(matches!(
            Policy::parse(&base("STSv1", "enforce", "mx: *.*.example\n", "1")),
            Err(PolicyError::BadMx(_))
        ));
        assert!(matches!(
            Policy::parse(&base("STSv1", "enforce", "mx: a..example\n", "1")),
            Err(PolicyError::BadMx(_))
        ));
        assert_eq!(
            Policy::parse("version STSv1\n"),
            Err(PolicyError::BadLine(1))
        );
        assert_eq!(Policy::parse(""), Err(PolicyError::Version));
        assert_eq!(
            Policy::parse("<html>\n<body>not found</body>\n"),
            Err(PolicyError::BadLine(1))
        );
        // Mode none needs no mx.
        let none = Policy::parse(&base("STSv1", "none", "", "86400")).unwrap();
        assert_eq!(none.mode, Mode::None);
        assert!(!none.matches("anything.example"));
        assert!(PolicyError::Version.is_transient());
    }

    #[test]
    fn wildcard_patterns() {
        let p = MxPattern::parse("*.Example.NET.").unwrap();
        assert_eq!(p.to_string(), "*.example.net");
        assert!(p.matches("mx.example.net"));
        assert!(!p.matches(".example.net"));
        assert!(!p.matches("example.net"));
        assert!(!p.matches("x.y.example.net"));
        assert!(!p.matches("mx.example.network"));
        let exact = MxPattern::parse("mx.example.net").unwrap();
        assert!(exact.matches("mx.example.net."));
        assert!(!exact.matches("a.mx.example.net"));
        assert!(MxPattern::parse("").is_err());
        assert!(MxPattern::parse("*").is_err());
        assert!(MxPattern::parse("mx example").is_err());
    }
}

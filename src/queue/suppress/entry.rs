//! What a suppression is: the address, where it applies ([`Scope`]), why
//! ([`Reason`]), when and for which campaign ([`Entry`]), and how
//! addresses are compared (the whole address lower-cased).

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::mail::parse_smtp_path;

use super::SuppressError;

/// Longest reason detail kept, in bytes; a longer one is cut at a
/// character boundary.
pub const MAX_DETAIL: usize = 512;

/// Where a suppression applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// To all mail.
    Global,
    /// Only to mail whose sender (envelope or From:) domain is this one,
    /// lower-cased.
    SenderDomain(String),
}

impl Scope {
    /// Parses a scope: `global`, `*` or nothing is [`Scope::Global`];
    /// anything else must be a domain (an `@` before it is allowed) with
    /// at least one dot, and is lower-cased.
    pub fn parse(text: &str) -> Result<Scope, SuppressError> {
        let t = text.trim();
        if t.is_empty() || t == "*" || t.eq_ignore_ascii_case("global") {
            return Ok(Scope::Global);
        }
        let bad = |reason| SuppressError::BadScope {
            scope: text.to_string(),
            reason,
        };
        let domain = t.strip_prefix('@').unwrap_or(t);
        if parse_smtp_path(&format!("x@{domain}"), "", false).is_err() {
            return Err(bad("not a domain"));
        }
        if !domain.contains('.') {
            return Err(bad("a sender domain has at least one dot"));
        }
        Ok(Scope::SenderDomain(lower(domain).into_owned()))
    }

    /// The sender domain, or `None` for [`Scope::Global`].
    pub fn domain(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::SenderDomain(d) => Some(d),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.domain().unwrap_or("global"))
    }
}

/// Why an address is suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonKind {
    /// The recipient unsubscribed.
    Unsubscribe,
    /// Mail to it bounced (hard).
    Bounce,
    /// The recipient reported mail as spam (a feedback loop report).
    Complaint,
    /// An administrator added it.
    Manual,
    /// It came from an imported list.
    Import,
}

impl ReasonKind {
    /// Every kind, in the order of the enum.
    pub const ALL: [ReasonKind; 5] = [
        ReasonKind::Unsubscribe,
        ReasonKind::Bounce,
        ReasonKind::Complaint,
        ReasonKind::Manual,
        ReasonKind::Import,
    ];

    /// The name used in the journal, the CLI and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Unsubscribe => "unsubscribe",
            ReasonKind::Bounce => "bounce",
            ReasonKind::Complaint => "complaint",
            ReasonKind::Manual => "manual",
            ReasonKind::Import => "import",
        }
    }

    /// The kind named `name` (any case), if any.
    pub fn parse(name: &str) -> Option<ReasonKind> {
        let name = name.trim();
        ReasonKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason: its kind and free text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reason {
    /// The kind.
    pub kind: ReasonKind,
    /// Free text (may be empty): no control characters, at most
    /// [`MAX_DETAIL`] bytes.
    pub detail: String,
}

impl Reason {
    /// A reason; in `detail`, control characters become spaces, blanks
    /// around it are removed and it is cut to [`MAX_DETAIL`] bytes.
    pub fn new(kind: ReasonKind, detail: &str) -> Reason {
        let mut clean: String = detail
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if clean.len() > MAX_DETAIL {
            let mut end = MAX_DETAIL;
            while !clean.is_char_boundary(end) {
                end -= 1;
            }
            clean.truncate(end);
        }
        Reason {
            kind,
            detail: clean.trim_end().to_string(),
        }
    }

    /// Reads free text as given on the command line or in an import:
    /// `KIND` or `KIND: detail` when it starts with a kind's name, else
    /// `default` with the whole text as detail. Empty text is `default`
    /// with no detail.
    pub fn parse(text: &str, default: ReasonKind) -> Reason {
        let text = text.trim();
        let (head, rest) = match text.split_once(':') {
            Some((h, r)) => (h, r),
            None => (text, ""),
        };
        match ReasonKind::parse(head) {
            Some(kind) if !head.is_empty() => Reason::new(kind, rest),
            _ => Reason::new(default, text),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.kind.as_str())
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}

/// One suppression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The address, lower-cased, without angle brackets.
    pub address: String,
    /// Where it applies.
    pub scope: Scope,
    /// Why.
    pub reason: Reason,
    /// When it was added, in seconds since the Unix epoch.
    pub added: u64,
    /// The campaign that led to it (an unsubscribe link, a bounce), if any.
    pub campaign: Option<u64>,
}

impl Entry {
    /// An entry for `address` (checked with [`normalize_address`]) added
    /// now, for no campaign.
    pub fn new(address: &str, scope: Scope, reason: Reason) -> Result<Entry, SuppressError> {
        Ok(Entry {
            address: normalize_address(address)?,
            scope,
            reason,
            added: unix_now(),
            campaign: None,
        })
    }
}

/// Checks `input` as an SMTP path (`a@b` or `<a@b>`; see
/// [`parse_smtp_path`]), requires a domain, and returns the address
/// lower-cased: the form the list stores and compares.
pub fn normalize_address(input: &str) -> Result<String, SuppressError> {
    let parsed = parse_smtp_path(input, "", false).map_err(|e| {
        if input.contains('@') {
            SuppressError::BadAddress(e)
        } else {
            SuppressError::Unqualified(input.trim().to_string())
        }
    })?;
    if crate::mail::split_address(&parsed).is_none() {
        return Err(SuppressError::Unqualified(input.trim().to_string()));
    }
    Ok(lower(&parsed).into_owned())
}

/// The lookup form of an address that was parsed before: blanks and one
/// pair of angle brackets removed, lower-cased. No syntax check.
pub(crate) fn lookup_key(address: &str) -> Cow<'_, str> {
    let t = address.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(t);
    lower(t)
}

/// `s` lower-cased, borrowed when it already is (the common case, which
/// then costs no allocation).
pub(crate) fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else if s.is_ascii() {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lower_cased_whole() {
        assert_eq!(
            normalize_address(" <Jane.Doe@Example.NET> ").unwrap(),
            "jane.doe@example.net"
        );
        assert_eq!(
            normalize_address("Ünïcode@Exämple.de").unwrap(),
            "ünïcode@exämple.de"
        );
        assert!(matches!(
            normalize_address("bob"),
            Err(SuppressError::Unqualified(a)) if a == "bob"
        ));
        assert!(matches!(
            normalize_address("a b@example.net"),
            Err(SuppressError::BadAddress(_))
        ));
        assert!(normalize_address("a@b@c").is_err());
        assert!(normalize_address("a@example.net\r\nRCPT TO:<x@y>").is_err());
        assert!(normalize_address("").is_err());
        assert_eq!(lookup_key("<A@B.example>"), "a@b.example");
        assert!(matches!(lookup_key("a@b.example"), Cow::Borrowed(_)));
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(Scope::parse("").unwrap(), Scope::Global);
        assert_eq!(Scope::parse("GLOBAL").unwrap(), Scope::Global);
        assert_eq!(Scope::parse("*").unwrap(), Scope::Global);
        assert_eq!(
            Scope::parse("@News.Example.COM").unwrap(),
            Scope::SenderDomain("news.example.com".into())
        );
        assert_eq!(
            Scope::parse("[192.0.2.1]").unwrap().to_string(),
            "[192.0.2.1]"
        );
        assert!(matches!(
            Scope::parse("localhost"),
            Err(SuppressError::BadScope { reason, .. }) if reason.contains("dot")
        ));
        assert!(Scope::parse("exa mple.com").is_err());
        assert!(Scope::parse("a@b.com").is_err());
        assert_eq!(Scope::Global.to_string(), "global");
    }

    #[test]
    fn reasons_parse_kind_and_detail() {
        let r = Reason::parse("Bounce: 550 5.1.1 user unknown", ReasonKind::Manual);
        assert_eq!(r.kind, ReasonKind::Bounce);
        assert_eq!(r.detail, "550 5.1.1 user unknown");
        assert_eq!(r.to_string(), "bounce: 550 5.1.1 user unknown");
        let r = Reason::parse("asked by phone", ReasonKind::Manual);
        assert_eq!(
            (r.kind, r.detail.as_str()),
            (ReasonKind::Manual, "asked by phone")
        );
        let r = Reason::parse("note: unsubscribe", ReasonKind::Import);
        assert_eq!(
            (r.kind, r.detail.as_str()),
            (ReasonKind::Import, "note: unsubscribe")
        );
        let r = Reason::parse("", ReasonKind::Import);
        assert_eq!((r.kind, r.detail.as_str()), (ReasonKind::Import, ""));
        let r = Reason::new(ReasonKind::Manual, "line one\r\nline\ttwo ");
        assert_eq!(r.detail, "line one  line two");
        let long = "é".repeat(400);
        let r = Reason::new(ReasonKind::Manual, &long);
        assert!(r.detail.len() <= MAX_DETAIL && r.detail.len() >= MAX_DETAIL - 1);
        assert!(long.starts_with(&r.detail));
    }
}

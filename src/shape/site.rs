//! Sites: the unit that shaping limits apply to.
//!
//! A *site* is a group of recipient domains that share their receiving
//! servers, found from the domain's resolved MX hosts ("MX roll-up", as
//! KumoMTA's site names): every domain whose MX hosts are Google's is one
//! site, however many Workspace domains there are.
//!
//! The name is chosen deterministically:
//!
//! 1. the first site rule (the user's first, then the shipped ones, each in
//!    file order) whose `mx` patterns cover **every** MX host of the domain
//!    names the site (`google`, `office365`). A domain with one foreign
//!    backup MX is therefore not rolled into the provider's site;
//! 2. otherwise the site is the MX host set itself: the hosts lower-cased,
//!    without the final dot, sorted, de-duplicated and joined with `,`
//!    (`mx1.example.net,mx2.example.net`), so domains with the same MX set
//!    share a site and nothing else is guessed;
//! 3. a domain without MX records (implicit MX) is its own site: the
//!    domain name, lower-cased.

use std::fmt;
use std::sync::Arc;

/// The name of a site; cheap to clone and to hash, shared across shards.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteKey(Arc<str>);

impl SiteKey {
    /// A key from a name, taken as is (callers lower-case).
    pub fn new(name: &str) -> SiteKey {
        SiteKey(Arc::from(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a site got its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteOrigin {
    /// A site rule's `mx` patterns matched every MX host; the index is the
    /// rule's position in the list given to [`site_for`] (in the
    /// `ShapingTable`'s rules once it returns).
    Rule(usize),
    /// Derived from the MX host set.
    MxSet,
    /// No MX: the domain is its own site.
    Domain,
}

/// A recipient domain's site and how it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The site's name.
    pub key: SiteKey,
    /// Why this name.
    pub origin: SiteOrigin,
}

/// One `mx` pattern of a site rule: `*.google.com` and `.google.com` match
/// any host under `google.com` (not `google.com` itself); anything else
/// matches that host exactly. Case-insensitive, final dots ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxPattern {
    /// Lower-case suffix with its leading dot, or the exact host.
    text: String,
    suffix: bool,
}

impl MxPattern {
    /// Parses a pattern; `None` when it is empty or has blanks.
    pub fn parse(p: &str) -> Option<MxPattern> {
        let p = canonical(p);
        let (text, suffix) = match p.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') => (rest.to_string(), true),
            Some(_) => return None,
            None if p.starts_with('.') => (p.clone(), true),
            None => (p.clone(), false),
        };
        let bare = text.trim_start_matches('.');
        if bare.is_empty() || bare.contains(|c: char| c.is_whitespace() || c == '*' || c == '@') {
            return None;
        }
        Some(MxPattern { text, suffix })
    }

    /// True when this pattern covers `host` (already canonical).
    pub fn matches(&self, host: &str) -> bool {
        if self.suffix {
            host.len() > self.text.len() && host.ends_with(&self.text)
        } else {
            host == self.text
        }
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suffix {
            write!(f, "*{}", self.text)
        } else {
            f.write_str(&self.text)
        }
    }
}

/// Lower case, no final dot, no surrounding blanks.
pub fn canonical(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The site of `domain` given its MX hosts (any order, any case) and the
/// `mx` patterns of each site rule with its name, in precedence order.
pub fn site_for<'a>(
    domain: &str,
    mx_hosts: &[&str],
    rules: impl IntoIterator<Item = (&'a str, &'a [MxPattern])>,
) -> Site {
    let mut hosts: Vec<String> = mx_hosts
        .iter()
        .map(|h| canonical(h))
        .filter(|h| !h.is_empty())
        .collect();
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        return Site {
            key: SiteKey::new(&canonical(domain)),
            origin: SiteOrigin::Domain,
        };
    }
    for (i, (name, patterns)) in rules.into_iter().enumerate() {
        if !patterns.is_empty() && hosts.iter().all(|h| patterns.iter().any(|p| p.matches(h))) {
            return Site {
                key: SiteKey::new(name),
                origin: SiteOrigin::Rule(i),
            };
        }
    }
    Site {
        key: SiteKey::new(&hosts.join(",")),
        origin: SiteOrigin::MxSet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<MxPattern> {
        list.iter().map(|p| MxPattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn patterns_match_on_label_boundaries() {
        let p = MxPattern::parse("*.Google.com.").unwrap();
        assert_eq!(p.to_string(), "*.google.com");
        assert!(p.matches("aspmx.l.google.com"));
        assert!(!p.matches("google.com"));
        assert!(!p.matches("notgoogle.com"));
        assert_eq!(MxPattern::parse(".google.com"), Some(p));
        let exact = MxPattern::parse("mx.example.net").unwrap();
        assert!(exact.matches("mx.example.net") && !exact.matches("a.mx.example.net"));
        for bad in ["", "*", "*google.com", ".", "a b", "*.*.com"] {
            assert_eq!(MxPattern::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn two_domains_roll_up_into_one_named_site() {
        let google = pats(&["*.google.com", "*.googlemail.com"]);
        let rules = [("google", google.as_slice())];
        let a = site_for(
            "gmail.com",
            &[
                "gmail-smtp-in.l.google.com.",
                "alt1.gmail-smtp-in.l.google.com",
            ],
            rules,
        );
        let b = site_for(
            "workspace.example",
            &[
                "ASPMX.L.GOOGLE.COM",
                "alt1.aspmx.l.google.com",
                "aspmx2.googlemail.com",
            ],
            rules,
        );
        assert_eq!(a.key, SiteKey::new("google"));
        assert_eq!(a, b);
        assert_eq!(a.origin, SiteOrigin::Rule(0));
    }

    #[test]
    fn a_foreign_mx_host_keeps_a_domain_out_of_the_rule() {
        let google = pats(&["*.google.com"]);
        let s = site_for(
            "mixed.example",
            &["aspmx.l.google.com", "backup.mixed.example"],
            [("google", google.as_slice())],
        );
        assert_eq!(s.origin, SiteOrigin::MxSet);
        assert_eq!(s.key.as_str(), "aspmx.l.google.com,backup.mixed.example");
    }

    #[test]
    fn unmatched_sites_are_the_sorted_mx_set_and_no_mx_is_the_domain() {
        let none: [(&str, &[MxPattern]); 0] = [];
        let a = site_for(
            "a.example",
            &["MX2.host.net", "mx1.host.net", "mx1.host.net."],
            none,
        );
        let b = site_for("b.example", &["mx1.host.net", "mx2.host.net"], none);
        assert_eq!(a.key.as_str(), "mx1.host.net,mx2.host.net");
        assert_eq!(a, b);
        let c = site_for("C.Example.", &[], none);
        assert_eq!(
            (c.key.as_str(), c.origin),
            ("c.example", SiteOrigin::Domain)
        );
    }

    #[test]
    fn first_matching_rule_wins() {
        let broad = pats(&["*.outlook.com"]);
        let narrow = pats(&["*.mail.protection.outlook.com"]);
        let s = site_for(
            "corp.example",
            &["corp-example.mail.protection.outlook.com"],
            [
                ("office365", narrow.as_slice()),
                ("outlook", broad.as_slice()),
            ],
        );
        assert_eq!(s.key.as_str(), "office365");
    }
}

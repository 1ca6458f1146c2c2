//! The shaping rules' `tls` level for a destination's deliveries. Once a
//! destination knows its site, the site's effective `tls` (a `[[domain]]`
//! rule over a `[[site]]` rule over `[default]` over
//! `smtp_tls_security_level`) becomes its TLS level, unless the
//! destination has a level of its own: a `[[route]]`'s `tls` or a
//! `[[tls_policy]]` entry's `level` always wins (docs/SHAPING.md, "In the
//! queue manager"). A site's level never lowers a configured level that
//! authenticates the server (`verify`, `secure`, `dane`, `dane-only`):
//! the shipped rules' `encrypt` for Google must not undo a global
//! `secure`; a `[[tls_policy]]` entry is the way to lower one. MTA-STS
//! under `enforce` still raises the level to `verify` at connection time.

use crate::deliver::HopPolicy;
use crate::shape::{Shaper, SiteKey};

/// `policy` with the site's `tls` level, when that changes it: `None`
/// when the hop has an explicit level or the site's level is the same.
pub(super) fn with_site_tls(
    policy: &HopPolicy,
    shaper: &Shaper,
    site: &SiteKey,
    domain: Option<&str>,
    source: Option<&str>,
) -> Option<HopPolicy> {
    if policy.tls_explicit {
        return None;
    }
    let tls = shaper.limits_for(site, domain, source).tls.value;
    if policy.tls.authenticates() && !tls.authenticates() {
        return None;
    }
    (tls != policy.tls).then(|| HopPolicy {
        tls,
        ..policy.clone()
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, TlsSecurityLevel};
    use crate::deliver::Router;
    use crate::model::Nexthop;
    use crate::shape::rules::{RuleOrigin, RuleSet};
    use crate::shape::ShapingTable;

    const RULES: &str =
        "[[site]]\nname = \"strict\"\nmx = [\"*.strict.test\"]\ntls = \"encrypt\"\n";

    fn setup(extra: &str) -> (Router, Shaper) {
        let config = Config::parse(extra, Path::new("ringmail.toml")).unwrap();
        let origin = RuleOrigin::File {
            path: Arc::from(Path::new("shaping.toml")),
            line: 0,
        };
        let user = RuleSet::parse(RULES, "shaping.toml", origin).unwrap();
        let table = ShapingTable::new(&config, RuleSet::shipped().unwrap(), Some(user)).unwrap();
        (
            Router::from_config(&config).unwrap(),
            Shaper::new(Arc::new(table)),
        )
    }

    fn mx_hop(domain: &str) -> Nexthop {
        Nexthop {
            host: domain.to_string(),
            port: 25,
            mx_lookup: true,
        }
    }

    #[test]
    fn a_site_rule_replaces_the_global_level() {
        let (router, shaper) = setup("smtp_tls_security_level = \"may\"\n");
        let policy = router.policy(&mx_hop("a.example"));
        assert!(!policy.tls_explicit);
        let strict = shaper.site_for("a.example", &["mx.strict.test"]).key;
        let got = with_site_tls(&policy, &shaper, &strict, Some("a.example"), None);
        assert_eq!(got.map(|p| p.tls), Some(TlsSecurityLevel::Encrypt));
        // A site without a rule keeps the global level.
        let plain = shaper.site_for("a.example", &["mx.plain.test"]).key;
        assert_eq!(
            with_site_tls(&policy, &shaper, &plain, Some("a.example"), None),
            None
        );
    }

    #[test]
    fn a_site_rule_never_lowers_an_authenticating_level() {
        // Under `may` the shipped Google rule does raise it.
        let (router, shaper) = setup("smtp_tls_security_level = \"may\"\n");
        let google = shaper
            .site_for("gmail.com", &["gmail-smtp-in.l.google.com"])
            .key;
        let policy = router.policy(&mx_hop("gmail.com"));
        assert_eq!(
            with_site_tls(&policy, &shaper, &google, Some("gmail.com"), None).map(|p| p.tls),
            Some(TlsSecurityLevel::Encrypt)
        );
        for level in ["verify", "secure", "dane"] {
            let (router, shaper) = setup(&format!("smtp_tls_security_level = \"{level}\"\n"));
            let policy = router.policy(&mx_hop("a.example"));
            let strict = shaper.site_for("a.example", &["mx.strict.test"]).key;
            assert_eq!(
                with_site_tls(&policy, &shaper, &strict, Some("a.example"), None),
                None,
                "{level} kept"
            );
            // The shipped rules' `encrypt` for Google does not undo it either.
            let google = shaper
                .site_for("gmail.com", &["gmail-smtp-in.l.google.com"])
                .key;
            assert_eq!(
                with_site_tls(&policy, &shaper, &google, Some("gmail.com"), None),
                None,
                "{level} kept at Google"
            );
        }
    }

    #[test]
    fn a_tls_policy_entry_beats_the_site_rule() {
        let (router, shaper) = setup(
            "smtp_tls_security_level = \"may\"\n\
             [[tls_policy]]\ndomain = \"a.example\"\nlevel = \"none\"\n",
        );
        let policy = router.policy(&mx_hop("a.example"));
        assert!(policy.tls_explicit);
        assert_eq!(policy.tls, TlsSecurityLevel::None);
        let strict = shaper.site_for("a.example", &["mx.strict.test"]).key;
        assert_eq!(
            with_site_tls(&policy, &shaper, &strict, Some("a.example"), None),
            None
        );
    }
}

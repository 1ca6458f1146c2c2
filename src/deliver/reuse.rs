//! Whether an open connection made for one recipient domain may carry
//! mail for another (connection reuse across the domains of a shaping
//! site, as Postfix reuses a cached connection by the server's address).
//!
//! A connection is admitted for a domain only when opening one for that
//! domain could have produced it:
//!
//! - the host it is connected to is one of the domain's own MX hosts (after
//!   the domain's MTA-STS policy, under `enforce`, has narrowed them), on
//!   the next hop's port (two relay hosts on one address are two servers);
//! - its TLS meets the domain's level: any for `none` and `may`, TLS for
//!   `encrypt`, a certificate verified for that host for `verify` (and for
//!   MTA-STS `enforce`, which raises the level to `verify`);
//! - neither the domain nor the connection's first domain uses SASL
//!   credentials, and the domain's level is not a DANE one (DANE decides
//!   per MX host from the domain's own DNSSEC answers, so such a domain
//!   always connects for itself).
//!
//! The queue manager asks only about connections of the same site and the
//! same sending source; a refusal leaves the connection in the cache for
//! the domains it does suit.

use crate::config::TlsSecurityLevel;
use crate::model::Nexthop;
use crate::rt::tls::{TlsInfo, Trust};

use super::connect::Connector;
use super::route::HopPolicy;
use super::session::Session;

impl Connector {
    /// True when `session`, opened for another next hop (whose policy
    /// used SASL when `opened_with_sasl`), may carry mail to `hop` under
    /// `policy`. Looks up `hop`'s MX hosts and MTA-STS policy (both
    /// cached by the shard).
    pub async fn admits(
        &self,
        session: &Session,
        opened_with_sasl: bool,
        hop: &Nexthop,
        policy: &HopPolicy,
    ) -> bool {
        // DANE and name lists are checked per host and destination: a
        // connection verified for another destination proves nothing.
        if opened_with_sasl
            || policy.sasl.is_some()
            || policy.tls.is_dane()
            || self.checks_names(policy)
        {
            return false;
        }
        let Ok(hosts) = self.hosts(hop).await else {
            return false;
        };
        let (hosts, level) = match self.mta_sts(hop, policy).await {
            Some(applied) => match applied.hosts(hosts) {
                Ok(h) => (h, applied.tls_level(policy.tls)),
                Err(_) => return false,
            },
            None => (hosts, policy.tls),
        };
        let peer = session.peer();
        peer.addr.port() == hop.port
            && hosts
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(&peer.host))
            && tls_meets(level, session.tls())
    }
}

/// True when a connection whose TLS is `tls` (none: plaintext) is as safe
/// as `level` asks for its host.
pub fn tls_meets(level: TlsSecurityLevel, tls: Option<&TlsInfo>) -> bool {
    match level {
        TlsSecurityLevel::None | TlsSecurityLevel::May => true,
        TlsSecurityLevel::Encrypt => tls.is_some(),
        // Verified for this host's own name: not by DANE or a name list
        // checked for another destination.
        TlsSecurityLevel::Verify => {
            tls.is_some_and(|t| t.trust == Trust::Verified && t.host_name_verified)
        }
        TlsSecurityLevel::Secure | TlsSecurityLevel::Dane | TlsSecurityLevel::DaneOnly => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(trust: Trust) -> TlsInfo {
        TlsInfo {
            version: "TLSv1.3",
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            bits: Some(256),
            trust,
            host_name_verified: trust == Trust::Verified,
        }
    }

    #[test]
    fn plaintext_suits_only_the_opportunistic_levels() {
        assert!(tls_meets(TlsSecurityLevel::None, None));
        assert!(tls_meets(TlsSecurityLevel::May, None));
        assert!(!tls_meets(TlsSecurityLevel::Encrypt, None));
        assert!(!tls_meets(TlsSecurityLevel::Verify, None));
    }

    #[test]
    fn verify_needs_a_verified_certificate() {
        assert!(tls_meets(
            TlsSecurityLevel::Encrypt,
            Some(&info(Trust::Untrusted))
        ));
        assert!(!tls_meets(
            TlsSecurityLevel::Verify,
            Some(&info(Trust::Untrusted))
        ));
        assert!(!tls_meets(
            TlsSecurityLevel::Verify,
            Some(&info(Trust::Trusted))
        ));
        assert!(tls_meets(
            TlsSecurityLevel::Verify,
            Some(&info(Trust::Verified))
        ));
    }

    #[test]
    fn dane_levels_and_secure_never_take_a_foreign_connection() {
        for level in [
            TlsSecurityLevel::Dane,
            TlsSecurityLevel::DaneOnly,
            TlsSecurityLevel::Secure,
        ] {
            assert!(!tls_meets(level, Some(&info(Trust::Verified))));
        }
    }

    #[test]
    fn a_connection_verified_by_dane_or_a_name_list_does_not_suit_verify() {
        let by_other_names = TlsInfo {
            host_name_verified: false,
            ..info(Trust::Verified)
        };
        assert!(!tls_meets(TlsSecurityLevel::Verify, Some(&by_other_names)));
        assert!(tls_meets(TlsSecurityLevel::Encrypt, Some(&by_other_names)));
    }
}

//! The service extensions a server announces in its EHLO reply.

use super::command::MailParams;
use super::error::ProtoError;
use super::reply::{EnhancedCode, Reply};

/// What the server offers, from its EHLO reply. All false / empty after
/// HELO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE was announced (RFC 1870): `SIZE=` may be sent with MAIL FROM.
    pub size_supported: bool,
    /// The announced size limit in bytes; `None` for a bare `SIZE`, `SIZE 0`
    /// (no limit) or no SIZE at all.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eightbitmime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// AUTH mechanisms (RFC 4954), upper-case, without duplicates, from both
    /// `AUTH m1 m2` and the old `AUTH=m1 m2` form.
    pub auth: Vec<String>,
    /// CHUNKING (RFC 3030).
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
}

impl Capabilities {
    /// Reads the keywords of an EHLO reply. The first line (the server's
    /// name and greeting) is skipped; keywords are case-insensitive and
    /// unknown ones ignored. The reply's code is not checked.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    caps.size_supported = true;
                    caps.size = words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|&n| n > 0);
                }
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "CHUNKING" => caps.chunking = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "DSN" => caps.dsn = true,
                "AUTH" => caps.add_auth(words),
                _ => {
                    if let Some(first) = keyword.strip_prefix("AUTH=") {
                        caps.add_auth(std::iter::once(first).chain(words));
                    }
                }
            }
        }
        caps
    }

    /// Adds AUTH mechanisms, upper-cased, skipping duplicates and empties.
    fn add_auth<'a>(&mut self, mechanisms: impl Iterator<Item = &'a str>) {
        for m in mechanisms.filter(|m| !m.is_empty()) {
            let m = m.to_ascii_uppercase();
            if !self.auth.contains(&m) {
                self.auth.push(m);
            }
        }
    }

    /// The MAIL FROM parameters for a message of `size` bytes on this
    /// server: `SIZE=` when SIZE was announced, `BODY=8BITMIME` when the
    /// body is 8-bit and 8BITMIME was announced (otherwise the body is sent
    /// as it is, as Postfix does), `SMTPUTF8` when needed.
    ///
    /// Refuses, permanently, a message larger than the announced limit
    /// (5.3.4) and one that needs SMTPUTF8 when it is not offered (5.6.7).
    pub fn mail_params(
        &self,
        size: u64,
        body_8bit: bool,
        smtputf8: bool,
    ) -> Result<MailParams, ProtoError> {
        if let Some(limit) = self.size {
            if size > limit {
                return Err(ProtoError::Incompatible {
                    dsn: EnhancedCode::new(5, 3, 4),
                    reason: format!("message size {size} exceeds size limit {limit} of server"),
                });
            }
        }
        if smtputf8 && !self.smtputf8 {
            return Err(ProtoError::Incompatible {
                dsn: EnhancedCode::new(5, 6, 7),
                reason: "SMTPUTF8 is required, but was not offered by the server".to_string(),
            });
        }
        Ok(MailParams {
            size: self.size_supported.then_some(size),
            body_8bit: body_8bit && self.eightbitmime,
            smtputf8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Capabilities {
        Capabilities::from_ehlo(&Reply::new(
            250,
            lines.iter().map(|s| s.to_string()).collect(),
        ))
    }

    #[test]
    fn postfix_ehlo() {
        let caps = ehlo(&[
            "mx.example.net",
            "PIPELINING",
            "SIZE 10240000",
            "VRFY",
            "ETRN",
            "STARTTLS",
            "AUTH PLAIN LOGIN",
            "AUTH=PLAIN LOGIN",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ]);
        assert_eq!(
            caps,
            Capabilities {
                pipelining: true,
                size_supported: true,
                size: Some(10_240_000),
                eightbitmime: true,
                smtputf8: true,
                starttls: true,
                auth: vec!["PLAIN".into(), "LOGIN".into()],
                chunking: true,
                enhanced_status_codes: true,
                dsn: true,
            }
        );
    }

    #[test]
    fn first_line_is_skipped_and_case_ignored() {
        let caps = ehlo(&["PIPELINING is my name", "pipelining", "8bitmime"]);
        assert!(caps.pipelining && caps.eightbitmime);
        let caps = ehlo(&["PIPELINING"]);
        assert_eq!(caps, Capabilities::default());
    }

    #[test]
    fn size_forms() {
        let bare = ehlo(&["mx", "SIZE"]);
        assert!(bare.size_supported);
        assert_eq!(bare.size, None);
        let zero = ehlo(&["mx", "size 0"]);
        assert!(zero.size_supported);
        assert_eq!(zero.size, None);
        let junk = ehlo(&["mx", "SIZE lots"]);
        assert!(junk.size_supported);
        assert_eq!(junk.size, None);
        let none = ehlo(&["mx", "8BITMIME"]);
        assert!(!none.size_supported);
    }

    #[test]
    fn auth_forms() {
        assert_eq!(ehlo(&["mx", "AUTH=login plain"]).auth, ["LOGIN", "PLAIN"]);
        assert_eq!(
            ehlo(&["mx", "auth cram-md5 plain", "AUTH=PLAIN XOAUTH2"]).auth,
            ["CRAM-MD5", "PLAIN", "XOAUTH2"]
        );
        assert!(ehlo(&["mx", "AUTH"]).auth.is_empty());
        assert!(ehlo(&["mx", "AUTH="]).auth.is_empty());
        assert!(ehlo(&["mx", "AUTHX PLAIN"]).auth.is_empty());
    }

    #[test]
    fn blank_and_odd_lines_are_ignored() {
        let caps = ehlo(&["mx", "", "   ", "X-UNKNOWN 1 2", "  STARTTLS  "]);
        assert!(caps.starttls);
        assert!(!caps.pipelining);
    }

    #[test]
    fn mail_params_follow_the_server() {
        let plain = Capabilities::default();
        assert_eq!(
            plain.mail_params(5000, true, false),
            Ok(MailParams::default())
        );
        let rich = ehlo(&["mx", "SIZE 1000", "8BITMIME", "SMTPUTF8"]);
        assert_eq!(
            rich.mail_params(1000, true, true),
            Ok(MailParams {
                size: Some(1000),
                body_8bit: true,
                smtputf8: true
            })
        );
        let e = rich.mail_params(1001, false, false).unwrap_err();
        assert!(!e.is_transient());
        assert_eq!(e.dsn(), "5.3.4");
        assert_eq!(
            e.to_string(),
            "message size 1001 exceeds size limit 1000 of server"
        );
        let e = plain.mail_params(10, false, true).unwrap_err();
        assert_eq!(e.dsn(), "5.6.7");
        let unlimited = ehlo(&["mx", "SIZE 0"]);
        assert_eq!(
            unlimited
                .mail_params(u64::MAX, false, false)
                .map(|p| p.size),
            Ok(Some(u64::MAX))
        );
    }
}

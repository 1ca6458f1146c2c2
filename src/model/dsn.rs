//! What the submitter asked about delivery status notifications (RFC 3461:
//! NOTIFY, RET, ENVID, ORCPT) and the body type it declared (RFC 6152:
//! BODY). `sendmail -N/-R/-V/-B` fill it today; an SMTP injection listener
//! fills the same fields from its MAIL FROM and RCPT TO parameters. It
//! travels with the message from the maildrop file through the queue
//! record to delivery and the notices.

use std::fmt;

/// `RET`: how much of the message a failure notice returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnRet {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: only its header section.
    Headers,
}

impl DsnRet {
    /// Parses `FULL` or `HDRS`, case-insensitive.
    pub fn parse(s: &str) -> Option<DsnRet> {
        if s.eq_ignore_ascii_case("FULL") {
            Some(DsnRet::Full)
        } else if s.eq_ignore_ascii_case("HDRS") {
            Some(DsnRet::Headers)
        } else {
            None
        }
    }

    /// `FULL` or `HDRS`.
    pub fn as_str(self) -> &'static str {
        match self {
            DsnRet::Full => "FULL",
            DsnRet::Headers => "HDRS",
        }
    }
}

/// `BODY`: the body type the submitter declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

impl BodyType {
    /// Parses `7BIT` or `8BITMIME`, case-insensitive.
    pub fn parse(s: &str) -> Option<BodyType> {
        if s.eq_ignore_ascii_case("7BIT") {
            Some(BodyType::SevenBit)
        } else if s.eq_ignore_ascii_case("8BITMIME") {
            Some(BodyType::EightBitMime)
        } else {
            None
        }
    }

    /// `7BIT` or `8BITMIME`.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyType::SevenBit => "7BIT",
            BodyType::EightBitMime => "8BITMIME",
        }
    }
}

/// `NOTIFY` of one recipient: which notices its sender wants. Unspecified
/// (no NOTIFY given) behaves as RFC 3461 allows and Postfix does: failure
/// and delay notices, no success notice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Notify(u8);

impl Notify {
    /// No NOTIFY was given.
    pub const UNSPECIFIED: Notify = Notify(0);
    /// `NOTIFY=NEVER`: no notice at all.
    pub const NEVER: Notify = Notify(Notify::BIT_NEVER);
    /// Bit of `SUCCESS` in [`Notify::bits`].
    pub const BIT_SUCCESS: u8 = 1;
    /// Bit of `FAILURE`.
    pub const BIT_FAILURE: u8 = 2;
    /// Bit of `DELAY`.
    pub const BIT_DELAY: u8 = 4;
    /// Bit of `NEVER` (never with another bit).
    pub const BIT_NEVER: u8 = 8;

    /// The value with these bits, or `None` for a combination RFC 3461
    /// does not allow (`NEVER` with anything else, unknown bits).
    pub fn from_bits(bits: u8) -> Option<Notify> {
        let known = Notify::BIT_SUCCESS | Notify::BIT_FAILURE | Notify::BIT_DELAY;
        let ok = bits == Notify::BIT_NEVER || bits & !known == 0;
        ok.then_some(Notify(bits))
    }

    /// The bits, as stored in the queue record (0: unspecified).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Parses `NEVER` or a comma-separated list of `SUCCESS`, `FAILURE`,
    /// `DELAY` (case-insensitive; blanks around items allowed and a word
    /// may repeat, as `sendmail -N` takes them). Refuses an empty list, an
    /// empty item, an unknown word, `NEVER` with another word, and any
    /// control character.
    pub fn parse(list: &str) -> Option<Notify> {
        if list.chars().any(char::is_control) {
            return None;
        }
        let mut bits = 0u8;
        for item in list.split(',') {
            let item = item.trim_matches(' ');
            bits |= if item.eq_ignore_ascii_case("NEVER") {
                Notify::BIT_NEVER
            } else if item.eq_ignore_ascii_case("SUCCESS") {
                Notify::BIT_SUCCESS
            } else if item.eq_ignore_ascii_case("FAILURE") {
                Notify::BIT_FAILURE
            } else if item.eq_ignore_ascii_case("DELAY") {
                Notify::BIT_DELAY
            } else {
                return None;
            };
        }
        if bits & Notify::BIT_NEVER != 0 && bits != Notify::BIT_NEVER {
            return None;
        }
        Some(Notify(bits))
    }

    /// True when NOTIFY was given.
    pub fn is_specified(self) -> bool {
        self.0 != 0
    }

    /// True when a failure notice is wanted (also when unspecified).
    pub fn wants_failure(self) -> bool {
        !self.is_specified() || self.0 & Notify::BIT_FAILURE != 0
    }

    /// True when a delay notice is wanted (also when unspecified).
    pub fn wants_delay(self) -> bool {
        !self.is_specified() || self.0 & Notify::BIT_DELAY != 0
    }

    /// True when a success notice is wanted (only when asked for).
    pub fn wants_success(self) -> bool {
        self.0 & Notify::BIT_SUCCESS != 0
    }
}

impl fmt::Display for Notify {
    /// `NEVER`, or the list in the order `SUCCESS,FAILURE,DELAY`; empty
    /// when unspecified.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Notify::BIT_NEVER {
            return f.write_str("NEVER");
        }
        let words = [
            (Notify::BIT_SUCCESS, "SUCCESS"),
            (Notify::BIT_FAILURE, "FAILURE"),
            (Notify::BIT_DELAY, "DELAY"),
        ];
        let list: Vec<&str> = words
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, w)| *w)
            .collect();
        f.write_str(&list.join(","))
    }
}

/// Longest ENVID in characters (RFC 3461 section 4.4).
pub const MAX_ENVID: usize = 100;
/// Longest ORCPT in characters (RFC 3461 section 4.2: 500 for the whole
/// parameter, xtext-encoded; the decoded value is never longer).
pub const MAX_ORCPT: usize = 500;

/// True when `envid` is a usable ENVID once decoded: 1 to 100 printable
/// ASCII characters or blanks (RFC 3461 section 4.4).
pub fn valid_envid(envid: &str) -> bool {
    !envid.is_empty() && envid.len() <= MAX_ENVID && envid.bytes().all(|b| (32..=126).contains(&b))
}

/// True when `orcpt` is a usable decoded ORCPT: `addr-type;address` with an
/// atom as the type, at most 500 octets, no control characters.
pub fn valid_orcpt(orcpt: &str) -> bool {
    let Some((kind, address)) = orcpt.split_once(';') else {
        return false;
    };
    !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
        && !address.trim().is_empty()
        && orcpt.len() <= MAX_ORCPT
        && !orcpt.chars().any(char::is_control)
}

/// The DSN requests of one recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptDsn {
    /// `NOTIFY`.
    pub notify: Notify,
    /// `ORCPT`, decoded: `addr-type;address` (e.g. `rfc822;a@b.example`),
    /// reported as `Original-Recipient`.
    pub orcpt: Option<String>,
}

/// The DSN requests and declared body type of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DsnParams {
    /// `RET`.
    pub ret: Option<DsnRet>,
    /// `ENVID`, decoded (see [`valid_envid`]), reported as
    /// `Original-Envelope-Id`.
    pub envid: Option<String>,
    /// `BODY` as declared by the submitter.
    pub body: Option<BodyType>,
    /// One entry per envelope recipient, in envelope order; empty when no
    /// recipient has any request (all unspecified).
    pub rcpts: Vec<RcptDsn>,
}

impl DsnParams {
    /// True when nothing was asked: no field set and no recipient request.
    pub fn is_empty(&self) -> bool {
        self.ret.is_none()
            && self.envid.is_none()
            && self.body.is_none()
            && self.rcpts.iter().all(|r| *r == RcptDsn::default())
    }

    /// The NOTIFY of recipient `i` (unspecified when it has none).
    pub fn notify(&self, i: usize) -> Notify {
        self.rcpts.get(i).map(|r| r.notify).unwrap_or_default()
    }

    /// The ORCPT of recipient `i`.
    pub fn orcpt(&self, i: usize) -> Option<&str> {
        self.rcpts.get(i).and_then(|r| r.orcpt.as_deref())
    }

    /// The same `notify` for each of `n` recipients (no ORCPT), as
    /// `sendmail -N` asks.
    pub fn set_notify_all(&mut self, notify: Notify, n: usize) {
        self.rcpts = vec![
            RcptDsn {
                notify,
                orcpt: None,
            };
            n
        ];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_parses_and_prints() {
        assert_eq!(Notify::parse("never"), Some(Notify::NEVER));
        assert_eq!(
            Notify::parse("NEVER").map(|n| n.to_string()),
            Some("NEVER".into())
        );
        let n = Notify::parse("delay, Failure,success,delay").unwrap();
        assert_eq!(n.to_string(), "SUCCESS,FAILURE,DELAY");
        assert!(n.wants_success() && n.wants_failure() && n.wants_delay());
        let f = Notify::parse("failure").unwrap();
        assert!(f.wants_failure() && !f.wants_delay() && !f.wants_success());
        for bad in [
            "",
            "never,success",
            "failure,",
            ",delay",
            "sometimes",
            "never\r\n",
            "\tnever",
        ] {
            assert_eq!(Notify::parse(bad), None, "{bad:?}");
        }
        assert!(!Notify::NEVER.wants_failure() && !Notify::NEVER.wants_delay());
        let u = Notify::UNSPECIFIED;
        assert!(u.wants_failure() && u.wants_delay() && !u.wants_success());
        assert_eq!(u.to_string(), "");
    }

    #[test]
    fn notify_bits_round_trip_and_refuse_nonsense() {
        for n in ["never", "success", "failure,delay", "success,failure,delay"] {
            let n = Notify::parse(n).unwrap();
            assert_eq!(Notify::from_bits(n.bits()), Some(n));
        }
        assert_eq!(Notify::from_bits(0), Some(Notify::UNSPECIFIED));
        assert_eq!(
            Notify::from_bits(Notify::BIT_NEVER | Notify::BIT_DELAY),
            None
        );
        assert_eq!(Notify::from_bits(16), None);
    }

    #[test]
    fn ret_body_envid_orcpt() {
        assert_eq!(DsnRet::parse("hdrs"), Some(DsnRet::Headers));
        assert_eq!(DsnRet::parse("Full").map(DsnRet::as_str), Some("FULL"));
        assert_eq!(DsnRet::parse("all"), None);
        assert_eq!(BodyType::parse("8bitmime"), Some(BodyType::EightBitMime));
        assert_eq!(BodyType::parse("7BIT").map(BodyType::as_str), Some("7BIT"));
        assert_eq!(BodyType::parse("binarymime"), None);
        assert!(valid_envid("abc 123"));
        assert!(valid_envid(&"x".repeat(100)));
        for bad in ["", "a\tb", "é", "a\r\nb"] {
            assert!(!valid_envid(bad), "{bad:?}");
        }
        assert!(!valid_envid(&"x".repeat(101)));
        assert!(valid_orcpt("rfc822;a@b.example"));
        assert!(valid_orcpt("utf-8;j\u{f6}rg@b.example"));
        for bad in [
            "a@b.example",
            ";a@b",
            "rfc822;",
            "rfc 822;a@b",
            "rfc822;a\r\n@b",
        ] {
            assert!(!valid_orcpt(bad), "{bad:?}");
        }
    }

    #[test]
    fn params_per_recipient() {
        let mut p = DsnParams::default();
        assert!(p.is_empty());
        p.set_notify_all(Notify::UNSPECIFIED, 3);
        assert!(p.is_empty(), "unspecified requests are no requests");
        p.set_notify_all(Notify::NEVER, 2);
        assert!(!p.is_empty());
        assert_eq!(p.notify(1), Notify::NEVER);
        assert_eq!(p.notify(7), Notify::UNSPECIFIED);
        assert_eq!(p.orcpt(0), None);
    }
}

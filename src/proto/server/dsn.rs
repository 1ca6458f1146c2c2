//! What a client asked about delivery status notifications (RFC 3461:
//! `RET`, `ENVID` on MAIL; `NOTIFY`, `ORCPT` on RCPT) and the body type it
//! declared (RFC 6152 `BODY`), as plain data. The names and shapes are
//! those of the model's DSN types so that the two can be unified.

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
    pub fn parse(s: &[u8]) -> Option<DsnRet> {
        if s.eq_ignore_ascii_case(b"FULL") {
            Some(DsnRet::Full)
        } else if s.eq_ignore_ascii_case(b"HDRS") {
            Some(DsnRet::Headers)
        } else {
            None
        }
    }
}

/// `BODY`: the body type the client declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

impl BodyType {
    /// Parses `7BIT` or `8BITMIME`, case-insensitive.
    pub fn parse(s: &[u8]) -> Option<BodyType> {
        if s.eq_ignore_ascii_case(b"7BIT") {
            Some(BodyType::SevenBit)
        } else if s.eq_ignore_ascii_case(b"8BITMIME") {
            Some(BodyType::EightBitMime)
        } else {
            None
        }
    }
}

/// `NOTIFY` of one recipient as bits; 0 when no NOTIFY was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Notify(u8);

impl Notify {
    /// No NOTIFY was given.
    pub const UNSPECIFIED: Notify = Notify(0);
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify(Notify::BIT_NEVER);
    /// Bit of `SUCCESS`.
    pub const BIT_SUCCESS: u8 = 1;
    /// Bit of `FAILURE`.
    pub const BIT_FAILURE: u8 = 2;
    /// Bit of `DELAY`.
    pub const BIT_DELAY: u8 = 4;
    /// Bit of `NEVER` (never with another bit).
    pub const BIT_NEVER: u8 = 8;

    /// Parses `NEVER` or a comma-separated list of `SUCCESS`, `FAILURE`,
    /// `DELAY` (case-insensitive, RFC 3461 section 4.1). Refuses an empty
    /// item, an unknown word and `NEVER` with another word.
    pub fn parse(list: &[u8]) -> Option<Notify> {
        let mut bits = 0u8;
        for item in list.split(|&b| b == b',') {
            bits |= if item.eq_ignore_ascii_case(b"NEVER") {
                Notify::BIT_NEVER
            } else if item.eq_ignore_ascii_case(b"SUCCESS") {
                Notify::BIT_SUCCESS
            } else if item.eq_ignore_ascii_case(b"FAILURE") {
                Notify::BIT_FAILURE
            } else if item.eq_ignore_ascii_case(b"DELAY") {
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

    /// The bits (0: unspecified).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// True when NOTIFY was given.
    pub fn is_specified(self) -> bool {
        self.0 != 0
    }
}

/// Longest decoded ENVID (RFC 3461 section 4.4: 100 characters).
pub const MAX_ENVID: usize = 100;

/// Longest decoded ORCPT (RFC 3461 section 4.2: 500 characters).
pub const MAX_ORCPT: usize = 500;

/// The DSN requests of one recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptDsn {
    /// `NOTIFY`.
    pub notify: Notify,
    /// `ORCPT`, xtext-decoded: `addr-type;address`, e.g. `rfc822;a@b.example`.
    pub orcpt: Option<String>,
}

/// The DSN requests and declared body type of one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DsnParams {
    /// `RET`.
    pub ret: Option<DsnRet>,
    /// `ENVID`, xtext-decoded: 1 to 100 printable ASCII characters.
    pub envid: Option<String>,
    /// `BODY` as declared.
    pub body: Option<BodyType>,
    /// One entry per accepted recipient, in envelope order.
    pub rcpts: Vec<RcptDsn>,
}

impl DsnParams {
    /// True when nothing was asked.
    pub fn is_empty(&self) -> bool {
        self.ret.is_none()
            && self.envid.is_none()
            && self.body.is_none()
            && self.rcpts.iter().all(|r| *r == RcptDsn::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_lists() {
        assert_eq!(Notify::parse(b"never"), Some(Notify::NEVER));
        let n = Notify::parse(b"SUCCESS,failure,DELAY").unwrap();
        assert_eq!(n.bits(), 7);
        assert!(n.is_specified());
        for bad in [
            &b""[..],
            b"never,success",
            b"failure,",
            b"sometimes",
            b"a b",
        ] {
            assert_eq!(Notify::parse(bad), None, "{bad:?}");
        }
        assert!(!Notify::UNSPECIFIED.is_specified());
    }

    #[test]
    fn ret_and_body() {
        assert_eq!(DsnRet::parse(b"hdrs"), Some(DsnRet::Headers));
        assert_eq!(DsnRet::parse(b"FULL"), Some(DsnRet::Full));
        assert_eq!(DsnRet::parse(b"ALL"), None);
        assert_eq!(BodyType::parse(b"8bitmime"), Some(BodyType::EightBitMime));
        assert_eq!(BodyType::parse(b"7BIT"), Some(BodyType::SevenBit));
        assert_eq!(BodyType::parse(b"BINARYMIME"), None);
        let mut d = DsnParams::default();
        assert!(d.is_empty());
        d.rcpts.push(RcptDsn::default());
        assert!(d.is_empty());
        d.rcpts[0].notify = Notify::NEVER;
        assert!(!d.is_empty());
    }
}

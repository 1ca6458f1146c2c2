//! MAIL FROM and RCPT TO parameters (RFC 5321 esmtp-param), parsed and
//! checked against the extensions the session announced: SIZE (RFC 1870),
//! BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET, ENVID, NOTIFY, ORCPT
//! (RFC 3461), AUTH (RFC 4954, accepted and ignored). A parameter of an
//! extension that was not announced, or an unknown one, gets `555`; a bad
//! value `501`; a parameter given twice `501`.

use super::reply::Reply;
use crate::mail::xtext;
use crate::model::dsn::{valid_envid, valid_orcpt, BodyType, DsnRet, Notify, RcptDsn};

/// The MAIL FROM parameters of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE`: the client's estimate of the message size.
    pub size: Option<u64>,
    /// `BODY`.
    pub body: Option<BodyType>,
    /// `SMTPUTF8` was given: addresses and headers may be UTF-8.
    pub smtputf8: bool,
    /// `RET`.
    pub ret: Option<DsnRet>,
    /// `ENVID`, decoded.
    pub envid: Option<String>,
}

/// Which parameters the session accepts: what it announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepts {
    /// SIZE.
    pub size: bool,
    /// 8BITMIME (BODY).
    pub eight_bit_mime: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// DSN (RET, ENVID, NOTIFY, ORCPT).
    pub dsn: bool,
    /// AUTH (the AUTH parameter of MAIL).
    pub auth: bool,
}

const UNSUPPORTED: Reply = Reply::fixed(555, "5.5.4", "Error: unsupported parameter");
const BAD_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Error: bad parameter syntax");
const DUPLICATE: Reply = Reply::fixed(501, "5.5.4", "Error: duplicate parameter");
const BAD_SIZE: Reply = Reply::fixed(501, "5.5.4", "Error: bad SIZE parameter");
const BAD_BODY: Reply = Reply::fixed(501, "5.5.4", "Error: bad BODY parameter");
const BAD_RET: Reply = Reply::fixed(501, "5.5.4", "Error: bad RET parameter");
const BAD_ENVID: Reply = Reply::fixed(501, "5.5.4", "Error: bad ENVID parameter");
const BAD_AUTH: Reply = Reply::fixed(501, "5.5.4", "Error: bad AUTH parameter");
const BAD_NOTIFY: Reply = Reply::fixed(501, "5.5.4", "Error: bad NOTIFY parameter");
const BAD_ORCPT: Reply = Reply::fixed(501, "5.5.4", "Error: bad ORCPT parameter");

/// Iterates over `KEY[=VALUE]` parameters separated by single or repeated
/// spaces. The key must be an esmtp-keyword and the value printable ASCII
/// without `=`; anything else is a syntax error.
fn each(s: &[u8]) -> impl Iterator<Item = Result<(&[u8], Option<&[u8]>), Reply>> {
    s.split(|&b| b == b' ').filter(|p| !p.is_empty()).map(|p| {
        let (key, value) = match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], Some(&p[i + 1..])),
            None => (p, None),
        };
        let key_ok = key.first().is_some_and(u8::is_ascii_alphanumeric)
            && key.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.map_or(true, |v| {
            !v.is_empty() && v.iter().all(|&b| (33..=126).contains(&b) && b != b'=')
        });
        if key_ok && value_ok {
            Ok((key, value))
        } else {
            Err(BAD_SYNTAX)
        }
    })
}

/// A value as text (values are printable ASCII, checked by [`each`]).
fn text(value: Option<&[u8]>) -> Option<&str> {
    value.and_then(|v| std::str::from_utf8(v).ok())
}

/// Marks `bit` in `seen`; a duplicate is an error.
fn once(seen: &mut u8, bit: u8) -> Result<(), Reply> {
    if *seen & bit != 0 {
        return Err(DUPLICATE);
    }
    *seen |= bit;
    Ok(())
}

/// Parses the parameters of MAIL FROM.
pub fn mail(s: &[u8], accepts: Accepts) -> Result<MailParams, Reply> {
    let mut p = MailParams::default();
    let mut seen = 0u8;
    for item in each(s) {
        let (key, value) = item?;
        let is = |name: &[u8]| key.eq_ignore_ascii_case(name);
        if is(b"SIZE") && accepts.size {
            once(&mut seen, 1)?;
            let v = text(value).ok_or(BAD_SIZE)?;
            if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BAD_SIZE);
            }
            p.size = Some(v.parse().map_err(|_| BAD_SIZE)?);
        } else if is(b"BODY") && accepts.eight_bit_mime {
            once(&mut seen, 2)?;
            p.body = Some(text(value).and_then(BodyType::parse).ok_or(BAD_BODY)?);
        } else if is(b"SMTPUTF8") && accepts.smtputf8 && value.is_none() {
            once(&mut seen, 4)?;
            p.smtputf8 = true;
        } else if is(b"RET") && accepts.dsn {
            once(&mut seen, 8)?;
            p.ret = Some(text(value).and_then(DsnRet::parse).ok_or(BAD_RET)?);
        } else if is(b"ENVID") && accepts.dsn {
            once(&mut seen, 16)?;
            let envid = text(value).and_then(xtext::decode).ok_or(BAD_ENVID)?;
            if !valid_envid(&envid) {
                return Err(BAD_ENVID);
            }
            p.envid = Some(envid);
        } else if is(b"AUTH") && accepts.auth {
            once(&mut seen, 32)?;
            // RFC 4954 section 5: a trusted submitter's identity; this
            // server trusts none, so the value is checked and ignored.
            let v = text(value).ok_or(BAD_AUTH)?;
            if v != "<>" && xtext::decode(v).is_none() {
                return Err(BAD_AUTH);
            }
        } else {
            return Err(UNSUPPORTED);
        }
    }
    Ok(p)
}

/// Parses the parameters of RCPT TO.
pub fn rcpt(s: &[u8], accepts: Accepts) -> Result<RcptDsn, Reply> {
    let mut dsn = RcptDsn::default();
    let mut seen = 0u8;
    for item in each(s) {
        let (key, value) = item?;
        if key.eq_ignore_ascii_case(b"NOTIFY") && accepts.dsn {
            once(&mut seen, 1)?;
            dsn.notify = text(value).and_then(Notify::parse).ok_or(BAD_NOTIFY)?;
        } else if key.eq_ignore_ascii_case(b"ORCPT") && accepts.dsn {
            once(&mut seen, 2)?;
            let orcpt = text(value).and_then(xtext::decode).ok_or(BAD_ORCPT)?;
            if !valid_orcpt(&orcpt) {
                return Err(BAD_ORCPT);
            }
            dsn.orcpt = Some(orcpt);
        } else {
            return Err(UNSUPPORTED);
        }
    }
    Ok(dsn)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Accepts = Accepts {
        size: true,
        eight_bit_mime: true,
        smtputf8: true,
        dsn: true,
        auth: true,
    };

    #[test]
    fn mail_parameters() {
        let p = mail(
            b"size=1000  BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=QQ+2B1 AUTH=<>",
            ALL,
        )
        .unwrap();
        assert_eq!(
            p,
            MailParams {
                size: Some(1000),
                body: Some(BodyType::EightBitMime),
                smtputf8: true,
                ret: Some(DsnRet::Headers),
                envid: Some("QQ+1".into()),
            }
        );
        assert_eq!(mail(b"", ALL), Ok(MailParams::default()));
        assert_eq!(mail(b"AUTH=a+2Bb@c", ALL).map(|p| p.size), Ok(None));
    }

    #[test]
    fn mail_refusals() {
        let code = |s: &[u8], a| mail(s, a).map(|_| 0).unwrap_or_else(|r| r.code);
        for (s, c) in [
            (&b"SIZE=x"[..], 501),
            (b"SIZE", 501),
            (b"SIZE=99999999999999999999999", 501),
            (b"SIZE=1 SIZE=2", 501),
            (b"BODY=BINARYMIME", 501),
            (b"SMTPUTF8=yes", 555),
            (b"RET=ALL", 501),
            (b"ENVID=", 501),
            (b"ENVID=a+0Db", 501),
            (b"AUTH=a=b", 501),
            (b"FOO=bar", 555),
            (b"=x", 501),
            (b"SIZE==1", 501),
        ] {
            assert_eq!(code(s, ALL), c, "{s:?}");
        }
        let long = format!("ENVID={}", "e".repeat(101));
        assert_eq!(code(long.as_bytes(), ALL), 501);
        let none = Accepts::default();
        for s in [
            &b"SIZE=1"[..],
            b"BODY=7BIT",
            b"SMTPUTF8",
            b"RET=FULL",
            b"AUTH=<>",
        ] {
            assert_eq!(code(s, none), 555, "{s:?} needs its extension");
        }
    }

    #[test]
    fn rcpt_parameters() {
        let d = rcpt(b"NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb@c.example", ALL).unwrap();
        assert_eq!(d.notify.bits(), Notify::BIT_SUCCESS | Notify::BIT_DELAY);
        assert_eq!(d.orcpt.as_deref(), Some("rfc822;a+b@c.example"));
        let code = |s: &[u8], a| rcpt(s, a).map(|_| 0).unwrap_or_else(|r| r.code);
        for (s, c) in [
            (&b"NOTIFY=NEVER,SUCCESS"[..], 501),
            (b"NOTIFY", 501),
            (b"NOTIFY=NEVER NOTIFY=NEVER", 501),
            (b"ORCPT=a@b", 501),
            (b"ORCPT=;a@b", 501),
            (b"ORCPT=rfc822;", 501),
            (b"ORCPT=rfc822;a+0A", 501),
            (b"SIZE=1", 555),
        ] {
            assert_eq!(code(s, ALL), c, "{s:?}");
        }
        assert_eq!(code(b"NOTIFY=NEVER", Accepts::default()), 555);
    }
}

//! Command encoders (RFC 5321 section 4.1) and the names of the protocol
//! stages.
//!
//! Each encoder appends one command with its CRLF to `out`. Those that take
//! caller data check it first and append nothing when it is refused, so a
//! CR or LF in an address can never start a second command.

use std::fmt;

use super::error::ProtoError;
use crate::mail::xtext;
#[cfg(test)]
use crate::model::dsn::Notify;
use crate::model::dsn::{DsnRet, RcptDsn};

/// Which command (or the greeting) a reply answers; used in errors and in
/// per-recipient results, and displayed as Postfix's log wording (`RCPT TO
/// command`, `end of DATA command`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The server's greeting when the connection opens.
    Greeting,
    /// EHLO.
    Ehlo,
    /// HELO.
    Helo,
    /// STARTTLS.
    StartTls,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA.
    Data,
    /// The `.` that ends the message body.
    EndOfData,
    /// RSET.
    Rset,
    /// QUIT.
    Quit,
}

impl Stage {
    /// Postfix's name for it, as in `(in reply to RCPT TO command)`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Greeting => "initial greeting",
            Stage::Ehlo => "EHLO command",
            Stage::Helo => "HELO command",
            Stage::StartTls => "STARTTLS command",
            Stage::Mail => "MAIL FROM command",
            Stage::Rcpt => "RCPT TO command",
            Stage::Data => "DATA command",
            Stage::EndOfData => "end of DATA command",
            Stage::Rset => "RSET command",
            Stage::Quit => "QUIT command",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ESMTP parameters of MAIL FROM. Set only those the server announced
/// (see [`Capabilities::mail_params`](super::Capabilities::mail_params)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870): the message size in bytes.
    pub size: Option<u64>,
    /// `BODY=8BITMIME` (RFC 6152).
    pub body_8bit: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
}

/// The RFC 3461 requests of one transaction: RET and ENVID on MAIL,
/// NOTIFY and ORCPT on each RCPT (`rcpts` parallel to the recipients, or
/// empty). Given only to a server that announced DSN; the default asks
/// nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct DsnRequest<'a> {
    /// `RET=FULL|HDRS`.
    pub ret: Option<DsnRet>,
    /// `ENVID`, decoded (sent as xtext).
    pub envid: Option<&'a str>,
    /// Each recipient's NOTIFY and ORCPT.
    pub rcpts: &'a [RcptDsn],
}

/// The terminator after the message body. The stored body is already
/// dot-stuffed and ends in CRLF, so this is all that is left to send.
pub const END_OF_DATA: &[u8] = b".\r\n";

/// `EHLO name`.
pub fn ehlo(out: &mut Vec<u8>, name: &str) -> Result<(), ProtoError> {
    check_hostname(name)?;
    line(out, &["EHLO ", name]);
    Ok(())
}

/// `HELO name`.
pub fn helo(out: &mut Vec<u8>, name: &str) -> Result<(), ProtoError> {
    check_hostname(name)?;
    line(out, &["HELO ", name]);
    Ok(())
}

/// `MAIL FROM:<sender>` with `params`; an empty sender is the null sender
/// `<>`.
pub fn mail_from(
    out: &mut Vec<u8>,
    sender: &str,
    params: &MailParams,
    dsn: &DsnRequest<'_>,
) -> Result<(), ProtoError> {
    check_address("sender", sender)?;
    out.extend_from_slice(b"MAIL FROM:<");
    out.extend_from_slice(sender.as_bytes());
    out.push(b'>');
    if let Some(size) = params.size {
        out.extend_from_slice(format!(" SIZE={size}").as_bytes());
    }
    if params.body_8bit {
        out.extend_from_slice(b" BODY=8BITMIME");
    }
    if params.smtputf8 {
        out.extend_from_slice(b" SMTPUTF8");
    }
    if let Some(ret) = dsn.ret {
        out.extend_from_slice(b" RET=");
        out.extend_from_slice(ret.as_str().as_bytes());
    }
    if let Some(envid) = dsn.envid {
        out.extend_from_slice(b" ENVID=");
        out.extend_from_slice(xtext::encode(envid).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `RCPT TO:<recipient>`; the recipient must not be empty.
pub fn rcpt_to(out: &mut Vec<u8>, recipient: &str) -> Result<(), ProtoError> {
    rcpt_to_with(out, recipient, None)
}

/// `RCPT TO:<recipient>` with the recipient's NOTIFY and ORCPT (RFC 3461)
/// when it has any: `NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c.example`.
pub fn rcpt_to_with(
    out: &mut Vec<u8>,
    recipient: &str,
    dsn: Option<&RcptDsn>,
) -> Result<(), ProtoError> {
    check_recipient(recipient)?;
    out.extend_from_slice(b"RCPT TO:<");
    out.extend_from_slice(recipient.as_bytes());
    out.push(b'>');
    if let Some(d) = dsn {
        if d.notify.is_specified() {
            out.extend_from_slice(format!(" NOTIFY={}", d.notify).as_bytes());
        }
        if let Some((kind, address)) = d.orcpt.as_deref().and_then(|o| o.split_once(';')) {
            out.extend_from_slice(b" ORCPT=");
            out.extend_from_slice(kind.as_bytes());
            out.push(b';');
            out.extend_from_slice(xtext::encode(address).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `DATA`.
pub fn data(out: &mut Vec<u8>) {
    out.extend_from_slice(b"DATA\r\n");
}

/// The end of the message body: [`END_OF_DATA`].
pub fn end_of_data(out: &mut Vec<u8>) {
    out.extend_from_slice(END_OF_DATA);
}

/// `RSET`.
pub fn rset(out: &mut Vec<u8>) {
    out.extend_from_slice(b"RSET\r\n");
}

/// `QUIT`.
pub fn quit(out: &mut Vec<u8>) {
    out.extend_from_slice(b"QUIT\r\n");
}

/// `STARTTLS`.
pub fn starttls(out: &mut Vec<u8>) {
    out.extend_from_slice(b"STARTTLS\r\n");
}

/// Appends `parts` and a CRLF.
fn line(out: &mut Vec<u8>, parts: &[&str]) {
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Checks that `addr` can be a RCPT TO address: not empty, and see
/// [`check_address`]. Lets the caller bounce one bad recipient instead of
/// failing a whole [`Transaction`](super::Transaction).
pub fn check_recipient(addr: &str) -> Result<(), ProtoError> {
    check_address("recipient", addr)?;
    if addr.is_empty() {
        return Err(ProtoError::InvalidAddress {
            what: "recipient",
            value: String::new(),
        });
    }
    Ok(())
}

/// Checks that `addr` can go between `<` and `>` in a command: no control
/// characters (CR and LF among them) and no angle brackets. `what` names it
/// in the error (`sender` or `recipient`). Non-ASCII is allowed: whether the
/// server may see it (SMTPUTF8) is the caller's decision.
pub fn check_address(what: &'static str, addr: &str) -> Result<(), ProtoError> {
    if addr.chars().any(|c| c.is_control() || c == '<' || c == '>') {
        return Err(ProtoError::InvalidAddress {
            what,
            value: addr.to_string(),
        });
    }
    Ok(())
}

/// A host name or address literal: not empty, no white space, no controls.
fn check_hostname(name: &str) -> Result<(), ProtoError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ProtoError::InvalidHostname(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(
        f: impl FnOnce(&mut Vec<u8>) -> Result<(), ProtoError>,
    ) -> Result<String, ProtoError> {
        let mut out = b"previous\r\n".to_vec();
        let r = f(&mut out);
        let text = String::from_utf8(out).unwrap();
        let rest = text.strip_prefix("previous\r\n").unwrap().to_string();
        match r {
            Ok(()) => Ok(rest),
            Err(e) => {
                assert_eq!(rest, "", "nothing appended on error");
                Err(e)
            }
        }
    }

    #[test]
    fn simple_commands() {
        assert_eq!(
            encoded(|o| ehlo(o, "mx.example.org")).unwrap(),
            "EHLO mx.example.org\r\n"
        );
        assert_eq!(
            encoded(|o| helo(o, "[192.0.2.1]")).unwrap(),
            "HELO [192.0.2.1]\r\n"
        );
        let mut out = Vec::new();
        data(&mut out);
        rset(&mut out);
        starttls(&mut out);
        end_of_data(&mut out);
        quit(&mut out);
        assert_eq!(out, b"DATA\r\nRSET\r\nSTARTTLS\r\n.\r\nQUIT\r\n");
    }

    #[test]
    fn mail_from_with_params() {
        let none = MailParams::default();
        let no = DsnRequest::default();
        assert_eq!(
            encoded(|o| mail_from(o, "a@b.example", &none, &no)).unwrap(),
            "MAIL FROM:<a@b.example>\r\n"
        );
        assert_eq!(
            encoded(|o| mail_from(o, "", &none, &no)).unwrap(),
            "MAIL FROM:<>\r\n"
        );
        let dsn = DsnRequest {
            ret: Some(DsnRet::Headers),
            envid: Some("id+1 x"),
            rcpts: &[],
        };
        assert_eq!(
            encoded(|o| mail_from(o, "a@b", &none, &dsn)).unwrap(),
            "MAIL FROM:<a@b> RET=HDRS ENVID=id+2B1+20x\r\n"
        );
        let r = RcptDsn {
            notify: Notify::parse("success,failure").unwrap(),
            orcpt: Some("rfc822;a+b@c.example".into()),
        };
        assert_eq!(
            encoded(|o| rcpt_to_with(o, "a@c.example", Some(&r))).unwrap(),
            "RCPT TO:<a@c.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c.example\r\n"
        );
        let never = RcptDsn {
            notify: Notify::NEVER,
            orcpt: None,
        };
        assert_eq!(
            encoded(|o| rcpt_to_with(o, "a@c", Some(&never))).unwrap(),
            "RCPT TO:<a@c> NOTIFY=NEVER\r\n"
        );
        let all = MailParams {
            size: Some(2048),
            body_8bit: true,
            smtputf8: true,
        };
        assert_eq!(
            encoded(|o| mail_from(o, "ü@b.example", &all, &no)).unwrap(),
            "MAIL FROM:<ü@b.example> SIZE=2048 BODY=8BITMIME SMTPUTF8\r\n"
        );
        let size0 = MailParams {
            size: Some(0),
            ..MailParams::default()
        };
        assert_eq!(
            encoded(|o| mail_from(o, "a@b", &size0, &no)).unwrap(),
            "MAIL FROM:<a@b> SIZE=0\r\n"
        );
    }

    #[test]
    fn rcpt_to_encodes() {
        assert_eq!(
            encoded(|o| rcpt_to(o, "r@c.example")).unwrap(),
            "RCPT TO:<r@c.example>\r\n"
        );
    }

    #[test]
    fn injection_is_refused() {
        let p = MailParams::default();
        for bad in [
            "a@b\r\nRCPT TO:<x@y>",
            "a@b\nDATA",
            "a@b\r",
            "a@b>",
            "<a@b",
            "a\0b",
            "a\tb",
        ] {
            let e = encoded(|o| mail_from(o, bad, &p, &DsnRequest::default())).unwrap_err();
            assert!(
                matches!(e, ProtoError::InvalidAddress { what: "sender", .. }),
                "{bad:?}"
            );
            assert!(!e.is_transient());
            let e = encoded(|o| rcpt_to(o, bad)).unwrap_err();
            assert!(
                matches!(
                    e,
                    ProtoError::InvalidAddress {
                        what: "recipient",
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
        assert!(encoded(|o| rcpt_to(o, "")).is_err(), "empty recipient");
        for bad in ["", "a b", "a\r\nMAIL", "a\n"] {
            let e = encoded(|o| ehlo(o, bad)).unwrap_err();
            assert_eq!(e, ProtoError::InvalidHostname(bad.to_string()));
            assert!(encoded(|o| helo(o, bad)).is_err());
        }
    }

    #[test]
    fn stage_names() {
        assert_eq!(Stage::Rcpt.to_string(), "RCPT TO command");
        assert_eq!(Stage::EndOfData.to_string(), "end of DATA command");
    }
}

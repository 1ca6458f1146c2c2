//! Command encoders (RFC 5321 section 4.1) and the names of the protocol
//! stages.
//!
//! Each encoder appends one command with its CRLF to `out`. Those that take
//! caller data check it first and append nothing when it is refused, so a
//! CR or LF in an address can never start a second command.

use std::fmt;

use super::error::ProtoError;

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
pub fn mail_from(out: &mut Vec<u8>, sender: &str, params: &MailParams) -> Result<(), ProtoError> {
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
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `RCPT TO:<recipient>`; the recipient must not be empty.
pub fn rcpt_to(out: &mut Vec<u8>, recipient: &str) -> Result<(), ProtoError> {
    check_recipient(recipient)?;
    line(out, &["RCPT TO:<", recipient, ">"]);
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
        assert_eq!(
            encoded(|o| mail_from(o, "a@b.example", &none)).unwrap(),
            "MAIL FROM:<a@b.example>\r\n"
        );
        assert_eq!(
            encoded(|o| mail_from(o, "", &none)).unwrap(),
            "MAIL FROM:<>\r\n"
        );
        let all = MailParams {
            size: Some(2048),
            body_8bit: true,
            smtputf8: true,
        };
        assert_eq!(
            encoded(|o| mail_from(o, "ü@b.example", &all)).unwrap(),
            "MAIL FROM:<ü@b.example> SIZE=2048 BODY=8BITMIME SMTPUTF8\r\n"
        );
        let size0 = MailParams {
            size: Some(0),
            ..MailParams::default()
        };
        assert_eq!(
            encoded(|o| mail_from(o, "a@b", &size0)).unwrap(),
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
            let e = encoded(|o| mail_from(o, bad, &p)).unwrap_err();
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

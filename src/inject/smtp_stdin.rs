//! `sendmail -bs`: an SMTP server dialogue on standard input and output,
//! as programs that speak SMTP to a local MTA through a pipe expect. This
//! is the sans-IO part: lines in, replies and finished messages out. The
//! caller writes each finished message to `maildrop/` (exactly as plain
//! `sendmail` does) before it sends the `250` for it, so a `250` means the
//! message is on disk.
//!
//! Supported: HELO, EHLO (PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN,
//! ENHANCEDSTATUSCODES), MAIL FROM with SIZE / BODY / SMTPUTF8 / RET /
//! ENVID, RCPT TO with NOTIFY / ORCPT (RFC 3461, stored with the message
//! as `sendmail -N/-R/-V` store theirs), DATA with dot-unstuffing, RSET,
//! NOOP, QUIT. Refused: VRFY, EXPN, STARTTLS and AUTH (a local pipe needs
//! neither), anything else.

use crate::mail::{parse_smtp_path, xtext};
use crate::model::dsn::{valid_envid, valid_orcpt};
use crate::model::{BodyType, DsnParams, DsnRet, Envelope, Notify, RcptDsn};

/// Longest command line accepted (RFC 5321 allows 512; extensions more).
const MAX_COMMAND_LINE: usize = 2048;

/// What the caller does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send yet (a line of message content).
    Nothing,
    /// Send this reply (CRLF included).
    Reply(String),
    /// A message is complete: queue it, then reply with
    /// [`StdinSession::queued`] or [`StdinSession::queue_failed`].
    Message {
        /// Envelope sender and recipients.
        envelope: Envelope,
        /// RET, ENVID, BODY of MAIL FROM; NOTIFY, ORCPT of each RCPT TO.
        dsn: DsnParams,
        /// The message as received, dot-unstuffed, CRLF line ends kept.
        message: Vec<u8>,
    },
    /// Send this reply, then end the session.
    Quit(String),
}

/// The state of one `-bs` session.
#[derive(Debug)]
pub struct StdinSession {
    hostname: String,
    origin: String,
    size_limit: u64,
    sender: Option<String>,
    recipients: Vec<String>,
    /// Message-level DSN requests from MAIL FROM; `rcpts` follows
    /// `recipients`.
    dsn: DsnParams,
    data: Option<Vec<u8>>,
    too_big: bool,
}

impl StdinSession {
    /// A session for this host; unqualified addresses get `origin`.
    pub fn new(hostname: &str, origin: &str, size_limit: u64) -> StdinSession {
        StdinSession {
            hostname: hostname.to_string(),
            origin: origin.to_string(),
            size_limit,
            sender: None,
            recipients: Vec::new(),
            dsn: DsnParams::default(),
            data: None,
            too_big: false,
        }
    }

    /// The greeting to send first.
    pub fn greeting(&self) -> String {
        format!("220 {} ESMTP ringmail\r\n", self.hostname)
    }

    /// The reply after the caller queued the message: on disk now.
    pub fn queued(&self, queue_file: &str) -> String {
        format!("250 2.0.0 Ok: queued as {queue_file}\r\n")
    }

    /// The reply when the message could not be written.
    pub fn queue_failed(&self, why: &str) -> String {
        format!(
            "451 4.3.0 Error: queue file write error: {}\r\n",
            one_line(why)
        )
    }

    /// Takes one input line (with or without its line end).
    pub fn on_line(&mut self, line: &[u8]) -> Step {
        if self.data.is_some() {
            return self.data_line(line);
        }
        let text = trim_eol(line);
        if text.len() > MAX_COMMAND_LINE {
            return reply("500 5.5.2 Error: line too long");
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return reply("500 5.5.2 Error: command line is not UTF-8");
        };
        // A CR, TAB, NUL... inside a command is never part of it: refuse
        // the command rather than guess where it ends.
        if text.chars().any(char::is_control) {
            return reply("501 5.5.2 Error: control character in command");
        }
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v, a.trim()),
            None => (text, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "HELO" if !arg.is_empty() => {
                self.reset();
                reply(&format!("250 {}", self.hostname))
            }
            "EHLO" if !arg.is_empty() => {
                self.reset();
                Step::Reply(format!(
                    "250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n",
                    self.hostname, self.size_limit
                ))
            }
            "HELO" | "EHLO" => reply("501 5.5.4 Syntax: HELO hostname"),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => {
                if !arg.is_empty() {
                    return reply("501 5.5.4 Syntax: DATA");
                }
                if self.sender.is_none() {
                    return reply("503 5.5.1 Error: need MAIL command");
                }
                if self.recipients.is_empty() {
                    return reply("554 5.5.1 Error: no valid recipients");
                }
                self.data = Some(Vec::new());
                self.too_big = false;
                reply("354 End data with <CR><LF>.<CR><LF>")
            }
            "RSET" => {
                self.reset();
                reply("250 2.0.0 Ok")
            }
            "NOOP" => reply("250 2.0.0 Ok"),
            "QUIT" => Step::Quit("221 2.0.0 Bye\r\n".into()),
            "VRFY" | "EXPN" => reply("502 5.5.1 Error: command not implemented"),
            "STARTTLS" | "AUTH" => reply("502 5.5.1 Error: not offered on a local pipe"),
            _ => reply("500 5.5.2 Error: command not recognized"),
        }
    }

    fn mail(&mut self, arg: &str) -> Step {
        if self.sender.is_some() {
            return reply("503 5.5.1 Error: nested MAIL command");
        }
        let Some((path, params)) = path_arg(arg, "FROM:") else {
            return reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        let mut dsn = DsnParams::default();
        for p in params.split_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<u64>() {
                    Ok(n) if n > self.size_limit => {
                        return reply("552 5.3.4 Error: message file too big")
                    }
                    Ok(_) => {}
                    Err(_) => return reply("501 5.5.4 Bad SIZE parameter"),
                },
                "BODY" => match BodyType::parse(v) {
                    Some(body) => dsn.body = Some(body),
                    None => return reply(&format!("555 5.5.4 Unsupported option: {p}")),
                },
                "SMTPUTF8" if v.is_empty() => {}
                "RET" if dsn.ret.is_none() => match DsnRet::parse(v) {
                    Some(ret) => dsn.ret = Some(ret),
                    None => return reply("501 5.5.4 Bad RET parameter syntax"),
                },
                "ENVID" if dsn.envid.is_none() => match xtext::decode(v) {
                    Some(envid) if valid_envid(&envid) => dsn.envid = Some(envid),
                    _ => return reply("501 5.5.4 Bad ENVID parameter syntax"),
                },
                _ => return reply(&format!("555 5.5.4 Unsupported option: {p}")),
            }
        }
        match parse_smtp_path(path, &self.origin, true) {
            Ok(sender) => {
                self.sender = Some(sender);
                self.dsn = dsn;
                reply("250 2.1.0 Ok")
            }
            Err(e) => reply(&format!("501 5.1.7 Bad sender address syntax: {e}")),
        }
    }

    fn rcpt(&mut self, arg: &str) -> Step {
        if self.sender.is_none() {
            return reply("503 5.5.1 Error: need MAIL command");
        }
        let Some((path, params)) = path_arg(arg, "TO:") else {
            return reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        let mut rcpt_dsn = RcptDsn::default();
        for p in params.split_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "NOTIFY" if !rcpt_dsn.notify.is_specified() => {
                    match Notify::parse(v).filter(|n| n.is_specified()) {
                        Some(n) => rcpt_dsn.notify = n,
                        None => return reply("501 5.5.4 Bad NOTIFY parameter syntax"),
                    }
                }
                "ORCPT" if rcpt_dsn.orcpt.is_none() => {
                    let decoded = v.split_once(';').and_then(|(kind, addr)| {
                        xtext::decode(addr).map(|a| format!("{kind};{a}"))
                    });
                    match decoded {
                        Some(o) if valid_orcpt(&o) => rcpt_dsn.orcpt = Some(o),
                        _ => return reply("501 5.5.4 Bad ORCPT parameter syntax"),
                    }
                }
                _ => return reply(&format!("555 5.5.4 Unsupported option: {p}")),
            }
        }
        match parse_smtp_path(path, &self.origin, false) {
            Ok(rcpt) => {
                if !self.recipients.contains(&rcpt) {
                    self.recipients.push(rcpt);
                    self.dsn.rcpts.push(rcpt_dsn);
                }
                reply("250 2.1.5 Ok")
            }
            Err(e) => reply(&format!("501 5.1.3 Bad recipient address syntax: {e}")),
        }
    }

    fn data_line(&mut self, line: &[u8]) -> Step {
        let body = trim_eol(line);
        if body == b"." {
            let message = self.data.take().unwrap_or_default();
            let too_big = std::mem::take(&mut self.too_big);
            let envelope = Envelope {
                sender: self.sender.take().unwrap_or_default(),
                recipients: std::mem::take(&mut self.recipients),
            };
            let mut dsn = std::mem::take(&mut self.dsn);
            if dsn.rcpts.iter().all(|r| *r == RcptDsn::default()) {
                dsn.rcpts.clear();
            }
            if too_big {
                return reply("552 5.3.4 Error: message file too big");
            }
            return Step::Message {
                envelope,
                dsn,
                message,
            };
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(line);
        if let Some(data) = self.data.as_mut() {
            if self.too_big || (data.len() + unstuffed.len()) as u64 > self.size_limit {
                // Keep reading to the end of the data, then refuse.
                self.too_big = true;
                data.clear();
            } else {
                data.extend_from_slice(unstuffed);
                if !unstuffed.ends_with(b"\n") {
                    data.extend_from_slice(b"\r\n");
                }
            }
        }
        Step::Nothing
    }

    fn reset(&mut self) {
        self.sender = None;
        self.recipients.clear();
        self.dsn = DsnParams::default();
        self.data = None;
    }
}

fn reply(text: &str) -> Step {
    Step::Reply(format!("{text}\r\n"))
}

/// `FROM:<a@b> PARAMS` → (`<a@b>`, `PARAMS`), case-insensitive keyword,
/// spaces after the colon tolerated.
fn path_arg<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    if rest.starts_with('<') {
        let end = rest.find('>')? + 1;
        Some((&rest[..end], rest[end..].trim()))
    } else {
        let (p, params) = rest.split_once(' ').unwrap_or((rest, ""));
        (!p.is_empty()).then_some((p, params.trim()))
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> StdinSession {
        StdinSession::new("mx.example.org", "example.org", 10_000)
    }

    fn text(step: Step) -> String {
        match step {
            Step::Reply(r) | Step::Quit(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_whole_dialogue() {
        let mut x = s();
        assert!(x.greeting().starts_with("220 mx.example.org ESMTP"));
        assert!(text(x.on_line(b"EHLO client\r\n")).contains("250-PIPELINING\r\n"));
        assert_eq!(
            text(x.on_line(b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n")),
            "250 2.1.0 Ok\r\n"
        );
        assert_eq!(
            text(x.on_line(b"RCPT TO:<c@d.example>\r\n")),
            "250 2.1.5 Ok\r\n"
        );
        assert_eq!(text(x.on_line(b"rcpt to: root\r\n")), "250 2.1.5 Ok\r\n");
        assert!(text(x.on_line(b"DATA\r\n")).starts_with("354 "));
        assert_eq!(x.on_line(b"Subject: hi\r\n"), Step::Nothing);
        assert_eq!(x.on_line(b"\r\n"), Step::Nothing);
        assert_eq!(x.on_line(b"..leading dot\r\n"), Step::Nothing);
        match x.on_line(b".\r\n") {
            Step::Message {
                envelope,
                dsn,
                message,
            } => {
                assert_eq!(dsn.body, Some(BodyType::EightBitMime));
                assert!(dsn.rcpts.is_empty());
                assert_eq!(envelope.sender, "a@b.example");
                assert_eq!(envelope.recipients, ["c@d.example", "root@example.org"]);
                assert_eq!(message, b"Subject: hi\r\n\r\n.leading dot\r\n");
            }
            other => panic!("{other:?}"),
        }
        assert!(x.queued("ABC").starts_with("250 2.0.0 Ok: queued as ABC"));
        // The next transaction starts clean.
        assert!(text(x.on_line(b"DATA\r\n")).starts_with("503 "));
        assert_eq!(
            x.on_line(b"QUIT\r\n"),
            Step::Quit("221 2.0.0 Bye\r\n".into())
        );
    }

    #[test]
    fn errors_are_replies_not_panics() {
        let mut x = s();
        assert!(text(x.on_line(b"RCPT TO:<c@d>\r\n")).starts_with("503 "));
        assert!(text(x.on_line(b"MAIL FROM:<bad address@@x>\r\n")).starts_with("501 5.1.7"));
        assert!(
            text(x.on_line(b"MAIL FROM:<>\r\n")).starts_with("250 "),
            "null sender ok"
        );
        assert!(text(x.on_line(b"MAIL FROM:<a@b>\r\n")).starts_with("503 "));
        assert!(text(x.on_line(b"RCPT TO:<>\r\n")).starts_with("501 5.1.3"));
        assert!(text(x.on_line(b"RCPT TO:<c@d> NOTIFY=NEVER,SUCCESS\r\n")).starts_with("501 "));
        assert!(text(x.on_line(b"RCPT TO:<c@d> XYZ=1\r\n")).starts_with("555 "));
        assert!(text(x.on_line(b"DATA\r\n")).starts_with("554 "));
        assert!(text(x.on_line(b"RSET\r\n")).starts_with("250 "));
        assert!(text(x.on_line(b"MAIL FROM:<a@b> SIZE=99999999\r\n")).starts_with("552 "));
        assert!(text(x.on_line(b"MAIL FROM:<a@b> XYZ=1\r\n")).starts_with("555 "));
        assert!(text(x.on_line(b"VRFY root\r\n")).starts_with("502 "));
        assert!(text(x.on_line(b"STARTTLS\r\n")).starts_with("502 "));
        assert!(text(x.on_line(b"FOO\r\n")).starts_with("500 "));
        assert!(text(x.on_line(b"\xff\xfe\r\n")).starts_with("500 "));
        assert!(text(x.on_line(&[b'x'; 3000])).starts_with("500 "));
        assert!(text(x.on_line(b"HELO\r\n")).starts_with("501 "));
        assert!(text(x.on_line("MAIL FRÖM:<a@b>\r\n".as_bytes())).starts_with("501 "));
        assert!(x.queue_failed("disk\nfull").ends_with("disk full\r\n"));
    }

    #[test]
    fn oversize_data_is_read_to_the_end_then_refused() {
        let mut x = StdinSession::new("h", "o", 10);
        x.on_line(b"MAIL FROM:<a@b>\r\n");
        x.on_line(b"RCPT TO:<c@d>\r\n");
        x.on_line(b"DATA\r\n");
        for _ in 0..5 {
            assert_eq!(x.on_line(b"0123456789\r\n"), Step::Nothing);
        }
        assert!(text(x.on_line(b".\r\n")).starts_with("552 5.3.4"));
        // Still usable.
        assert!(text(x.on_line(b"MAIL FROM:<a@b>\r\n")).starts_with("250 "));
    }

    #[test]
    fn control_characters_and_display_names_are_refused() {
        let mut x = s();
        for line in [
            &b"MAIL FROM:a@b.example\t<evil@x.test>\r\n"[..],
            b"MAIL FROM:a@b.example\r<evil@x.test>\r\n",
            b"MAIL FROM:<a@b.example\x00>\r\n",
            b"MAIL FROM:<a@b.example>\x0bSIZE=1\r\n",
        ] {
            let r = text(x.on_line(line));
            assert!(r.starts_with("501 5.5.2"), "{line:?}: {r}");
        }
        for line in [
            &b"MAIL FROM:Name<evil@x.test>\r\n"[..],
            b"MAIL FROM:good@example.net<evil@x.test>\r\n",
        ] {
            let r = text(x.on_line(line));
            assert!(r.starts_with("501 5.1.7"), "{line:?}: {r}");
        }
        assert!(text(x.on_line(b"MAIL FROM:<a@b.example>\r\n")).starts_with("250 "));
        for line in [
            &b"RCPT TO:good@example.net\r<evil@x.test>\r\n"[..],
            b"RCPT TO:<good@example.net>\rRCPT TO:<evil@x.test>\r\n",
        ] {
            let r = text(x.on_line(line));
            assert!(r.starts_with("501 5.5.2"), "{line:?}: {r}");
        }
        assert!(text(x.on_line(b"RCPT TO:Bob<evil@x.test>\r\n")).starts_with("501 5.1.3"));
        // Nothing was accepted: DATA has no recipient.
        assert!(text(x.on_line(b"DATA\r\n")).starts_with("554 "));
    }

    #[test]
    fn dsn_parameters_are_kept_with_the_message() {
        let mut x = s();
        assert!(text(x.on_line(b"EHLO c\r\n")).contains("250-DSN\r\n"));
        assert!(
            text(x.on_line(b"MAIL FROM:<a@b.example> RET=FULL ENVID=abc+2Bdef\r\n"))
                .starts_with("250 ")
        );
        assert!(text(x.on_line(
            b"RCPT TO:<c@d.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c+40d.example\r\n"
        ))
        .starts_with("250 "));
        assert!(text(x.on_line(b"RCPT TO:<e@d.example>\r\n")).starts_with("250 "));
        for bad in [
            &b"RCPT TO:<f@d.example> NOTIFY=SOMETIMES\r\n"[..],
            b"RCPT TO:<f@d.example> ORCPT=nosemicolon\r\n",
            b"RCPT TO:<f@d.example> ORCPT=rfc822;a+0Db\r\n",
        ] {
            assert!(text(x.on_line(bad)).starts_with("501 "), "{bad:?}");
        }
        x.on_line(b"DATA\r\n");
        x.on_line(b"Subject: s\r\n\r\nbody\r\n");
        match x.on_line(b".\r\n") {
            Step::Message { envelope, dsn, .. } => {
                assert_eq!(envelope.recipients, ["c@d.example", "e@d.example"]);
                assert_eq!(dsn.ret, Some(DsnRet::Full));
                assert_eq!(dsn.envid.as_deref(), Some("abc+def"));
                assert_eq!(dsn.notify(0), Notify::parse("success,delay").unwrap());
                assert_eq!(dsn.orcpt(0), Some("rfc822;c@d.example"));
                assert_eq!(dsn.notify(1), Notify::UNSPECIFIED);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &b"MAIL FROM:<a@b> RET=ALL\r\n"[..],
            b"MAIL FROM:<a@b> ENVID=a+0D+0Ab\r\n",
            b"MAIL FROM:<a@b> BODY=BINARYMIME\r\n",
        ] {
            let r = text(x.on_line(bad));
            assert!(
                r.starts_with("501 ") || r.starts_with("555 "),
                "{bad:?}: {r}"
            );
        }
    }
}

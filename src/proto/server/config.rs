//! What a driver decides about its sessions: the name, the extensions it
//! announces, TLS and AUTH, how strict the input must be, the limits.
//! [`SessionConfig`] is the plain description; [`SessionParams`] is the
//! same prepared once (replies that contain the host name built ahead) and
//! shared by all sessions of a listener.

use super::params::Accepts;
use super::reply::Reply;

/// How bare line ends (an LF without CR before it, a CR without LF after
/// it) are treated. RFC 5321 section 2.3.8 allows only CRLF; the modes are
/// those of Postfix 3.9's `smtpd_forbid_bare_newline`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LineEnds {
    /// Postfix's `no`: an LF alone ends a command line or a line of
    /// message data, `.` LF ends the data too, and message data reaches
    /// the driver with its line ends as sent. Vulnerable to SMTP
    /// smuggling; for the test sink, whose dump keeps bytes as sent.
    Lenient,
    /// Postfix's `normalize` (its default since 3.9): only `<CRLF>.<CRLF>`
    /// ends the data. A command or data line ending in a bare LF is taken
    /// as if it ended in CRLF, and data reaches the driver with CRLF there.
    /// A lone `.` line that is not part of `<CRLF>.<CRLF>` is content (the
    /// dot is kept). A bare CR in data stays content here, as in Postfix
    /// (the crate's one line rule, `mail::line`, makes it a line end when
    /// cleanup writes the queue's wire form); in a command it is refused as
    /// a control character.
    #[default]
    Normalize,
    /// Postfix's `reject`: a bare LF, and also a bare CR, anywhere in a
    /// command or in message data (DATA or BDAT) is answered
    /// `550 5.5.2 Error: bare <LF> received` (or `<CR>`) and the
    /// connection is closed.
    Reject,
}

/// How much of each message the session keeps for the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Capture {
    /// The whole message (what a queue needs).
    #[default]
    Whole,
    /// Only its start: the header section, at most [`HEAD_LIMIT`] bytes
    /// (enough to count Message-IDs without storing bodies).
    Head,
}

/// Most bytes [`Capture::Head`] keeps.
pub const HEAD_LIMIT: usize = 64 * 1024;

/// The extensions announced in the EHLO reply (STARTTLS and AUTH follow
/// from [`SessionConfig::starttls`] and [`SessionConfig::auth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extensions {
    /// PIPELINING (RFC 2920). Pipelined commands are answered in order
    /// either way.
    pub pipelining: bool,
    /// SIZE (RFC 1870), with the message size limit when there is one.
    pub size: bool,
    /// 8BITMIME (RFC 6152): `BODY=`.
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034): replies carry RFC 3463 codes.
    pub enhanced_status_codes: bool,
    /// CHUNKING (RFC 3030): BDAT.
    pub chunking: bool,
    /// DSN (RFC 3461): RET, ENVID, NOTIFY, ORCPT.
    pub dsn: bool,
}

impl Default for Extensions {
    /// Everything on.
    fn default() -> Self {
        Extensions {
            pipelining: true,
            size: true,
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            chunking: true,
            dsn: true,
        }
    }
}

/// SMTP AUTH (RFC 4954) with PLAIN and LOGIN; the driver checks the
/// credentials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Offer and accept AUTH before TLS (else only over TLS: `538`).
    pub plaintext: bool,
    /// MAIL is refused (`530 5.7.0`) until the client authenticated.
    pub required: bool,
}

/// The limits of one session. `None` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line (and AUTH response) without its line end;
    /// longer ones are discarded with `500 5.5.2`.
    pub max_line: usize,
    /// Most recipients per transaction (Postfix `smtpd_recipient_limit`);
    /// more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Largest message in bytes (as received, dot-unstuffed); larger ones
    /// get `552 5.3.4`, announced in `SIZE`.
    pub max_message_size: Option<u64>,
    /// Error replies after which the next command gets `421 4.7.0 Error:
    /// too many errors` and the session closes (Postfix
    /// `smtpd_hard_error_limit`).
    pub hard_error_limit: Option<u32>,
    /// NOOP, VRFY, RSET and HELP beyond this many each count as an error
    /// (Postfix `smtpd_junk_command_limit`).
    pub junk_command_limit: Option<u32>,
    /// Commands after which the next one gets `421 4.7.0 Error: too many
    /// commands` and the session closes.
    pub max_commands: Option<u32>,
}

impl Default for Limits {
    /// Postfix's defaults: lines of 2048 bytes, 1000 recipients, 10 MB
    /// messages (`message_size_limit = 10240000`), 20 errors, 100 junk
    /// commands; and 100,000 commands.
    fn default() -> Self {
        Limits {
            max_line: 2048,
            max_recipients: 1000,
            max_message_size: Some(10_240_000),
            hard_error_limit: Some(20),
            junk_command_limit: Some(100),
            max_commands: Some(100_000),
        }
    }
}

/// How a driver's sessions behave. `Default` is a strict ESMTP server
/// with every extension but STARTTLS and AUTH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The host name in the greeting, the EHLO reply and 421 replies.
    pub hostname: String,
    /// What follows the host name in the greeting (`ESMTP ringmail`).
    pub greeting: String,
    /// Speak ESMTP. When false, EHLO gets `502` (clients fall back to
    /// HELO), no parameters or extensions are accepted and replies carry no
    /// enhanced codes.
    pub esmtp: bool,
    /// The extensions announced.
    pub extensions: Extensions,
    /// The driver can run a TLS handshake: STARTTLS is announced (before
    /// TLS) and accepted.
    pub starttls: bool,
    /// MAIL and AUTH are refused before TLS (`530 5.7.0 Must issue a
    /// STARTTLS command first`).
    pub tls_required: bool,
    /// AUTH is offered.
    pub auth: Option<AuthConfig>,
    /// Qualify an address without a domain (`<joe>`) with `@origin`, as
    /// `sendmail -bs` does with `myorigin`. `None` refuses them (except
    /// `<postmaster>` as a recipient, RFC 5321 section 4.1.1.3).
    pub origin: Option<String>,
    /// Bare CR and LF.
    pub line_ends: LineEnds,
    /// How much of each message is kept.
    pub capture: Capture,
    /// The limits.
    pub limits: Limits,
    /// Commands that arrive with the end of a message, before its reply
    /// was written, are refused with `503 5.5.1` and not carried out, as
    /// Haraka does (transaction chaining is not pipelining). For testing
    /// clients; off by default.
    pub refuse_pipelined_after_data: bool,
    /// Hang up on HTTP verbs and lines that do not start with a letter
    /// (`221 2.7.0 Error: I can break rules, too. Goodbye.`), as Postfix's
    /// default `smtpd_forbidden_commands` does.
    pub forbid_non_smtp: bool,
    /// MAIL is refused (`503 5.5.1 Error: send HELO/EHLO first`) until
    /// the client said HELO or EHLO (Postfix `smtpd_helo_required`).
    pub helo_required: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_string(),
            greeting: "ESMTP ringmail".to_string(),
            esmtp: true,
            extensions: Extensions::default(),
            starttls: false,
            tls_required: false,
            auth: None,
            origin: None,
            line_ends: LineEnds::Normalize,
            capture: Capture::Whole,
            limits: Limits::default(),
            refuse_pipelined_after_data: false,
            forbid_non_smtp: true,
            helo_required: true,
        }
    }
}

/// A [`SessionConfig`] prepared for many sessions.
#[derive(Debug)]
pub struct SessionParams {
    pub(crate) config: SessionConfig,
    pub(crate) greeting: Vec<u8>,
    pub(crate) helo: Vec<u8>,
    /// EHLO replies before TLS and over TLS.
    pub(crate) ehlo_plain: Vec<u8>,
    pub(crate) ehlo_tls: Vec<u8>,
    pub(crate) too_many_errors: Reply,
    pub(crate) too_many_commands: Reply,
    pub(crate) timeout: Reply,
    pub(crate) shutting_down: Reply,
}

impl SessionParams {
    /// Prepares `config`.
    pub fn new(config: SessionConfig) -> SessionParams {
        let host = &config.hostname;
        SessionParams {
            greeting: format!("220 {host} {}\r\n", config.greeting).into_bytes(),
            helo: format!("250 {host}\r\n").into_bytes(),
            ehlo_plain: ehlo_reply(&config, false),
            ehlo_tls: ehlo_reply(&config, true),
            too_many_errors: Reply::new(421, "4.7.0", format!("{host} Error: too many errors")),
            too_many_commands: Reply::new(421, "4.7.0", format!("{host} Error: too many commands")),
            timeout: Reply::new(421, "4.4.2", format!("{host} Error: timeout exceeded")),
            shutting_down: Reply::new(421, "4.3.2", format!("{host} Service shutting down")),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Enhanced status codes are written.
    pub(crate) fn enhanced(&self) -> bool {
        self.config.esmtp && self.config.extensions.enhanced_status_codes
    }

    /// AUTH is offered in this state of TLS.
    pub(crate) fn auth_offered(&self, tls: bool) -> bool {
        self.config.esmtp
            && self
                .config
                .auth
                .is_some_and(|a| tls || (a.plaintext && !self.config.tls_required))
    }

    /// The MAIL and RCPT parameters accepted after EHLO.
    pub(crate) fn accepts(&self, tls: bool) -> Accepts {
        let e = &self.config.extensions;
        Accepts {
            size: e.size,
            eight_bit_mime: e.eight_bit_mime,
            smtputf8: e.smtputf8,
            dsn: e.dsn,
            auth: self.auth_offered(tls),
        }
    }
}

/// The EHLO reply, before TLS or over it.
fn ehlo_reply(config: &SessionConfig, tls: bool) -> Vec<u8> {
    let e = &config.extensions;
    let mut lines = vec![config.hostname.clone()];
    let mut add = |on: bool, text: &str| {
        if on {
            lines.push(text.to_string());
        }
    };
    add(e.pipelining, "PIPELINING");
    match config.limits.max_message_size {
        Some(n) => add(e.size, &format!("SIZE {n}")),
        None => add(e.size, "SIZE"),
    }
    add(config.starttls && !tls, "STARTTLS");
    let auth = config
        .auth
        .is_some_and(|a| tls || (a.plaintext && !config.tls_required));
    add(auth, "AUTH PLAIN LOGIN");
    add(e.eight_bit_mime, "8BITMIME");
    add(e.dsn, "DSN");
    add(e.smtputf8, "SMTPUTF8");
    add(e.chunking, "CHUNKING");
    add(e.enhanced_status_codes, "ENHANCEDSTATUSCODES");
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("250{sep}{line}\r\n"));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_replies() {
        let p = SessionParams::new(SessionConfig {
            hostname: "mx.test".into(),
            starttls: true,
            auth: Some(AuthConfig::default()),
            ..SessionConfig::default()
        });
        assert_eq!(
            String::from_utf8(p.ehlo_plain.clone()).unwrap(),
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n\
             250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
             250 ENHANCEDSTATUSCODES\r\n"
        );
        assert_eq!(
            String::from_utf8(p.ehlo_tls.clone()).unwrap(),
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n\
             250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
             250 ENHANCEDSTATUSCODES\r\n"
        );
        assert!(!p.auth_offered(false) && p.auth_offered(true));
        let bare = SessionParams::new(SessionConfig {
            extensions: Extensions {
                pipelining: false,
                size: false,
                eight_bit_mime: false,
                smtputf8: false,
                enhanced_status_codes: false,
                chunking: false,
                dsn: false,
            },
            ..SessionConfig::default()
        });
        assert_eq!(bare.ehlo_plain, b"250 localhost\r\n");
        assert_eq!(bare.greeting, b"220 localhost ESMTP ringmail\r\n");
    }
}

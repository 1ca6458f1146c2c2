//! AUTH PLAIN (RFC 4616) and LOGIN (RFC 4954): the command, the `334`
//! challenges, decoding the client's base64 responses (`*` cancels, `=` is
//! empty), and handing the credentials to the driver, which checks them
//! (possibly slowly, on another thread) and answers with
//! [`Session::auth_result`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::commands::{IN_TRANSACTION, NEED_HELO};
use super::reply::Reply;
use super::session::{Phase, Session};

/// Where an AUTH exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// PLAIN, waiting for the whole response.
    Plain,
    /// LOGIN, waiting for the user name.
    LoginUser,
    /// LOGIN, waiting for the password.
    LoginPassword,
}

/// A SASL mechanism the session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// PLAIN.
    Plain,
    /// LOGIN.
    Login,
}

impl Mechanism {
    /// `PLAIN` or `LOGIN`, for the `sasl_method=` log field.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// Credentials the driver is to check.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    /// How they came.
    pub mechanism: Mechanism,
    /// The user name (PLAIN's authentication identity; an authorization
    /// identity other than empty or this one was refused already).
    pub user: &'a str,
    /// The password, as sent.
    pub password: &'a [u8],
}

/// The credentials being collected.
#[derive(Debug, Default)]
pub(super) struct Sasl {
    mechanism: Option<Mechanism>,
    user: String,
    password: Vec<u8>,
}

impl Sasl {
    fn clear(&mut self) {
        self.mechanism = None;
        self.user.clear();
        // Best effort: do not leave the password in a reused buffer.
        self.password.fill(0);
        self.password.clear();
    }
}

const AUTH_OK: Reply = Reply::fixed(235, "2.7.0", "Authentication successful");
const AUTH_BAD: Reply = Reply::fixed(535, "5.7.8", "Authentication credentials invalid");
const NEED_TLS: Reply = Reply::fixed(
    538,
    "5.7.11",
    "Encryption required for requested authentication mechanism",
);
const ALREADY: Reply = Reply::fixed(503, "5.5.1", "Error: already authenticated");
const UNSUPPORTED: Reply =
    Reply::fixed(504, "5.5.4", "Error: unsupported authentication mechanism");
const CANCELLED: Reply = Reply::fixed(501, "5.7.0", "Authentication aborted");
const MALFORMED: Reply = Reply::fixed(501, "5.5.2", "Error: cannot decode response");
const PLAIN_CHALLENGE: Reply = Reply::fixed(334, "", "");
const USER_CHALLENGE: Reply = Reply::fixed(334, "", "VXNlcm5hbWU6"); // "Username:"
const PASSWORD_CHALLENGE: Reply = Reply::fixed(334, "", "UGFzc3dvcmQ6"); // "Password:"

impl Session {
    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(&mut self, mechanism: &[u8], initial: Option<&[u8]>, out: &mut Vec<u8>) {
        if self.helo.is_none() {
            return self.send(out, &NEED_HELO);
        }
        if !self.params.auth_offered(self.tls) {
            return self.send(out, &NEED_TLS);
        }
        if self.auth_user.is_some() {
            return self.send(out, &ALREADY);
        }
        if self.tx.sender.is_some() {
            return self.send(out, &IN_TRANSACTION);
        }
        let (kind, step) = if mechanism.eq_ignore_ascii_case(b"PLAIN") {
            (Mechanism::Plain, Step::Plain)
        } else if mechanism.eq_ignore_ascii_case(b"LOGIN") {
            (Mechanism::Login, Step::LoginUser)
        } else {
            return self.send(out, &UNSUPPORTED);
        };
        self.sasl.clear();
        self.sasl.mechanism = Some(kind);
        match initial {
            Some(response) => self.auth_response(step, response, out),
            None => self.challenge(step, out),
        }
    }

    /// Sends the `334` for `step` and waits for the response.
    fn challenge(&mut self, step: Step, out: &mut Vec<u8>) {
        self.phase = Phase::AuthResponse(step);
        let reply = match step {
            Step::Plain => &PLAIN_CHALLENGE,
            Step::LoginUser => &USER_CHALLENGE,
            Step::LoginPassword => &PASSWORD_CHALLENGE,
        };
        self.send(out, reply);
    }

    /// The client's response `line` at `step`.
    pub(super) fn auth_response(&mut self, step: Step, line: &[u8], out: &mut Vec<u8>) {
        let data = match line {
            b"*" => return self.fail(out, &CANCELLED),
            b"=" => Vec::new(),
            _ => match STANDARD.decode(line) {
                Ok(data) => data,
                Err(_) => return self.fail(out, &MALFORMED),
            },
        };
        match step {
            Step::Plain => match plain(&data) {
                Some((user, password)) => {
                    self.sasl.user.push_str(user);
                    self.sasl.password.extend_from_slice(password);
                    self.phase = Phase::AuthPending;
                }
                None => self.fail(out, &AUTH_BAD),
            },
            Step::LoginUser => match String::from_utf8(data) {
                Ok(user) if !user.is_empty() => {
                    self.sasl.user = user;
                    self.challenge(Step::LoginPassword, out);
                }
                _ => self.fail(out, &AUTH_BAD),
            },
            Step::LoginPassword => {
                self.sasl.password = data;
                self.phase = Phase::AuthPending;
            }
        }
    }

    /// The credentials to check, while `feed` reports `Progress::Auth`.
    pub fn pending_auth(&self) -> Option<AuthRequest<'_>> {
        if self.phase != Phase::AuthPending {
            return None;
        }
        Some(AuthRequest {
            mechanism: self.sasl.mechanism?,
            user: &self.sasl.user,
            password: &self.sasl.password,
        })
    }

    /// Answers the pending credentials: `235 2.7.0` and the session is
    /// authenticated, or `535 5.7.8` (counted in
    /// [`Counters::auth_failures`](super::Counters)). Does nothing unless
    /// `feed` reported `Progress::Auth`.
    pub fn auth_result(&mut self, ok: bool, out: &mut Vec<u8>) {
        if self.phase != Phase::AuthPending {
            return;
        }
        if ok {
            self.auth_user = Some(std::mem::take(&mut self.sasl.user));
            self.auth_method = self.sasl.mechanism;
            self.sasl.clear();
            self.phase = Phase::Command;
            self.send(out, &AUTH_OK);
        } else {
            self.fail(out, &AUTH_BAD);
        }
    }

    /// The SASL mechanism of the successful AUTH, once authenticated.
    pub fn auth_mechanism(&self) -> Option<Mechanism> {
        self.auth_method
    }

    /// Ends the exchange without success, with `reply`.
    fn fail(&mut self, out: &mut Vec<u8>, reply: &Reply) {
        self.end_auth_failed();
        self.send(out, reply);
    }

    /// Ends the exchange without success (the caller replies).
    pub(super) fn end_auth_failed(&mut self) {
        self.sasl.clear();
        self.phase = Phase::Command;
        self.counters.auth_failures = self.counters.auth_failures.saturating_add(1);
    }
}

/// PLAIN's `authzid NUL authcid NUL passwd`: the user and password, when
/// the authorization identity is empty or the user itself and the user is
/// non-empty UTF-8.
fn plain(message: &[u8]) -> Option<(&str, &[u8])> {
    let mut parts = message.splitn(3, |&b| b == 0);
    let (authzid, authcid, passwd) = (parts.next()?, parts.next()?, parts.next()?);
    if authcid.is_empty() || passwd.contains(&0) {
        return None;
    }
    if !authzid.is_empty() && authzid != authcid {
        return None;
    }
    Some((std::str::from_utf8(authcid).ok()?, passwd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages() {
        assert_eq!(plain(b"\0alice\0s3cret"), Some(("alice", &b"s3cret"[..])));
        assert_eq!(
            plain(b"alice\0alice\0s3cret"),
            Some(("alice", &b"s3cret"[..]))
        );
        assert_eq!(plain(b"\0alice\0"), Some(("alice", &b""[..])));
        assert_eq!(plain(b"bob\0alice\0s3cret"), None);
        assert_eq!(plain(b"\0alice\0s3\0cret"), None);
        assert_eq!(plain(b"\0\0s3cret"), None);
        assert_eq!(plain(b"\0\xff\0x"), None);
        assert_eq!(plain(b"alice s3cret"), None);
        assert_eq!(plain(b""), None);
    }
}

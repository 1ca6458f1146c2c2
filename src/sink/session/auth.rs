//! AUTH PLAIN and LOGIN (RFC 4954) in the session: the command, the `334`
//! challenges and the client's responses. The SASL decoding is in
//! [`crate::sink::auth`].

use std::sync::Arc;

use super::{reply, Phase, Reply, Session, IN_TRANSACTION, NEED_HELO};
use crate::sink::auth::{self as sasl, Response};

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

const AUTH_OK: Reply = reply("235", "2.7.0", "Authentication successful");
const AUTH_BAD: Reply = reply("535", "5.7.8", "Authentication credentials invalid");
const NEED_TLS: Reply = reply(
    "538",
    "5.7.11",
    "Encryption required for requested authentication mechanism",
);
const ALREADY: Reply = reply("503", "5.5.1", "Error: already authenticated");
const UNSUPPORTED: Reply = reply(
    "504",
    "5.5.4",
    "Error: unsupported authentication mechanism",
);
const CANCELLED: Reply = reply("501", "5.7.0", "Authentication aborted");
const MALFORMED: Reply = reply("501", "5.5.2", "Error: cannot decode response");

impl Session {
    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(&mut self, mechanism: &[u8], initial: Option<&[u8]>, out: &mut Vec<u8>) {
        if self.phase == Phase::Connected {
            return self.put(out, NEED_HELO);
        }
        if !self.tls && !self.params.auth_plaintext {
            return self.put(out, NEED_TLS);
        }
        if self.auth_user.is_some() {
            return self.put(out, ALREADY);
        }
        if self.phase == Phase::Mail {
            return self.put(out, IN_TRANSACTION);
        }
        let step = if mechanism.eq_ignore_ascii_case(b"PLAIN") {
            Step::Plain
        } else if mechanism.eq_ignore_ascii_case(b"LOGIN") {
            Step::LoginUser
        } else {
            return self.put(out, UNSUPPORTED);
        };
        match initial {
            Some(response) => self.auth_response(step, response, out),
            None => self.challenge(step, out),
        }
    }

    /// Sends the `334` for `step` and waits for the response.
    fn challenge(&mut self, step: Step, out: &mut Vec<u8>) {
        self.phase = Phase::Auth(step);
        let text = match step {
            Step::Plain => "",
            Step::LoginUser => "VXNlcm5hbWU6",     // "Username:"
            Step::LoginPassword => "UGFzc3dvcmQ6", // "Password:"
        };
        out.extend_from_slice(b"334 ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.tally.replies += 1;
    }

    /// The client's response `line` at `step`.
    pub(super) fn auth_response(&mut self, step: Step, line: &[u8], out: &mut Vec<u8>) {
        let data = match sasl::decode(line) {
            Response::Data(data) => data,
            Response::Cancelled => {
                self.auth_failed();
                return self.put(out, CANCELLED);
            }
            Response::Malformed => {
                self.auth_failed();
                return self.put(out, MALFORMED);
            }
        };
        let params = Arc::clone(&self.params);
        let Some(credentials) = params.auth.as_ref() else {
            self.auth_failed();
            return self.put(out, AUTH_BAD);
        };
        let ok = match step {
            Step::Plain => sasl::plain_ok(&data, credentials),
            Step::LoginUser => {
                self.login_user = data;
                return self.challenge(Step::LoginPassword, out);
            }
            Step::LoginPassword => sasl::login_ok(&self.login_user, &data, credentials),
        };
        if ok {
            self.phase = Phase::Ready;
            self.login_user.clear();
            self.auth_user = Some(credentials.0.clone());
            self.tally.auth_ok += 1;
            self.put(out, AUTH_OK);
        } else {
            self.auth_failed();
            self.put(out, AUTH_BAD);
        }
    }

    /// Ends an AUTH exchange without success.
    pub(super) fn auth_failed(&mut self) {
        self.phase = Phase::Ready;
        self.login_user.clear();
        self.tally.auth_failed += 1;
    }
}

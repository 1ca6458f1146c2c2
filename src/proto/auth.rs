//! SMTP AUTH (RFC 4954) as a client, with the PLAIN (RFC 4616) and LOGIN
//! mechanisms: which mechanism to use, the command lines to send and what
//! each server reply means. No I/O.
//!
//! PLAIN sends the credentials in the first line (`AUTH PLAIN <base64>`),
//! one round trip. LOGIN answers the server's two `334` prompts with the
//! user name and then the password, three round trips; it is used only
//! when the server does not offer PLAIN.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::caps::Capabilities;
use super::reply::Reply;

/// A SASL mechanism this client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto LOGIN mechanism.
    Login,
}

impl Mechanism {
    /// The best mechanism the server offers, PLAIN before LOGIN.
    pub fn choose(caps: &Capabilities) -> Option<Mechanism> {
        if caps.auth.iter().any(|m| m == "PLAIN") {
            Some(Mechanism::Plain)
        } else if caps.auth.iter().any(|m| m == "LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    /// The name as sent.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// Why authentication did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The server refused the credentials or the mechanism.
    #[error("authentication failed: {0}")]
    Refused(Reply),
    /// The server answered something the exchange does not allow.
    #[error("unexpected reply during authentication: {0}")]
    Unexpected(Reply),
    /// A user name or password contains a NUL byte, CR or LF.
    #[error("the configured credentials contain a control character")]
    BadCredentials,
}

impl AuthError {
    /// As Postfix's default `smtp_sasl_auth_soft_bounce = yes`: an AUTH
    /// failure defers the mail (a credentials fix should not bounce it),
    /// except for credentials that can never be sent.
    pub fn is_transient(&self) -> bool {
        !matches!(self, AuthError::BadCredentials)
    }
}

/// What the driver does after a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthStep {
    /// Send these bytes, then read the next reply.
    Send(Vec<u8>),
    /// Authenticated.
    Done,
}

/// One AUTH exchange.
#[derive(Debug)]
pub struct AuthExchange {
    mechanism: Mechanism,
    user: String,
    password: String,
    prompts: u8,
}

impl AuthExchange {
    /// An exchange with `mechanism` for these credentials.
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> Result<Self, AuthError> {
        let bad = |s: &str| s.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n');
        if bad(user) || bad(password) {
            return Err(AuthError::BadCredentials);
        }
        Ok(AuthExchange {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            prompts: 0,
        })
    }

    /// The first command line.
    pub fn start(&self) -> Vec<u8> {
        match self.mechanism {
            Mechanism::Plain => {
                let token = B64.encode(format!("\0{}\0{}", self.user, self.password));
                format!("AUTH PLAIN {token}\r\n").into_bytes()
            }
            Mechanism::Login => b"AUTH LOGIN\r\n".to_vec(),
        }
    }

    /// The server's reply to the last line sent: `235` ends the exchange,
    /// `334` asks for the next LOGIN answer, anything else fails it.
    pub fn on_reply(&mut self, reply: &Reply) -> Result<AuthStep, AuthError> {
        match reply.code {
            235 => Ok(AuthStep::Done),
            334 if self.mechanism == Mechanism::Login && self.prompts < 2 => {
                self.prompts += 1;
                let answer = if self.prompts == 1 {
                    &self.user
                } else {
                    &self.password
                };
                Ok(AuthStep::Send(
                    format!("{}\r\n", B64.encode(answer)).into_bytes(),
                ))
            }
            334 => Err(AuthError::Unexpected(reply.clone())),
            _ => Err(AuthError::Refused(reply.clone())),
        }
    }

    /// The cancel line (`*`) to send when abandoning the exchange after a
    /// `334` the client cannot answer (RFC 4954 section 4).
    pub fn cancel() -> &'static [u8] {
        b"*\r\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16, text: &str) -> Reply {
        Reply::new(code, vec![text.to_string()])
    }

    #[test]
    fn plain_in_one_line() {
        let x = AuthExchange::new(Mechanism::Plain, "user", "pass").unwrap();
        assert_eq!(x.start(), b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    }

    #[test]
    fn login_answers_two_prompts() {
        let mut x = AuthExchange::new(Mechanism::Login, "user", "pass").unwrap();
        assert_eq!(x.start(), b"AUTH LOGIN\r\n");
        assert_eq!(
            x.on_reply(&r(334, "VXNlcm5hbWU6")).unwrap(),
            AuthStep::Send(b"dXNlcg==\r\n".to_vec())
        );
        assert_eq!(
            x.on_reply(&r(334, "UGFzc3dvcmQ6")).unwrap(),
            AuthStep::Send(b"cGFzcw==\r\n".to_vec())
        );
        assert_eq!(x.on_reply(&r(235, "2.7.0 ok")).unwrap(), AuthStep::Done);
    }

    #[test]
    fn failures() {
        let mut x = AuthExchange::new(Mechanism::Plain, "u", "p").unwrap();
        let e = x.on_reply(&r(535, "5.7.8 bad")).unwrap_err();
        assert!(matches!(e, AuthError::Refused(_)));
        assert!(e.is_transient());
        assert!(matches!(
            x.on_reply(&r(334, "")),
            Err(AuthError::Unexpected(_))
        ));
        let mut l = AuthExchange::new(Mechanism::Login, "u", "p").unwrap();
        l.on_reply(&r(334, "")).unwrap();
        l.on_reply(&r(334, "")).unwrap();
        assert!(
            l.on_reply(&r(334, "")).is_err(),
            "a third prompt is refused"
        );
        assert_eq!(
            AuthExchange::new(Mechanism::Plain, "u\r\nQUIT", "p").unwrap_err(),
            AuthError::BadCredentials
        );
    }

    #[test]
    fn mechanism_choice() {
        let mut caps = Capabilities::default();
        assert_eq!(Mechanism::choose(&caps), None);
        caps.auth = vec!["LOGIN".into(), "CRAM-MD5".into()];
        assert_eq!(Mechanism::choose(&caps), Some(Mechanism::Login));
        caps.auth.push("PLAIN".into());
        assert_eq!(Mechanism::choose(&caps), Some(Mechanism::Plain));
    }
}

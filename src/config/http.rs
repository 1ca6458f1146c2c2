//! The `[http]` table: the daemon's HTTP server (one-click unsubscribe and
//! the JSON API, `docs/HTTP.md`). The server runs only when the table is
//! present; every key in it has a default.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default address: loopback, port 8025.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8025";

/// The default largest request body (a campaign with its list inline).
pub const DEFAULT_MAX_BODY: u64 = 50 << 20;

/// Shortest API token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    /// Send: `POST /api/v1/campaigns`, `POST /api/v1/messages`.
    Inject,
    /// Look: `GET /api/v1/campaigns[/ID]`.
    Read,
    /// Change: pause, resume and cancel campaigns.
    Admin,
}

impl ApiScope {
    /// The name used in the configuration and in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Inject => "inject",
            ApiScope::Read => "read",
            ApiScope::Admin => "admin",
        }
    }
}

impl fmt::Display for ApiScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[http.tokens]]` entry: a bearer token and what it may do.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// The secret (`Authorization: Bearer TOKEN`): at least
    /// [`MIN_TOKEN_CHARS`] characters of RFC 6750's token68 alphabet.
    pub token: String,
    /// What it may do.
    pub scopes: Vec<ApiScope>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"<hidden>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The `[http]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where to listen (`IP:PORT`).
    pub listen: SocketAddr,
    /// Allow a `listen` address that is not loopback.
    pub allow_remote: bool,
    /// The API's bearer tokens; none means the API answers 401 to all
    /// (the unsubscribe pages need no token).
    pub tokens: Vec<ApiToken>,
    /// Largest request body in bytes.
    pub max_body: u64,
    /// The directory `recipients_file` may name lists in; unset: the API
    /// takes lists inline only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients_dir: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            allow_remote: false,
            tokens: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
            recipients_dir: None,
        }
    }
}

impl HttpConfig {
    /// Checks the values; the message names the offending part.
    pub fn check(&self) -> Result<(), String> {
        if self.listen.port() == 0 {
            return Err(format!("listen {}: needs a port", self.listen));
        }
        if !self.listen.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "listen {}: not a loopback address; set allow_remote = true to serve other hosts (and put TLS in front)",
                self.listen
            ));
        }
        if self.max_body < 1024 {
            return Err("max_body must be at least 1024 bytes".into());
        }
        if let Some(dir) = &self.recipients_dir {
            if !dir.is_absolute() {
                return Err(format!(
                    "recipients_dir {}: must be an absolute path",
                    dir.display()
                ));
            }
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let n = i + 1;
            if t.token.chars().count() < MIN_TOKEN_CHARS {
                return Err(format!(
                    "token {n}: shorter than {MIN_TOKEN_CHARS} characters"
                ));
            }
            if !is_token68(&t.token) {
                return Err(format!(
                    "token {n}: only letters, digits and - . _ ~ + / (then = at the end) may be used"
                ));
            }
            if t.scopes.is_empty() {
                return Err(format!("token {n}: no scopes (inject, read, admin)"));
            }
            if self.tokens[..i].iter().any(|o| o.token == t.token) {
                return Err(format!("token {n}: listed twice"));
            }
        }
        Ok(())
    }
}

/// RFC 6750 `b64token`: what may follow `Bearer ` in a header.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str, scopes: Vec<ApiScope>) -> HttpConfig {
        HttpConfig {
            tokens: vec![ApiToken {
                token: token.into(),
                scopes,
            }],
            ..HttpConfig::default()
        }
    }

    #[test]
    fn defaults_are_loopback_and_valid() {
        let c = HttpConfig::default();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.max_body, 50 << 20);
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn remote_needs_allow_remote() {
        let mut c = HttpConfig {
            listen: "0.0.0.0:8025".parse().unwrap(),
            ..HttpConfig::default()
        };
        assert!(c.check().unwrap_err().contains("allow_remote"));
        c.allow_remote = true;
        assert_eq!(c.check(), Ok(()));
        c.listen = "[::1]:8025".parse().unwrap();
        c.allow_remote = false;
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn tokens_are_checked() {
        let ok = "abcdefghijklmnop0123";
        assert_eq!(with_token(ok, vec![ApiScope::Read]).check(), Ok(()));
        let e = with_token("short", vec![ApiScope::Read])
            .check()
            .unwrap_err();
        assert!(e.contains("token 1") && e.contains("shorter"), "{e}");
        let e = with_token("abcdefghijklmnop qr", vec![ApiScope::Read])
            .check()
            .unwrap_err();
        assert!(e.contains("letters"), "{e}");
        let e = with_token(ok, vec![]).check().unwrap_err();
        assert!(e.contains("no scopes"), "{e}");
        let mut c = with_token(ok, vec![ApiScope::Read]);
        c.tokens.push(c.tokens[0].clone());
        assert!(c.check().unwrap_err().contains("token 2: listed twice"));
        // Base64 padding is allowed at the end only.
        assert_eq!(
            with_token("abcdefghijklmnop==", vec![ApiScope::Admin]).check(),
            Ok(())
        );
        assert!(with_token("abcdefgh=ijklmnop", vec![ApiScope::Admin])
            .check()
            .is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let c = with_token("abcdefghijklmnop0123", vec![ApiScope::Inject]);
        let shown = format!("{c:?}");
        assert!(!shown.contains("abcdefghijklmnop0123"), "{shown}");
        assert!(shown.contains("<hidden>") && shown.contains("Inject"));
    }
}

//! SASL PLAIN (RFC 4616) and LOGIN for the sink's AUTH command: decoding
//! the client's base64 responses and checking the credentials. Pure.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A client's response to a `334` challenge (or an initial response).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Response {
    /// `*`: the client gives up (RFC 4954 section 4).
    Cancelled,
    /// Not base64.
    Malformed,
    /// The decoded bytes (`=` is the empty response).
    Data(Vec<u8>),
}

/// Decodes one response line (without its line end).
pub(crate) fn decode(line: &[u8]) -> Response {
    let line = line.trim_ascii();
    match line {
        b"*" => Response::Cancelled,
        b"=" => Response::Data(Vec::new()),
        _ => STANDARD
            .decode(line)
            .map_or(Response::Malformed, Response::Data),
    }
}

/// Checks a PLAIN message `authzid NUL authcid NUL passwd` against the
/// configured `(user, password)`. The authorization identity must be empty
/// or the user itself.
pub(crate) fn plain_ok(message: &[u8], credentials: &(String, String)) -> bool {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (user, password) = credentials;
    (authzid.is_empty() || authzid == user.as_bytes())
        && authcid == user.as_bytes()
        && passwd == password.as_bytes()
}

/// Checks LOGIN's two answers against the configured `(user, password)`.
pub(crate) fn login_ok(user: &[u8], password: &[u8], credentials: &(String, String)) -> bool {
    user == credentials.0.as_bytes() && password == credentials.1.as_bytes()
}

/// The base64 of `text`.
#[cfg(test)]
pub(crate) fn encode(text: &[u8]) -> String {
    STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> (String, String) {
        ("alice".into(), "s3cret".into())
    }

    #[test]
    fn responses() {
        assert_eq!(decode(b"*"), Response::Cancelled);
        assert_eq!(decode(b"="), Response::Data(Vec::new()));
        assert_eq!(decode(b"YWxpY2U= "), Response::Data(b"alice".to_vec()));
        assert_eq!(decode(b"not base64!"), Response::Malformed);
        assert_eq!(encode(b"Username:"), "VXNlcm5hbWU6");
        assert_eq!(encode(b"Password:"), "UGFzc3dvcmQ6");
    }

    #[test]
    fn plain() {
        assert!(plain_ok(b"\0alice\0s3cret", &creds()));
        assert!(plain_ok(b"alice\0alice\0s3cret", &creds()));
        assert!(!plain_ok(b"bob\0alice\0s3cret", &creds()));
        assert!(!plain_ok(b"\0alice\0wrong", &creds()));
        assert!(!plain_ok(b"\0alice\0s3cret\0", &creds()));
        assert!(!plain_ok(b"alice s3cret", &creds()));
    }

    #[test]
    fn login() {
        assert!(login_ok(b"alice", b"s3cret", &creds()));
        assert!(!login_ok(b"alice", b"", &creds()));
        assert!(!login_ok(b"Alice", b"s3cret", &creds()));
    }
}

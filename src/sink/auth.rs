//! The sink's AUTH check: the one configured user and password. The SASL
//! exchange itself (PLAIN, LOGIN, base64) is the shared session's.

use crate::proto::server::AuthRequest;

/// True when `request` names the configured `(user, password)`.
pub(crate) fn credentials_ok(request: &AuthRequest<'_>, credentials: &(String, String)) -> bool {
    let (user, password) = credentials;
    request.user == user && request.password == password.as_bytes()
}

/// The base64 of `text`.
#[cfg(test)]
pub(crate) fn encode(text: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::server::Mechanism;

    #[test]
    fn credentials() {
        let creds = ("alice".to_string(), "s3cret".to_string());
        let req = |user, password| AuthRequest {
            mechanism: Mechanism::Login,
            user,
            password,
        };
        assert!(credentials_ok(&req("alice", b"s3cret"), &creds));
        assert!(!credentials_ok(&req("alice", b""), &creds));
        assert!(!credentials_ok(&req("Alice", b"s3cret"), &creds));
        assert_eq!(encode(b"Username:"), "VXNlcm5hbWU6");
    }
}

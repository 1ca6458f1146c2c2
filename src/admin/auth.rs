//! Bearer tokens (`Authorization: Bearer TOKEN`, RFC 6750) and their
//! scopes. Tokens are kept as SHA-256 digests and compared without an
//! early exit, so the time an answer takes says nothing about how much of
//! a guess was right.

use axum::http::{header, HeaderMap};
use ring::digest;

use crate::config::{ApiScope, ApiToken};

use super::ApiError;

/// The configured tokens.
pub(super) struct Tokens {
    entries: Vec<([u8; 32], Vec<ApiScope>)>,
}

impl Tokens {
    /// The tokens of `[http] tokens`.
    pub(super) fn new(tokens: &[ApiToken]) -> Tokens {
        Tokens {
            entries: tokens
                .iter()
                .map(|t| (sha256(t.token.as_bytes()), t.scopes.clone()))
                .collect(),
        }
    }

    /// Ok when `headers` carry a token that has `scope`.
    pub(super) fn check(&self, headers: &HeaderMap, scope: ApiScope) -> Result<(), ApiError> {
        let presented = bearer(headers).ok_or(ApiError::Unauthorized)?;
        let digest = sha256(presented.as_bytes());
        let mut found: Option<&[ApiScope]> = None;
        for (d, scopes) in &self.entries {
            let diff = d.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(scopes);
            }
        }
        match found {
            None => Err(ApiError::Unauthorized),
            Some(scopes) if scopes.contains(&scope) => Ok(()),
            Some(_) => Err(ApiError::Forbidden(scope)),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in
/// any case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn tokens() -> Tokens {
        Tokens::new(&[
            ApiToken {
                token: "sender-token-0123456789".into(),
                scopes: vec![ApiScope::Inject, ApiScope::Read],
            },
            ApiToken {
                token: "admin-token-0123456789".into(),
                scopes: vec![ApiScope::Admin],
            },
        ])
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn scopes_are_enforced() {
        let t = tokens();
        let sender = with("Bearer sender-token-0123456789");
        assert_eq!(t.check(&sender, ApiScope::Inject), Ok(()));
        assert_eq!(t.check(&sender, ApiScope::Read), Ok(()));
        assert_eq!(
            t.check(&sender, ApiScope::Admin),
            Err(ApiError::Forbidden(ApiScope::Admin))
        );
        let admin = with("bearer   admin-token-0123456789 ");
        assert_eq!(t.check(&admin, ApiScope::Admin), Ok(()));
        assert_eq!(
            t.check(&admin, ApiScope::Read),
            Err(ApiError::Forbidden(ApiScope::Read))
        );
    }

    #[test]
    fn missing_or_wrong_tokens_are_unauthorized() {
        let t = tokens();
        for h in [
            HeaderMap::new(),
            with("Bearer sender-token-012345678"),
            with("Bearer sender-token-0123456789x"),
            with("Basic c2VuZGVyLXRva2Vu"),
            with("Bearer "),
            with("sender-token-0123456789"),
        ] {
            assert_eq!(
                t.check(&h, ApiScope::Read),
                Err(ApiError::Unauthorized),
                "{h:?}"
            );
        }
        // No tokens configured: nobody gets in.
        let none = Tokens::new(&[]);
        assert_eq!(
            none.check(&with("Bearer sender-token-0123456789"), ApiScope::Read),
            Err(ApiError::Unauthorized)
        );
    }
}

//! Recipient tokens: the campaign and recipient numbers with an HMAC-SHA256
//! tag, in lower-case base32 so they fit a local part (VERP
//! `bounces+TOKEN@domain`, `unsubscribe+TOKEN@domain`) and a URL
//! (`/u/TOKEN`) and survive case folding. Without the spool's key nobody
//! can make a token that names another recipient.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use ring::hmac;

/// Tag bytes kept (80 bits: forging one takes 2^80 tries).
const TAG_LEN: usize = 10;

/// Bytes before the tag: a version byte, campaign (8), recipient (4).
const BODY_LEN: usize = 13;

/// Token format version.
const VERSION: u8 = 1;

/// Length of a token in characters.
pub const TOKEN_CHARS: usize = ((BODY_LEN + TAG_LEN) * 8).div_ceil(5);

/// The secret the tokens are made with (kept in the spool, mode 0600).
#[derive(Clone)]
pub struct TokenKey(hmac::Key);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from 32 secret bytes.
    pub fn new(secret: &[u8; 32]) -> TokenKey {
        TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The token of recipient `recipient` of campaign `campaign`.
    pub fn token(&self, campaign: u64, recipient: u32) -> String {
        let body = body(campaign, recipient);
        let tag = hmac::sign(&self.0, &body);
        let mut all = [0u8; BODY_LEN + TAG_LEN];
        all[..BODY_LEN].copy_from_slice(&body);
        all[BODY_LEN..].copy_from_slice(&tag.as_ref()[..TAG_LEN]);
        BASE32_NOPAD.encode(&all).to_ascii_lowercase()
    }

    /// The campaign and recipient a token names, if it was made with this
    /// key (any case accepted).
    pub fn verify(&self, token: &str) -> Option<RecipientToken> {
        if token.len() != TOKEN_CHARS {
            return None;
        }
        let all = BASE32_NOPAD
            .decode(token.to_ascii_uppercase().as_bytes())
            .ok()?;
        if all.len() != BODY_LEN + TAG_LEN || all[0] != VERSION {
            return None;
        }
        let (body, tag) = all.split_at(BODY_LEN);
        let full = hmac::sign(&self.0, body);
        // Constant time: ring's verify compares a whole tag, so compare the
        // truncated one without an early exit.
        let diff = full.as_ref()[..TAG_LEN]
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return None;
        }
        let campaign = u64::from_be_bytes(body[1..9].try_into().ok()?);
        let recipient = u32::from_be_bytes(body[9..13].try_into().ok()?);
        Some(RecipientToken {
            campaign,
            recipient,
        })
    }
}

fn body(campaign: u64, recipient: u32) -> [u8; BODY_LEN] {
    let mut b = [0u8; BODY_LEN];
    b[0] = VERSION;
    b[1..9].copy_from_slice(&campaign.to_be_bytes());
    b[9..13].copy_from_slice(&recipient.to_be_bytes());
    b
}

/// What a valid token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecipientToken {
    /// The campaign ID.
    pub campaign: u64,
    /// The recipient's index in the campaign's list (0-based).
    pub recipient: u32,
}

/// The token in a `prefix+TOKEN@domain` address, if the local part has
/// that form (`bounces+...`, `unsubscribe+...`).
pub fn token_in_address<'a>(address: &'a str, prefix: &str) -> Option<&'a str> {
    let (local, _domain) = address.rsplit_once('@')?;
    let (p, token) = local.split_once('+')?;
    p.eq_ignore_ascii_case(prefix).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let key = TokenKey::new(&[7u8; 32]);
        let t = key.token(42, 1_000_000);
        assert_eq!(t.len(), TOKEN_CHARS);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let want = Some(RecipientToken {
            campaign: 42,
            recipient: 1_000_000,
        });
        assert_eq!(key.verify(&t), want);
        assert_eq!(key.verify(&t.to_ascii_uppercase()), want, "case folded");
        // Another key, a changed character, a truncated token: refused.
        assert_eq!(TokenKey::new(&[8u8; 32]).verify(&t), None);
        let mut bytes = t.clone().into_bytes();
        bytes[5] = if bytes[5] == b'a' { b'b' } else { b'a' };
        assert_eq!(key.verify(std::str::from_utf8(&bytes).unwrap()), None);
        assert_eq!(key.verify(&t[..t.len() - 1]), None);
        assert_eq!(key.verify(""), None);
        assert_ne!(key.token(42, 1), key.token(43, 1));
    }

    #[test]
    fn tokens_fit_a_local_part() {
        let key = TokenKey::new(&[1u8; 32]);
        let local = format!("bounces+{}", key.token(u64::MAX, u32::MAX));
        assert!(local.len() <= 64, "{}", local.len());
        let addr = format!("{local}@bounce.example.com");
        let tok = token_in_address(&addr, "bounces").unwrap();
        assert!(key.verify(tok).is_some());
        assert_eq!(token_in_address("other+x@example.com", "bounces"), None);
        assert_eq!(token_in_address("bounces@example.com", "bounces"), None);
    }
}

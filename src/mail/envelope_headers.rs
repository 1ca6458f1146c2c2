//! Envelope sender and recipients taken from header fields, for
//! `sendmail -t` and pickup files without an explicit envelope.

use std::collections::HashSet;

use super::address::{split_address, AddressError};
use super::address_list::header_addresses;
use super::header::MessageParts;

/// Recipients for `sendmail -t` and pickup files: the addresses in To, Cc
/// and Bcc; but when any Resent-To, Resent-Cc or Resent-Bcc field is
/// present, only those (as Postfix does). Deduplicated (local part
/// case-sensitive, domain case-insensitive), in order of first occurrence.
pub fn recipients_from_headers(
    parts: &MessageParts<'_>,
    origin: &str,
) -> Result<Vec<String>, AddressError> {
    const PLAIN: [&str; 3] = ["To", "Cc", "Bcc"];
    const RESENT: [&str; 3] = ["Resent-To", "Resent-Cc", "Resent-Bcc"];
    let resent = parts.fields.iter().any(|f| RESENT.iter().any(|n| f.is(n)));
    let names = if resent { RESENT } else { PLAIN };
    let mut all = Vec::new();
    for field in parts
        .fields
        .iter()
        .filter(|f| names.iter().any(|n| f.is(n)))
    {
        all.extend(header_addresses(&field.value(), origin)?);
    }
    Ok(dedup_addresses(all))
}

/// Sender for pickup files without `X-Sender:`: Return-Path (where `<>` is
/// the null sender, `Some("")`), else Sender, else the first From address;
/// `None` when none of them gives an address.
pub fn sender_from_headers(
    parts: &MessageParts<'_>,
    origin: &str,
) -> Result<Option<String>, AddressError> {
    if let Some(field) = parts.fields.iter().find(|f| f.is("Return-Path")) {
        return super::address::parse_envelope_address(&field.value(), origin, true).map(Some);
    }
    for name in ["Sender", "From"] {
        for field in parts.fields.iter().filter(|f| f.is(name)) {
            if let Some(first) = header_addresses(&field.value(), origin)?.into_iter().next() {
                return Ok(Some(first));
            }
        }
    }
    Ok(None)
}

/// Drops repeated addresses, keeping the first occurrence. Two addresses are
/// the same when their local parts are equal and their domains are equal
/// ignoring case.
pub fn dedup_addresses(addrs: Vec<String>) -> Vec<String> {
    if addrs.len() < 2 {
        // Nothing to compare (most messages): no set, no keys.
        return addrs;
    }
    let mut seen = HashSet::with_capacity(addrs.len());
    addrs
        .into_iter()
        .filter(|a| {
            let key = match split_address(a) {
                Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
                None => a.clone(),
            };
            seen.insert(key)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::header::split_message;

    fn recipients(raw: &[u8]) -> Vec<String> {
        let parts = split_message(raw).unwrap();
        recipients_from_headers(&parts, "origin.example").unwrap()
    }

    fn sender(raw: &[u8]) -> Option<String> {
        let parts = split_message(raw).unwrap();
        sender_from_headers(&parts, "origin.example").unwrap()
    }

    #[test]
    fn to_cc_bcc_in_order_deduplicated() {
        let raw = b"From: s@x.example\nTo: A <a@x.example>, b@X.EXAMPLE\nCc: B@x.example, b@x.example\nSubject: s\nBcc: root\nTo: a@x.example\n\nbody\n";
        assert_eq!(
            recipients(raw),
            [
                "a@x.example",
                "b@X.EXAMPLE",
                "B@x.example",
                "root@origin.example"
            ]
        );
    }

    #[test]
    fn resent_fields_take_precedence() {
        let raw = b"To: old@x.example\nResent-Cc: new@y.example\nResent-Bcc: hidden@y.example\nCc: other@x.example\n\n";
        assert_eq!(recipients(raw), ["new@y.example", "hidden@y.example"]);
        assert!(recipients(b"Subject: none\n\n").is_empty());
    }

    #[test]
    fn bad_recipient_header_is_an_error() {
        let parts = split_message(b"To: a b@x.example\n\n").unwrap();
        assert!(recipients_from_headers(&parts, "o.example").is_err());
    }

    #[test]
    fn sender_prefers_return_path_then_sender_then_from() {
        let all = b"From: F <f@x.example>\nSender: s@x.example\nReturn-Path: <r@x.example>\n\n";
        assert_eq!(sender(all).as_deref(), Some("r@x.example"));
        assert_eq!(
            sender(b"From: f@x.example\nSender: s@x.example\n\n").as_deref(),
            Some("s@x.example")
        );
        assert_eq!(
            sender(b"From: F <f@x.example>, g@x.example\n\n").as_deref(),
            Some("f@x.example")
        );
        assert_eq!(
            sender(b"Return-Path: <>\nFrom: f@x.example\n\n").as_deref(),
            Some("")
        );
        assert_eq!(
            sender(b"From: bob\n\n").as_deref(),
            Some("bob@origin.example")
        );
        assert_eq!(sender(b"Subject: x\n\n"), None);
    }
}

//! The `message/delivery-status` part (RFC 3464 section 2): one group of
//! per-message fields, then one group per recipient, all 7-bit.

use crate::cleanup::date::rfc5322_date;

use super::error::BounceError;
use super::fold::{ascii_only, field, one_line};
use super::{BounceRequest, FailedRecipient, NoticeKind};

/// Longest address text after its type (`rfc822; ` or `utf-8; `), so that
/// the field holding it fits on one line of at most 998 octets.
const MAX_TYPED_ADDRESS: usize = 900;

/// The body of the delivery-status part, every line ending in CRLF.
/// Addresses were checked by [`typed_address`] before.
pub(super) fn delivery_status(req: &BounceRequest<'_>) -> Result<String, BounceError> {
    let mut out = String::with_capacity(256 + 256 * req.recipients.len());
    if let Some(envid) = req.envid {
        // First of the per-message fields (RFC 3464 section 2.2); checked
        // to be printable ASCII by the caller.
        out.push_str(&field("Original-Envelope-Id", envid));
    }
    out.push_str(&field("Reporting-MTA", &format!("dns; {}", req.myhostname)));
    out.push_str(&field("X-Ringmail-Queue-ID", req.queue_id));
    out.push_str(&field(
        "X-Ringmail-Sender",
        &typed_address(req.original_sender)?,
    ));
    out.push_str(&field("Arrival-Date", &rfc5322_date(&req.arrival)));
    for rcpt in req.recipients {
        out.push_str("\r\n");
        recipient_fields(&mut out, req.kind, rcpt)?;
    }
    Ok(out)
}

/// The per-recipient group of `rcpt`.
fn recipient_fields(
    out: &mut String,
    kind: NoticeKind,
    rcpt: &FailedRecipient,
) -> Result<(), BounceError> {
    let address = typed_address(&rcpt.address)?;
    out.push_str(&field("Final-Recipient", &address));
    let original = match &rcpt.original_recipient {
        Some(orcpt) => original_recipient(orcpt)?,
        None => address,
    };
    out.push_str(&field("Original-Recipient", &original));
    let action = match kind {
        NoticeKind::Failure => "failed",
        NoticeKind::Delay => "delayed",
        NoticeKind::Success => "relayed",
    };
    out.push_str(&field("Action", action));
    out.push_str(&field("Status", &status_code(kind, &rcpt.status)));
    if let Some(host) = rcpt.remote_mta.as_deref().and_then(dns_name) {
        out.push_str(&field("Remote-MTA", &format!("dns; {host}")));
    }
    if let Some(diagnostic) = diagnostic_code(rcpt) {
        out.push_str(&field("Diagnostic-Code", &diagnostic));
    }
    Ok(())
}

/// The address with its type, as `Final-Recipient` and `X-Ringmail-Sender`
/// carry it: `rfc822; addr` for an ASCII address; `utf-8; addr` for one
/// that needs SMTPUTF8, in the 7-bit `utf-8-addr-xtext` form of RFC 6533
/// section 3 (every character other than printable ASCII, `\`, `+` and
/// `=` written as `\x{HEX}`), because this part is `message/delivery-status`,
/// not `message/global-delivery-status`.
///
/// Refuses an empty address, one with a control character (it would break
/// the field) and one whose typed form is longer than 900 octets.
pub(super) fn typed_address(address: &str) -> Result<String, BounceError> {
    let bad = |reason| BounceError::BadAddress {
        address: address.to_string(),
        reason,
    };
    if address.is_empty() {
        return Err(bad("empty"));
    }
    if address.chars().any(char::is_control) {
        return Err(bad("control character"));
    }
    let typed = if address.is_ascii() {
        format!("rfc822; {address}")
    } else {
        let mut t = String::from("utf-8; ");
        for c in address.chars() {
            if matches!(c, '!'..='~') && !matches!(c, '\\' | '+' | '=') {
                t.push(c);
            } else {
                t.push_str(&format!("\\x{{{:02X}}}", u32::from(c)));
            }
        }
        t
    };
    if typed.len() > MAX_TYPED_ADDRESS {
        return Err(bad("too long to report"));
    }
    Ok(typed)
}

/// The `Original-Recipient` value of an ORCPT (`addr-type;address`,
/// decoded): `addr-type; address` when all ASCII, else the address typed
/// as [`typed_address`] types it (7-bit `utf-8;` form). Refuses a value
/// without `;`, with a control character, or too long to report.
pub(super) fn original_recipient(orcpt: &str) -> Result<String, BounceError> {
    let bad = |reason| BounceError::BadAddress {
        address: orcpt.to_string(),
        reason,
    };
    let (kind, address) = orcpt.split_once(';').ok_or(bad("ORCPT without a type"))?;
    let (kind, address) = (kind.trim(), address.trim());
    if kind.is_empty() || address.is_empty() || orcpt.chars().any(char::is_control) {
        return Err(bad("not a valid ORCPT"));
    }
    if !orcpt.is_ascii() {
        return typed_address(address);
    }
    let typed = format!("{kind}; {address}");
    if typed.len() > MAX_TYPED_ADDRESS {
        return Err(bad("too long to report"));
    }
    Ok(typed)
}

/// The `Status:` value: `status` when it is an enhanced status code
/// (RFC 3463: class, subject and detail, 1-3 digits each) of a class that
/// fits the notice, else the generic code of the notice's kind. A failure
/// may carry a 5.x.x code, or a 4.x.x code when it is the last temporary
/// error of a message that expired (as Postfix and sendmail report it); a
/// delay warning only 4.x.x; a success only 2.x.x.
pub(super) fn status_code(kind: NoticeKind, status: &str) -> String {
    let status = status.trim();
    let mut parts = status.split('.');
    let class = parts.next().unwrap_or("");
    let numbers_ok = parts.clone().count() == 2
        && parts.all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let class_ok = match kind {
        NoticeKind::Failure => class == "5" || class == "4",
        NoticeKind::Delay => class == "4",
        NoticeKind::Success => class == "2",
    };
    if numbers_ok && class_ok {
        status.to_string()
    } else {
        match kind {
            NoticeKind::Failure => "5.0.0".to_string(),
            NoticeKind::Delay => "4.0.0".to_string(),
            NoticeKind::Success => "2.0.0".to_string(),
        }
    }
}

/// The `Remote-MTA` host: `host` without blanks and a final dot, when it
/// is a plausible DNS name or address literal (printable ASCII, at most
/// 255 octets).
fn dns_name(host: &str) -> Option<&str> {
    let host = host.trim().trim_end_matches('.');
    let ok = !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(host)
}

/// The `Diagnostic-Code:` value: `smtp; reply` with the remote reply on one
/// line (runs of blanks reduced to one), non-ASCII characters as `?`; when there is no reply (a connection
/// failure, an expiry), `X-Ringmail; reason`, as Postfix writes
/// `X-Postfix; reason`. None when both are blank.
fn diagnostic_code(rcpt: &FailedRecipient) -> Option<String> {
    let (kind, text) = match rcpt.diagnostic.as_deref() {
        Some(reply) if !reply.trim().is_empty() => ("smtp", reply),
        _ => ("X-Ringmail", rcpt.reason.as_str()),
    };
    let text = ascii_only(&one_line(text));
    let words: Vec<&str> = text.split_whitespace().collect();
    (!words.is_empty()).then(|| format!("{kind}; {}", words.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_addresses_are_rfc822() {
        assert_eq!(
            typed_address("a+b@x.example").unwrap(),
            "rfc822; a+b@x.example"
        );
    }

    #[test]
    fn utf8_addresses_are_xtext() {
        assert_eq!(
            typed_address("jörg+x@bücher.example").unwrap(),
            "utf-8; j\\x{F6}rg\\x{2B}x@b\\x{FC}cher.example"
        );
        assert_eq!(typed_address("δ@x").unwrap(), "utf-8; \\x{3B4}@x");
        assert_eq!(typed_address("😀@x").unwrap(), "utf-8; \\x{1F600}@x");
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in ["", "a\r\nb@x", "a\0@x", &format!("{}@x", "ü".repeat(200))] {
            let e = typed_address(bad).unwrap_err();
            assert!(matches!(e, BounceError::BadAddress { .. }), "{bad:?}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn orcpt_is_reported_typed() {
        assert_eq!(
            original_recipient("rfc822;Alias@x.example").unwrap(),
            "rfc822; Alias@x.example"
        );
        assert_eq!(
            original_recipient("utf-8;j\u{f6}rg@x").unwrap(),
            "utf-8; j\\x{F6}rg@x"
        );
        for bad in ["no-type", ";a@x", "rfc822;", "rfc822;a\r\n@x"] {
            assert!(original_recipient(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_codes_are_checked() {
        assert_eq!(status_code(NoticeKind::Failure, "5.1.1"), "5.1.1");
        assert_eq!(status_code(NoticeKind::Failure, " 5.7.133 "), "5.7.133");
        assert_eq!(status_code(NoticeKind::Failure, "4.4.1"), "4.4.1");
        assert_eq!(status_code(NoticeKind::Failure, "2.0.0"), "5.0.0");
        assert_eq!(status_code(NoticeKind::Failure, "5.1"), "5.0.0");
        assert_eq!(status_code(NoticeKind::Failure, "5.1.1.1"), "5.0.0");
        assert_eq!(status_code(NoticeKind::Failure, "5.1234.1"), "5.0.0");
        assert_eq!(status_code(NoticeKind::Failure, "x"), "5.0.0");
        assert_eq!(status_code(NoticeKind::Delay, "4.4.1"), "4.4.1");
        assert_eq!(status_code(NoticeKind::Delay, "5.1.1"), "4.0.0");
        assert_eq!(status_code(NoticeKind::Delay, ""), "4.0.0");
        assert_eq!(status_code(NoticeKind::Success, "2.6.0"), "2.6.0");
        assert_eq!(status_code(NoticeKind::Success, "5.1.1"), "2.0.0");
    }

    #[test]
    fn remote_mta_and_diagnostic_are_cleaned() {
        assert_eq!(dns_name(" mx.example. "), Some("mx.example"));
        assert_eq!(dns_name("mx example"), None);
        assert_eq!(dns_name("mx\r\nX: y"), None);
        assert_eq!(dns_name("bücher.example"), None);
        let mut r = FailedRecipient {
            address: "a@x".into(),
            original_recipient: None,
            status: "5.1.1".into(),
            diagnostic: Some("550-5.1.1 first\r\n550 5.1.1 grüß".into()),
            remote_mta: None,
            reason: "reason".into(),
        };
        assert_eq!(
            diagnostic_code(&r).unwrap(),
            "smtp; 550-5.1.1 first 550 5.1.1 gr??"
        );
        r.diagnostic = None;
        assert_eq!(diagnostic_code(&r).unwrap(), "X-Ringmail; reason");
        r.reason = " ".into();
        assert_eq!(diagnostic_code(&r), None);
    }
}

//! The first part of a notice: the text for people, in the spirit of
//! Postfix's notices, wrapped at 76 columns.

use super::fold::{one_line, wrap};
use super::original::{HeadersOnly, Returned};
use super::report::status_code;
use super::{FailedRecipient, NoticeKind};

/// Width of the paragraphs and recipient lines.
const WIDTH: usize = 76;
/// Indent of the continuation lines of a recipient's reason.
const REASON_INDENT: &str = "    ";

/// The body of the text part, every line ending in CRLF. UTF-8 when an
/// address or reason is not ASCII.
pub(super) fn human_text(
    kind: NoticeKind,
    myhostname: &str,
    recipients: &[FailedRecipient],
    returned: &Returned,
) -> String {
    let mut out = String::with_capacity(1024 + 160 * recipients.len());
    paragraph(
        &mut out,
        &format!("This is the mail system at host {myhostname}."),
    );
    match kind {
        NoticeKind::Failure => {
            paragraph(
                &mut out,
                "I'm sorry to have to inform you that your message could not be \
                 delivered to one or more recipients. No further attempt will be \
                 made for the addresses below; each is followed by the reason the \
                 delivery failed.",
            );
        }
        NoticeKind::Delay => {
            paragraph(
                &mut out,
                "This is only a warning: you do not need to send your message again.",
            );
            paragraph(
                &mut out,
                "Your message could not be delivered yet to one or more recipients. \
                 The mail system keeps trying; the addresses still waiting are listed \
                 below with the reason of the last attempt. Should the message stay \
                 undeliverable for too long, it will be returned to you with a final \
                 notice.",
            );
        }
        NoticeKind::Success => {
            paragraph(
                &mut out,
                "Your message was successfully delivered to the destination(s) \
                 listed below. It was relayed to a mail system that does not \
                 confirm the final delivery, so you will receive no further \
                 notification of success; you may still receive notifications of \
                 mail delivery errors from other systems.",
            );
        }
    }
    paragraph(&mut out, &attachment_note(returned));
    paragraph(
        &mut out,
        "If you need help, send this notice to the postmaster of this mail system.",
    );
    for rcpt in recipients {
        paragraph_with_indent(&mut out, &recipient_line(kind, rcpt), REASON_INDENT);
    }
    // No empty line after the last paragraph: the part ends there.
    if out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// The sentence about the third part.
fn attachment_note(returned: &Returned) -> String {
    match returned {
        Returned::Full(_) => "Your message is attached after the delivery report.".to_string(),
        Returned::Headers(_, HeadersOnly::Requested) => {
            "The header of your message is attached after the delivery report.".to_string()
        }
        Returned::Headers(_, HeadersOnly::TooLarge { size, limit }) => format!(
            "Your message is {size} bytes long, more than the {limit} bytes \
             returned with a notice, so only its header is attached after the \
             delivery report."
        ),
        Returned::Headers(_, HeadersOnly::Unsuitable) => {
            "Only the header of your message is attached after the delivery \
             report: its text cannot be returned as it is (it has lines that are \
             too long, or stray control characters)."
                .to_string()
        }
        Returned::Nothing => "Your message could not be attached.".to_string(),
    }
}

/// `<address>: reason` on one logical line. The reason falls back to the
/// remote reply, then to the status code.
fn recipient_line(kind: NoticeKind, rcpt: &FailedRecipient) -> String {
    let reason = one_line(&rcpt.reason);
    let reason = reason.trim();
    let reason = if !reason.is_empty() {
        reason.to_string()
    } else if let Some(reply) = rcpt.diagnostic.as_deref().filter(|d| !d.trim().is_empty()) {
        format!("the remote server said: {}", one_line(reply).trim())
    } else {
        let what = match kind {
            NoticeKind::Failure => "delivery failed",
            NoticeKind::Delay => "delivery is delayed",
            NoticeKind::Success => "relayed",
        };
        format!("{what} (status {})", status_code(kind, &rcpt.status))
    };
    format!("<{}>: {reason}", one_line(&rcpt.address))
}

/// Appends `text` wrapped, followed by an empty line.
fn paragraph(out: &mut String, text: &str) {
    paragraph_with_indent(out, text, "");
}

/// Appends `text` wrapped with `indent` before its continuation lines,
/// followed by an empty line.
fn paragraph_with_indent(out: &mut String, text: &str, indent: &str) {
    for line in wrap(text, WIDTH, indent) {
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(address: &str, reason: &str, diagnostic: Option<&str>) -> FailedRecipient {
        FailedRecipient {
            address: address.into(),
            original_recipient: None,
            status: "5.1.1".into(),
            diagnostic: diagnostic.map(Into::into),
            remote_mta: None,
            reason: reason.into(),
        }
    }

    #[test]
    fn failure_text_lists_each_recipient_with_its_reason() {
        let long = "host mx.example[192.0.2.1] said: 550 5.1.1 <a@x.example>: \
                    Recipient address rejected: User unknown in virtual mailbox table \
                    (in reply to RCPT TO command)";
        let t = human_text(
            NoticeKind::Failure,
            "mx.example",
            &[
                rcpt("a@x.example", long, None),
                rcpt("b@x.example", "", Some("550 no\r\nsuch")),
            ],
            &Returned::Full(Vec::new()),
        );
        assert!(t.starts_with("This is the mail system at host mx.example.\r\n\r\n"));
        assert!(t.contains("I'm sorry to have to inform you"));
        assert!(t.contains("Your message is attached"));
        assert!(t.contains("\r\n<a@x.example>: host mx.example[192.0.2.1] said: 550"));
        assert!(t.contains("\r\n    "), "continuation indent: {t}");
        assert!(t.contains("<b@x.example>: the remote server said: 550 no such"));
        assert!(t.lines().all(|l| l.len() <= WIDTH), "{t}");
        assert!(t
            .split("\r\n")
            .all(|l| !l.contains('\r') && !l.contains('\n')));
        assert!(t.ends_with("no such\r\n"), "{t}");
    }

    #[test]
    fn delay_text_says_it_is_a_warning() {
        let t = human_text(
            NoticeKind::Delay,
            "mx.example",
            &[rcpt("a@x.example", "", None)],
            &Returned::Headers(Vec::new(), HeadersOnly::Requested),
        );
        assert!(t.contains("only a warning"));
        assert!(t.contains("The header of your message is attached"));
        assert!(t.contains("<a@x.example>: delivery is delayed (status 4.0.0)"));
    }

    #[test]
    fn size_note_names_the_limit() {
        let note = attachment_note(&Returned::Headers(
            Vec::new(),
            HeadersOnly::TooLarge {
                size: 60000,
                limit: 50000,
            },
        ));
        assert!(note.contains("60000") && note.contains("50000"), "{note}");
    }
}

//! Mail to a campaign's own addresses, taken by the SMTP listeners instead
//! of being relayed ([`LocalMail`]):
//!
//! - `bounces+TOKEN@...` (the VERP envelope sender of every campaign
//!   message): a bounce. An RFC 3464 report is read (`Action` and `Status`
//!   of the first recipient); without one, the first enhanced status code
//!   in the text is taken, as far as it goes. A permanent failure marks the
//!   recipient bounced in the campaign's results and adds the address to
//!   the suppression list; a delay report is only logged.
//! - `unsubscribe+TOKEN@...` (the mailto of `List-Unsubscribe`): the
//!   recipient is added to the suppression list.
//!
//! An address is ours only when its token carries our HMAC: nobody can
//! bounce or unsubscribe a recipient without a message we sent them.

use std::path::PathBuf;

use crate::compose::token::token_in_address;
use crate::compose::TokenKey;
use crate::inject::smtpd::{LocalMail, LocalMessage, PrepareError};
use crate::obs::events::{Event, EventKind, EventSink, Reply};
use crate::queue::campaign_results::{find_recipient, ResultsWriter};
use crate::queue::suppress::{Entry, Reason, ReasonKind, Scope, SharedSuppressions};

/// What an address of ours is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Bounce,
    Unsubscribe,
}

/// The campaigns' local mailbox.
pub struct CampaignMailbox {
    key: TokenKey,
    suppressions: Option<SharedSuppressions>,
    results_dir: PathBuf,
    /// Serializes the async results writer (one per daemon).
    late: std::sync::Mutex<ResultsWriter>,
    /// Where `bounced` (late) and `unsubscribed` events go.
    events: EventSink,
}

impl CampaignMailbox {
    /// A mailbox checking tokens with `key`, writing results under
    /// `results_dir` (the spool's `campaigns/`) and events to `events`.
    pub fn new(
        key: TokenKey,
        suppressions: Option<SharedSuppressions>,
        results_dir: PathBuf,
        events: EventSink,
    ) -> CampaignMailbox {
        CampaignMailbox {
            late: std::sync::Mutex::new(ResultsWriter::for_async(&results_dir)),
            key,
            suppressions,
            results_dir,
            events,
        }
    }

    /// Emits `kind` for recipient `index` of campaign `cid`, once its
    /// result is durable.
    fn emit(&self, kind: EventKind, cid: u64, index: u32, address: &str, reply: Option<Reply>) {
        if !self.events.is_enabled() {
            return;
        }
        let mut e = Event::campaign_recipient(kind, cid, index, address);
        e.reply = reply;
        self.events.emit(e);
    }

    fn purpose(&self, recipient: &str) -> Option<(Purpose, u64, u32)> {
        let (purpose, token) = match token_in_address(recipient, "bounces") {
            Some(t) => (Purpose::Bounce, t),
            None => (
                Purpose::Unsubscribe,
                token_in_address(recipient, "unsubscribe")?,
            ),
        };
        let t = self.key.verify(token)?;
        Some((purpose, t.campaign, t.recipient))
    }

    fn suppress(
        &self,
        address: &str,
        cid: u64,
        kind: ReasonKind,
        detail: &str,
    ) -> Result<(), PrepareError> {
        let Some(list) = &self.suppressions else {
            return Err(PrepareError::Temporary(
                "the suppression list cannot be read".into(),
            ));
        };
        let mut entry = Entry::new(address, Scope::Global, Reason::new(kind, detail))
            .map_err(|e| PrepareError::Refused(e.to_string()))?;
        entry.campaign = Some(cid);
        list.add(entry)
            .map(|_| ())
            .map_err(|e| PrepareError::Temporary(format!("suppression list: {e}")))
    }
}

impl LocalMail for CampaignMailbox {
    fn is_local(&self, recipient: &str) -> bool {
        self.purpose(recipient).is_some()
    }

    fn deliver(&self, m: &LocalMessage) -> Result<String, PrepareError> {
        let mut done = Vec::new();
        for rcpt in &m.recipients {
            let Some((purpose, cid, index)) = self.purpose(rcpt) else {
                continue;
            };
            let address = find_recipient(&self.results_dir, cid, index)
                .map_err(|e| PrepareError::Temporary(e.to_string()))?;
            let Some(address) = address else {
                // A token of ours for a recipient never sent to: nothing
                // to act on (the campaign is gone, or the report is
                // early); accepted so the sender does not retry.
                tracing::warn!(target: "campaign", "campaign {cid} recipient {index}: {} from {} for a recipient with no result; ignored", what(purpose), m.client_name);
                done.push("ignored");
                continue;
            };
            match purpose {
                Purpose::Unsubscribe => {
                    self.suppress(&address, cid, ReasonKind::Unsubscribe, "mailto")?;
                    crate::info_line!(target: "campaign", "campaign {cid} recipient {index} <{address}>: unsubscribed (mailto, from {})", m.client_name);
                    self.emit(EventKind::Unsubscribed, cid, index, &address, None);
                    done.push("unsubscribed");
                }
                Purpose::Bounce => {
                    let report = read_bounce(&m.content);
                    match report {
                        Some(r) if r.status.starts_with('5') => {
                            {
                                let mut late = self.late.lock().unwrap_or_else(|p| p.into_inner());
                                late.note(
                                    cid,
                                    index,
                                    &address,
                                    "bounced",
                                    &r.status,
                                    &r.diagnostic,
                                );
                                late.flush()
                                    .map_err(|e| PrepareError::Temporary(e.to_string()))?;
                            }
                            self.suppress(
                                &address,
                                cid,
                                ReasonKind::Bounce,
                                &format!("{} {}", r.status, r.diagnostic),
                            )?;
                            crate::info_line!(target: "campaign", "campaign {cid} recipient {index} <{address}>: bounced later (dsn={}, {}), suppressed", r.status, r.diagnostic);
                            self.emit(
                                EventKind::Bounced,
                                cid,
                                index,
                                &address,
                                Some(Reply {
                                    code: reply_code(&r.diagnostic).unwrap_or(550),
                                    enhanced: Some(r.status.clone()),
                                    text: r.diagnostic.clone(),
                                }),
                            );
                            done.push("bounce recorded");
                        }
                        Some(r) => {
                            crate::info_line!(target: "campaign", "campaign {cid} recipient {index} <{address}>: delay report (dsn={}, {})", r.status, r.diagnostic);
                            done.push("delay noted");
                        }
                        None => {
                            tracing::warn!(target: "campaign", "campaign {cid} recipient {index} <{address}>: a bounce without a status code from {}; ignored", m.client_name);
                            done.push("ignored");
                        }
                    }
                }
            }
        }
        done.dedup();
        Ok(done.join(", "))
    }
}

fn what(p: Purpose) -> &'static str {
    match p {
        Purpose::Bounce => "a bounce",
        Purpose::Unsubscribe => "an unsubscribe",
    }
}

/// The SMTP code in a diagnostic such as `smtp; 550 5.1.1 no such user`.
fn reply_code(diagnostic: &str) -> Option<u16> {
    let rest = diagnostic.split_once(';').map_or(diagnostic, |(_, r)| r);
    let word = rest.split_whitespace().next()?;
    let code: u16 = word.parse().ok()?;
    (200..600).contains(&code).then_some(code)
}

/// What a bounce says of the (first) recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BounceReport {
    /// The enhanced status code, e.g. `5.1.1`.
    status: String,
    /// The diagnostic (the remote reply), or what the report says.
    diagnostic: String,
}

/// Reads a bounce: the first per-recipient `Status:` of an RFC 3464
/// `message/delivery-status` part (with its `Diagnostic-Code:`), or the
/// first enhanced status code in the text of a bounce in another form.
fn read_bounce(content: &[u8]) -> Option<BounceReport> {
    let text = String::from_utf8_lossy(content);
    let lower = text.to_ascii_lowercase();
    if let Some(at) = lower.find("message/delivery-status") {
        let part = &text[at..];
        let mut status = None;
        let mut diagnostic = String::new();
        let mut action_failed_or_delayed = true;
        for line in part.lines() {
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("status:") {
                status = status.or_else(|| enhanced_code(v));
            } else if l.starts_with("diagnostic-code:") && diagnostic.is_empty() {
                diagnostic = line["diagnostic-code:".len()..].trim().to_string();
            } else if let Some(v) = l.strip_prefix("action:") {
                let v = v.trim();
                action_failed_or_delayed = v.starts_with("failed") || v.starts_with("delayed");
            }
            if status.is_some() && !diagnostic.is_empty() {
                break;
            }
        }
        if let Some(status) = status.filter(|_| action_failed_or_delayed) {
            return Some(BounceReport {
                diagnostic: if diagnostic.is_empty() {
                    "delivery status report".into()
                } else {
                    diagnostic
                },
                status,
            });
        }
    }
    // Not a report: the first enhanced code in the text, best effort.
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(enhanced_code)
        .map(|status| BounceReport {
            status,
            diagnostic: "bounce without a delivery status report".into(),
        })
}

/// `5.1.1` in `v` (class 2, 4 or 5; subject and detail up to 3 digits).
fn enhanced_code(v: &str) -> Option<String> {
    let v = v.trim().trim_end_matches('.');
    let mut parts = v.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    (matches!(class, "2" | "4" | "5") && digits(subject, 3) && digits(detail, 3))
        .then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3464_reports_and_plain_bounces() {
        let dsn = "From: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered (see 4.4.1 earlier?).\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
Final-Recipient: rfc822; a@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b--\r\n";
        assert_eq!(
            read_bounce(dsn.as_bytes()),
            Some(BounceReport {
                status: "5.1.1".into(),
                diagnostic: "smtp; 550 5.1.1 no such user".into()
            })
        );
        let delayed = dsn
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.1.1", "Status: 4.4.7");
        assert_eq!(read_bounce(delayed.as_bytes()).unwrap().status, "4.4.7");
        let plain = "Subject: failure\r\n\r\nThe mail server said: 550 5.7.1 blocked.\r\n";
        assert_eq!(read_bounce(plain.as_bytes()).unwrap().status, "5.7.1");
        assert_eq!(
            read_bounce(b"Subject: hi\r\n\r\nversion 1.2 or 10.0.0.1\r\n"),
            None
        );
        assert_eq!(enhanced_code("5.1.1"), Some("5.1.1".into()));
        assert_eq!(enhanced_code("3.1.1"), None);
        assert_eq!(enhanced_code("5.1"), None);
        assert_eq!(reply_code("smtp; 550 5.1.1 no such user"), Some(550));
        assert_eq!(reply_code("bounce without a delivery status report"), None);
    }
}

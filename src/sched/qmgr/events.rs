//! Delivery events for applications (`[events]`, docs/OPERATIONS.md): what
//! the queue manager tells the events file about each recipient's result.
//! Built only when the events sink is on.

use crate::deliver::{Cause, RcptResult, ResultClass};
use crate::model::QueueId;
use crate::obs::events::{Event, EventKind, EventSource, Reply};

/// What every event of one job carries.
pub(super) struct JobFacts<'a> {
    /// The message.
    pub id: QueueId,
    /// Envelope sender (`None` for a campaign recipient: rendered per
    /// recipient).
    pub sender: Option<&'a str>,
    /// The message's Message-ID, if known here.
    pub message_id: Option<&'a str>,
    /// The campaign and the index of the slice's first recipient.
    pub campaign: Option<(u64, u32)>,
    /// Where the job went (the destination's site, or its next hop).
    pub site: Option<&'a str>,
    /// Delivery attempts so far, this one included.
    pub attempts: u32,
}

/// The event for recipient `index` of the job, address `addr`, and its
/// result.
pub(super) fn result_event(
    facts: &JobFacts<'_>,
    index: u32,
    addr: &str,
    result: &RcptResult,
) -> Event {
    let kind = match result.class {
        ResultClass::Sent => EventKind::Delivered,
        ResultClass::Deferred => EventKind::Deferred,
        ResultClass::Bounced => EventKind::Bounced,
        ResultClass::Expired => EventKind::Expired,
    };
    let mut e = Event::new(kind, facts.id.to_string());
    e.sender = facts.sender.map(str::to_string);
    e.recipient = Some(addr.to_string());
    e.message_id = facts
        .message_id
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    e.site = facts.site.map(str::to_string);
    e.attempts = Some(facts.attempts);
    if let Some((cid, first)) = facts.campaign {
        e.campaign = Some(cid.to_string());
        e.recipient_index = Some(first.saturating_add(index));
        e.source = Some(EventSource::Campaign);
    }
    e.reply = Some(match &result.cause {
        Cause::Reply(r) => {
            e.peer = Some(r.peer.clone());
            let enhanced = r.reply.enhanced.map(|c| c.to_string());
            let mut text = r.reply.text();
            if let Some(code) = &enhanced {
                if let Some(rest) = text.strip_prefix(code.as_str()) {
                    text = rest.trim_start().to_string();
                }
            }
            Reply {
                code: r.reply.code,
                enhanced,
                text,
            }
        }
        // Decided here, not by a server: code 0, the reason as logged.
        Cause::Failure { text, reply } => Reply {
            code: reply.as_ref().map_or(0, |r| r.code),
            enhanced: Some(result.dsn().to_string()),
            text: text.clone(),
        },
    });
    e
}

/// The `suppressed` event of a campaign recipient skipped because its
/// address is on the suppression list.
pub(super) fn suppressed_event(
    id: QueueId,
    campaign: Option<(u64, u32)>,
    index: u32,
    addr: &str,
    why: &str,
) -> Event {
    let mut e = Event::new(EventKind::Suppressed, id.to_string());
    e.recipient = Some(addr.to_string());
    if let Some((cid, first)) = campaign {
        e.campaign = Some(cid.to_string());
        e.recipient_index = Some(first.saturating_add(index));
        e.source = Some(EventSource::Campaign);
    }
    e.reply = Some(Reply {
        code: 0,
        enhanced: Some("5.7.1".into()),
        text: why.to_string(),
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::Peer;
    use crate::proto::{Reply as SmtpReply, Stage};

    #[test]
    fn a_server_reply_becomes_the_events_reply_and_peer() {
        let peer = Peer {
            host: "mx.example".into(),
            addr: "127.0.0.1:25".parse().unwrap(),
        };
        let r = RcptResult::from_reply(
            &peer,
            &SmtpReply::new(550, vec!["5.1.1 no such user".into()]),
            Stage::Rcpt,
        );
        let facts = JobFacts {
            id: QueueId::new(0, 1),
            sender: Some("s@example.com"),
            message_id: Some("m@x"),
            campaign: Some((7, 100)),
            site: Some("example"),
            attempts: 2,
        };
        let e = result_event(&facts, 3, "a@example.net", &r);
        assert_eq!(e.kind, EventKind::Bounced);
        assert_eq!(e.recipient_index, Some(103));
        assert_eq!(e.campaign.as_deref(), Some("7"));
        assert_eq!(e.peer.as_deref(), Some("mx.example[127.0.0.1]"));
        let reply = e.reply.unwrap();
        assert_eq!(
            (reply.code, reply.enhanced.as_deref()),
            (550, Some("5.1.1"))
        );
        assert_eq!(reply.text, "no such user");
        let local = result_event(&facts, 0, "b@x", &RcptResult::expired());
        assert_eq!(local.kind, EventKind::Expired);
        assert_eq!(local.reply.unwrap().code, 0);
    }
}

//! One delivery event: the typed value the scheduler emits and its JSON
//! form (one line of the events file, one element of a webhook batch).
//!
//! Every field that is not always known is an `Option` and left out of
//! the JSON when unset, so a receiver tests for presence, not for `null`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Committed to the queue (after the fdatasync).
    Received,
    /// Accepted by the receiving server (a 2xx to the end of data).
    Delivered,
    /// Refused for now, or not reachable; tried again later.
    Deferred,
    /// Refused for good; a bounce notice goes to the sender.
    Bounced,
    /// Given up after `maximal_queue_lifetime`.
    Expired,
    /// Not sent: the address is on the suppression list.
    Suppressed,
    /// The recipient unsubscribed (one-click, or by mail).
    Unsubscribed,
    /// The recipient reported the message as spam (feedback loop; not
    /// emitted yet).
    Complaint,
}

impl EventKind {
    /// The JSON value (`"delivered"` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Received => "received",
            EventKind::Delivered => "delivered",
            EventKind::Deferred => "deferred",
            EventKind::Bounced => "bounced",
            EventKind::Expired => "expired",
            EventKind::Suppressed => "suppressed",
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::Complaint => "complaint",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the message came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// `sendmail` (through `submit.sock` or `maildrop/`).
    Sendmail,
    /// A file dropped into `pickup/`.
    Pickup,
    /// An SMTP listener.
    Smtp,
    /// `POST /api/v1/messages`.
    Api,
    /// A campaign (`campaign.sock` or `POST /api/v1/campaigns`).
    Campaign,
    /// Made by the daemon itself (bounce notices, delay warnings).
    Internal,
}

impl From<crate::obs::metrics::Origin> for EventSource {
    /// The same intake as the metrics' `source` label.
    fn from(o: crate::obs::metrics::Origin) -> EventSource {
        use crate::obs::metrics::Origin;
        match o {
            Origin::Sendmail => EventSource::Sendmail,
            Origin::Pickup => EventSource::Pickup,
            Origin::Smtp => EventSource::Smtp,
            Origin::Api => EventSource::Api,
            Origin::Campaign => EventSource::Campaign,
            Origin::Internal => EventSource::Internal,
        }
    }
}

/// The receiving server's answer (or ours, for a local decision such as
/// an expiry), as in the `status=... (...)` part of the log line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The basic SMTP code (`250`, `451`, `550` ...).
    pub code: u16,
    /// The enhanced status code (`5.1.1`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    /// The reply text, lines joined by a space.
    #[serde(default)]
    pub text: String,
}

/// One delivery event. Build it with [`Event::new`] and set what is known;
/// `id` is filled in by the writer thread when left empty, so emitting
/// costs no shared counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique over every event this spool ever wrote (32 hex digits: a
    /// random number drawn at each daemon start, then a counter): the key
    /// a receiver de-duplicates on, since delivery is at least once.
    #[serde(default)]
    pub id: String,
    /// When it happened, RFC 3339 in UTC with microseconds.
    #[serde(with = "rfc3339")]
    pub time: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The queue ID (as in the log lines); absent when not known (a late
    /// bounce or an unsubscribe names the campaign recipient instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// The campaign's ID, for campaign mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The recipient's index (0-based) in its campaign's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_index: Option<u32>,
    /// The envelope sender (empty for a bounce notice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The recipient's address (absent on a `received` event of a message
    /// with several recipients: see `recipients`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Every recipient of the message, on `received` events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<String>>,
    /// The Message-ID, without angle brackets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The destination site (the recipient domain, or the next hop that
    /// serves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Where the message came in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
    /// The server's answer, or the reason of a local decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    /// The server talked to, `host[ip]:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Delivery attempts so far, this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl Event {
    /// An event of `kind` for `queue_id` (empty: not known), stamped now;
    /// every other optional field unset and the id left for the writer.
    pub fn new(kind: EventKind, queue_id: impl Into<String>) -> Event {
        let queue_id = queue_id.into();
        Event {
            id: String::new(),
            // Microseconds: what the JSON carries, so a read-back is equal.
            time: Utc::now().trunc_subsecs(6),
            kind,
            queue_id: (!queue_id.is_empty()).then_some(queue_id),
            campaign: None,
            recipient_index: None,
            sender: None,
            recipient: None,
            recipients: None,
            message_id: None,
            site: None,
            source: None,
            reply: None,
            peer: None,
            attempts: None,
        }
    }

    /// An event of `kind` about recipient `index` (`address`) of campaign
    /// `campaign`, without a queue ID: a late bounce or an unsubscribe,
    /// which name the recipient by its token, not by its message.
    pub fn campaign_recipient(kind: EventKind, campaign: u64, index: u32, address: &str) -> Event {
        let mut e = Event::new(kind, String::new());
        e.campaign = Some(campaign.to_string());
        e.recipient_index = Some(index);
        e.recipient = Some(address.to_string());
        e.site = address
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_ascii_lowercase());
        e.source = Some(EventSource::Campaign);
        e
    }

    /// Appends the event as one line of JSON (with the final `\n`) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(&mut *out, self)?;
        out.push(b'\n');
        Ok(())
    }
}

/// Makes event ids: a 64-bit random prefix drawn once, then a counter.
/// Only the writer thread holds one, so ids cost no shared state.
#[derive(Debug)]
pub struct IdMaker {
    prefix: u64,
    next: u64,
}

impl IdMaker {
    /// A maker with a fresh random prefix (from the operating system's
    /// random source; the time and process id if that fails).
    pub fn new() -> IdMaker {
        let mut bytes = [0u8; 8];
        let prefix =
            match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
                Ok(()) => u64::from_le_bytes(bytes),
                Err(_) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0);
                    now ^ (u64::from(std::process::id()) << 40)
                }
            };
        IdMaker { prefix, next: 0 }
    }

    /// The next id: 32 lower-case hex digits.
    pub fn next_id(&mut self) -> String {
        let id = format!("{:016x}{:016x}", self.prefix, self.next);
        self.next = self.next.wrapping_add(1);
        id
    }
}

impl Default for IdMaker {
    fn default() -> IdMaker {
        IdMaker::new()
    }
}

/// RFC 3339 in UTC with microseconds and `Z`: `2026-12-07T02:28:38.123456Z`.
mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_leaves_out_what_is_unknown() {
        let mut e = Event::new(EventKind::Delivered, "01A2B3C4D5E6");
        e.id = "00000000000000010000000000000002".into();
        e.time = DateTime::parse_from_rfc3339("2026-12-07T02:28:38.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut line = Vec::new();
        e.write_line(&mut line).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"id\":\"00000000000000010000000000000002\",\"time\":\"2026-12-07T02:28:38.500000Z\",\
             \"kind\":\"delivered\",\"queue_id\":\"01A2B3C4D5E6\"}\n"
        );
    }

    #[test]
    fn every_field_round_trips() {
        let mut e = Event::new(EventKind::Bounced, "Q1");
        e.id = "ab".into();
        e.campaign = Some("0000000000000007".into());
        e.recipient_index = Some(41);
        e.sender = Some("bounces+x@news.example".into());
        e.recipient = Some("a@gmail.example".into());
        e.message_id = Some("m1@news.example".into());
        e.site = Some("gmail.example".into());
        e.source = Some(EventSource::Campaign);
        e.reply = Some(Reply {
            code: 550,
            enhanced: Some("5.1.1".into()),
            text: "no such user".into(),
        });
        e.peer = Some("mx.gmail.example[192.0.2.1]:25".into());
        e.attempts = Some(2);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "bounced");
        assert_eq!(json["source"], "campaign");
        assert_eq!(json["reply"]["code"], 550);
        assert_eq!(json["reply"]["enhanced"], "5.1.1");
        assert_eq!(json["recipient_index"], 41);
        assert!(json.get("recipients").is_none());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn campaign_recipient_events_name_the_recipient() {
        let e = Event::campaign_recipient(EventKind::Unsubscribed, 7, 3, "A@Mail.Example");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["campaign"], "7");
        assert_eq!(json["recipient_index"], 3);
        assert_eq!(json["recipient"], "A@Mail.Example");
        assert_eq!(json["site"], "mail.example");
        assert_eq!(json["source"], "campaign");
        assert!(json.get("queue_id").is_none());
    }

    #[test]
    fn sources_match_the_metrics_labels() {
        for o in crate::obs::metrics::Origin::ALL {
            let s = serde_json::to_string(&EventSource::from(o)).unwrap();
            assert_eq!(s, format!("\"{}\"", o.as_str()));
        }
    }

    #[test]
    fn kinds_are_lower_case_words() {
        for (k, s) in [
            (EventKind::Received, "received"),
            (EventKind::Unsubscribed, "unsubscribed"),
            (EventKind::Complaint, "complaint"),
        ] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{s}\""));
            assert_eq!(k.to_string(), s);
        }
    }

    #[test]
    fn ids_differ_within_and_across_makers() {
        let mut a = IdMaker::new();
        let mut b = IdMaker::new();
        let (a0, a1, b0) = (a.next_id(), a.next_id(), b.next_id());
        assert_eq!(a0.len(), 32);
        assert!(a0.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a0, a1);
        assert_ne!(a0, b0, "a new start draws a new prefix");
    }
}

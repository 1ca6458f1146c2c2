//! Administrative queue commands (`ringmail queue hold|release|delete|
//! requeue|bounce`, the admin API's `/api/v1/queue/...`): what to do, to
//! which messages, and what was done. The shards carry them out; the CLI,
//! the admin socket and the HTTP API only build and report them.

use serde::{Deserialize, Serialize};

use super::QueueId;

/// What to do to the selected messages, in Postfix's vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "op")]
pub enum QueueOp {
    /// Keep the recipients but do not try them (`postsuper -h`).
    Hold,
    /// Take held recipients off hold and try them now (`postsuper -H`).
    Release,
    /// Remove the recipients without a notice (`postsuper -d`).
    Delete,
    /// Try deferred recipients again now (`postsuper -r`).
    Requeue,
    /// Fail the recipients now with a notice to the sender (as a permanent
    /// failure: `5.0.0`, with this reason).
    Bounce {
        /// Why, as the notice and the log say.
        reason: String,
    },
    /// Start no delivery to a shaping site for a while (every source);
    /// its mail waits untried (`queue suspend SITE`).
    Suspend {
        /// The site, as `ringmail shaping show` names it.
        #[serde(rename = "target_site")]
        site: String,
        /// For how long, in seconds.
        seconds: u64,
    },
    /// Lift a site's suspension, whoever set it (`queue resume SITE`).
    Resume {
        /// The site.
        #[serde(rename = "target_site")]
        site: String,
    },
}

impl QueueOp {
    /// The word used in logs and reports (`hold`, `release`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            QueueOp::Hold => "hold",
            QueueOp::Release => "release",
            QueueOp::Delete => "delete",
            QueueOp::Requeue => "requeue",
            QueueOp::Bounce { .. } => "bounce",
            QueueOp::Suspend { .. } => "suspend",
            QueueOp::Resume { .. } => "resume",
        }
    }

    /// True when the operation acts on held recipients (release, delete,
    /// bounce); the others act on recipients waiting for delivery.
    pub fn takes_held(&self) -> bool {
        matches!(
            self,
            QueueOp::Release | QueueOp::Delete | QueueOp::Bounce { .. }
        )
    }

    /// True when the operation acts on recipients waiting for delivery.
    pub fn takes_live(&self) -> bool {
        !matches!(self, QueueOp::Release)
    }

    /// The site of a site operation (suspend, resume), which selects no
    /// messages.
    pub fn site(&self) -> Option<&str> {
        match self {
            QueueOp::Suspend { site, .. } | QueueOp::Resume { site } => Some(site),
            _ => None,
        }
    }
}

/// Which messages (and recipients) a command selects. Every given
/// criterion must match; `all` must be set to select with none, so an
/// empty selector never means "everything" by accident.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueSelector {
    /// These queue IDs (12 hex digits).
    pub ids: Vec<String>,
    /// Recipients at this domain (case-insensitive, exact): only those
    /// recipients of a matching message are acted on.
    pub domain: Option<String>,
    /// Messages from this envelope sender (case-insensitive; `<>` or ""
    /// for the null sender).
    pub sender: Option<String>,
    /// Slices of this campaign.
    pub campaign: Option<u64>,
    /// Recipients whose destination belongs to this shaping site (as
    /// `ringmail shaping show` names it; a destination not planned since
    /// the daemon started has no site yet and is not selected).
    pub site: Option<String>,
    /// Every message (needed when no other criterion is given).
    pub all: bool,
}

/// Why a selector is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// No criterion and no `all`.
    #[error("select messages by queue ID, --domain, --sender, --campaign or --site (or --all)")]
    Empty,
    /// A queue ID that is not 12 hex digits.
    #[error("{0:?} is not a queue ID (12 hex digits)")]
    BadId(String),
}

impl SelectorError {
    /// Never: a bad selector stays bad.
    pub fn is_transient(&self) -> bool {
        false
    }
}

impl QueueSelector {
    /// The selector's queue IDs, parsed; an error for an empty selector or
    /// a malformed ID.
    pub fn check(&self) -> Result<Vec<QueueId>, SelectorError> {
        if self.ids.is_empty()
            && self.domain.is_none()
            && self.sender.is_none()
            && self.campaign.is_none()
            && self.site.is_none()
            && !self.all
        {
            return Err(SelectorError::Empty);
        }
        self.ids
            .iter()
            .map(|s| s.parse().map_err(|_| SelectorError::BadId(s.clone())))
            .collect()
    }

    /// True when a message with this envelope sender and campaign can
    /// match (its recipients are checked with [`QueueSelector::takes_recipient`]).
    pub fn takes_message(
        &self,
        ids: &[QueueId],
        id: QueueId,
        sender: &str,
        campaign: Option<u64>,
    ) -> bool {
        if !self.ids.is_empty() && !ids.contains(&id) {
            return false;
        }
        if let Some(want) = &self.sender {
            let want = want.trim_start_matches('<').trim_end_matches('>');
            if !want.eq_ignore_ascii_case(sender) {
                return false;
            }
        }
        if let Some(want) = self.campaign {
            if campaign != Some(want) {
                return false;
            }
        }
        true
    }

    /// True when this recipient of a selected message is acted on.
    pub fn takes_recipient(&self, address: &str) -> bool {
        match &self.domain {
            None => true,
            Some(want) => address
                .rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(want.trim_end_matches('.'))),
        }
    }
}

/// A command for the shards: an operation, a selection, and whether to
/// only say what would be done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCommand {
    /// What to do.
    #[serde(flatten)]
    pub op: QueueOp,
    /// To what.
    #[serde(flatten)]
    pub selector: QueueSelector,
    /// Report the selection, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One message a command acted on (or would have, in a dry run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCommandHit {
    /// The queue ID.
    pub queue_id: String,
    /// Recipients changed (or that would be).
    pub recipients: usize,
}

/// What a command did, over every shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCommandReport {
    /// The operation (`hold`, ...).
    pub op: String,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// Every message acted on, by queue ID order.
    pub messages: Vec<QueueCommandHit>,
    /// Total recipients acted on.
    pub recipients: usize,
    /// Set when a shard could not make its changes durable (the queue
    /// could not be written): they may be lost in a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl QueueCommandReport {
    /// Adds one shard's hits.
    pub fn merge(&mut self, other: QueueCommandReport) {
        self.recipients += other.recipients;
        if self.error.is_none() {
            self.error = other.error;
        }
        self.messages.extend(other.messages);
        self.messages.sort_by(|a, b| a.queue_id.cmp(&b.queue_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_selector_selects_nothing_by_accident() {
        assert_eq!(QueueSelector::default().check(), Err(SelectorError::Empty));
        let all = QueueSelector {
            all: true,
            ..Default::default()
        };
        assert_eq!(all.check(), Ok(vec![]));
        let bad = QueueSelector {
            ids: vec!["xyz".into()],
            ..Default::default()
        };
        assert_eq!(bad.check(), Err(SelectorError::BadId("xyz".into())));
    }

    #[test]
    fn criteria_all_have_to_match() {
        let id = QueueId::new(0, 7);
        let s = QueueSelector {
            sender: Some("<News@Example.com>".into()),
            domain: Some("Gmail.com".into()),
            ..Default::default()
        };
        assert!(s.takes_message(&[], id, "news@example.com", None));
        assert!(!s.takes_message(&[], id, "other@example.com", None));
        assert!(s.takes_recipient("a@gmail.COM"));
        assert!(!s.takes_recipient("a@mail.gmail.com"));
        let null = QueueSelector {
            sender: Some("<>".into()),
            ..Default::default()
        };
        assert!(null.takes_message(&[], id, "", None));
        let c = QueueSelector {
            campaign: Some(5),
            ids: vec![id.to_string()],
            ..Default::default()
        };
        let ids = c.check().unwrap();
        assert!(c.takes_message(&ids, id, "x@y", Some(5)));
        assert!(!c.takes_message(&ids, id, "x@y", Some(6)));
        assert!(!c.takes_message(&ids, QueueId::new(0, 8), "x@y", Some(5)));
    }

    #[test]
    fn a_site_command_and_a_site_selector_do_not_collide() {
        let c = QueueCommand {
            op: QueueOp::Suspend {
                site: "google".into(),
                seconds: 60,
            },
            selector: QueueSelector {
                site: Some("other".into()),
                ..Default::default()
            },
            dry_run: false,
        };
        let back: QueueCommand = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn commands_read_as_json() {
        let c: QueueCommand =
            serde_json::from_str(r#"{"op":"bounce","reason":"list closed","domain":"x.test"}"#)
                .unwrap();
        assert_eq!(
            c.op,
            QueueOp::Bounce {
                reason: "list closed".into()
            }
        );
        assert_eq!(c.selector.domain.as_deref(), Some("x.test"));
        assert!(!c.dry_run);
    }
}

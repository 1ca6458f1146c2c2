//! Delivery status notifications from the queue manager's side: turning
//! per-recipient results into the `bounce` module's input, and queueing
//! the notice in the shard's own queue like any other message.
//!
//! Durability: a bounced recipient's status byte is written only after the
//! notice that reports it has been committed (see `Qmgr::after_commit`).
//! A crash in between leaves the recipient live: it is tried again and may
//! bounce a second time, so a sender can get a notice twice but never
//! loses one.

use chrono::{DateTime, Local, TimeZone};

use crate::bounce::{self, BounceRequest, FailedRecipient, NoticeKind};
use crate::deliver::{Cause, RcptResult};
use crate::model::{now_micros, DsnRet, QueueId, Source, Submission};
use crate::queue::Store;

/// What notices need from the configuration.
#[derive(Clone, Debug)]
pub struct NoticeConfig {
    /// `Reporting-MTA`, `From: MAILER-DAEMON@...`.
    pub myhostname: String,
    /// Largest original returned whole.
    pub bounce_size_limit: usize,
    /// DKIM keys: a notice is signed like any other mail from its `From:`
    /// domain (`MAILER-DAEMON@myhostname`), when a key signs it.
    pub keys: Option<std::sync::Arc<crate::sign::CurrentKeys>>,
}

/// The `bounce` module's view of one failed or delayed recipient (with its
/// ORCPT, if any): the reply and the host that gave it come from the
/// result's typed cause.
pub fn failed_recipient(
    address: &str,
    orcpt: Option<&str>,
    result: &RcptResult,
) -> FailedRecipient {
    let (remote_mta, diagnostic) = match &result.cause {
        Cause::Reply(r) => (
            Some(r.peer.split('[').next().unwrap_or(&r.peer).to_string()),
            Some(r.reply.to_string()),
        ),
        Cause::Failure { reply, .. } => (None, reply.as_ref().map(|r| r.to_string())),
    };
    FailedRecipient {
        address: address.to_string(),
        original_recipient: orcpt.map(str::to_string),
        status: result.dsn().to_string(),
        diagnostic,
        remote_mta,
        reason: result.text(),
    }
}

/// The `bounce` module's view of a recipient the next hop accepted, for a
/// success notice: `relay` is the logged `NAME[IP]:PORT`, the result's text
/// the server's reply.
pub fn relayed_recipient(
    address: &str,
    orcpt: Option<&str>,
    relay: &str,
    result: &RcptResult,
) -> FailedRecipient {
    let reply = result.text();
    FailedRecipient {
        address: address.to_string(),
        original_recipient: orcpt.map(str::to_string),
        status: result.dsn().to_string(),
        diagnostic: Some(reply.to_string()),
        remote_mta: Some(relay.split('[').next().unwrap_or(relay).to_string()),
        reason: format!("delivery via {relay}: {reply}"),
    }
}

/// Why a notice was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    /// The notice cannot be built from this message (never will be).
    #[error("cannot build the notification: {0}")]
    Build(String),
    /// The queue could not take it now.
    #[error("cannot queue the notification: {0}")]
    Queue(String),
    /// The queue has no room for it now (full disk); the store logs that
    /// condition itself, once a minute.
    #[error("cannot queue the notification: {0}")]
    NoRoom(String),
}

impl NoticeError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, NoticeError::Queue(_) | NoticeError::NoRoom(_))
    }

    /// True for [`NoticeError::NoRoom`]: logged already, not per notice.
    pub fn is_no_room(&self) -> bool {
        matches!(self, NoticeError::NoRoom(_))
    }
}

/// Builds the notice of `kind` for message `id` about `failed`, and appends
/// it to `store` (durable with the next commit). The message's DSN requests
/// decide the rest: `ENVID` becomes `Original-Envelope-Id`, `RET=HDRS`
/// returns only the header of a failed message. Returns the notice's queue
/// ID, or `None` when no notice is due (null sender).
pub fn queue_notice(
    store: &mut Store,
    id: QueueId,
    kind: NoticeKind,
    failed: &[FailedRecipient],
    cfg: &NoticeConfig,
) -> Result<Option<QueueId>, NoticeError> {
    let (sender, wire, arrival, envid, full) = {
        let Some((view, _)) = store.get(id) else {
            if store.peek(id).is_some() {
                tracing::error!(target: "qmgr", "{id}: queue record fails its checksum: no notice can be built from it");
            }
            return Ok(None);
        };
        (
            view.sender.to_string(),
            view.wire.to_vec(),
            view.arrival_micros,
            view.dsn.envid.clone(),
            view.dsn.ret != Some(DsnRet::Headers),
        )
    };
    let queue_id = id.to_string();
    let req = BounceRequest {
        kind,
        queue_id: &queue_id,
        envid: envid.as_deref(),
        original_sender: &sender,
        original_wire: &wire,
        arrival: local_time(arrival),
        recipients: failed,
        myhostname: &cfg.myhostname,
        now: Local::now(),
        return_full_message: full,
        bounce_size_limit: cfg.bounce_size_limit,
    };
    let Some(notice) = bounce::build(&req).map_err(|e| NoticeError::Build(e.to_string()))? else {
        return Ok(None);
    };
    let envelope = notice.envelope();
    let wire = match cfg.keys.as_ref().map(|k| k.get().sign(&notice.wire)) {
        Some(Ok(signed)) => signed.prepend_to(notice.wire),
        Some(Err(e)) => {
            // A notice is never lost for want of a signature.
            tracing::warn!(target: "bounce", "{id}: DKIM signing of the notice failed, queued unsigned: {e}");
            notice.wire
        }
        None => notice.wire,
    };
    let sub = Submission {
        envelope,
        wire,
        flags: notice.flags,
        dsn: Default::default(),
        message_id: notice.message_id,
        arrival_micros: now_micros(),
        uid: 0,
        source: Source::Internal(id.raw()),
        origin: crate::obs::metrics::Origin::Internal,
        file_identity: None,
        campaign: None,
    };
    // A notice may use the part of the segment new mail leaves free.
    let new_id = store.append_notice(&sub).map_err(|e| match e {
        crate::queue::QueueError::NoRoom { .. } => NoticeError::NoRoom(e.to_string()),
        e => NoticeError::Queue(e.to_string()),
    })?;
    let what = match kind {
        NoticeKind::Failure => "non-delivery",
        NoticeKind::Delay => "delay",
        NoticeKind::Success => "delivery status",
    };
    tracing::info!(target: "bounce", "{id}: sender {what} notification: {new_id}");
    tracing::info!(target: "cleanup", "{new_id}: message-id=<{}>", sub.message_id);
    tracing::info!(
        target: "qmgr",
        "{new_id}: from=<>, size={}, nrcpt=1 (queue active)",
        sub.wire.len()
    );
    Ok(Some(new_id))
}

fn local_time(micros: u64) -> DateTime<Local> {
    Local
        .timestamp_micros(micros as i64)
        .single()
        .unwrap_or_else(Local::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Reply, Stage};

    #[test]
    fn reply_and_host_come_from_the_typed_cause() {
        let peer = crate::deliver::Peer {
            host: "mx.example".into(),
            addr: "127.0.0.1:25".parse().unwrap(),
        };
        let reply = Reply::new(550, vec!["5.1.1 <a@b>: no such user".into()]);
        let r = RcptResult::from_reply(&peer, &reply, Stage::Rcpt);
        let f = failed_recipient("a@b", None, &r);
        assert_eq!(f.remote_mta.as_deref(), Some("mx.example"));
        assert_eq!(
            f.diagnostic.as_deref(),
            Some("550 5.1.1 <a@b>: no such user")
        );
        assert_eq!(f.status, "5.1.1");
        assert_eq!(
            f.reason,
            "host mx.example[127.0.0.1] said: 550 5.1.1 <a@b>: no such user (in reply to RCPT TO command)"
        );
        let e = RcptResult::bounced(
            "5.1.10",
            "mail for x.example loops back to myself or the domain does not accept mail (null MX)"
                .into(),
        );
        let f = failed_recipient("a@x.example", Some("rfc822;A@x.example"), &e);
        assert_eq!(f.original_recipient.as_deref(), Some("rfc822;A@x.example"));
        assert_eq!(f.remote_mta, None);
        assert_eq!(f.diagnostic, None);
        assert!(f.reason.contains("null MX"));
    }

    #[test]
    fn relayed_recipients_carry_the_relay_and_reply() {
        let peer = crate::deliver::Peer {
            host: "mx.example".into(),
            addr: "127.0.0.1:25".parse().unwrap(),
        };
        let reply = Reply::new(250, vec!["2.0.0 Ok: queued as 42".into()]);
        let r = RcptResult::from_reply(&peer, &reply, Stage::EndOfData);
        let f = relayed_recipient("a@b", None, "mx.example[127.0.0.1]:25", &r);
        assert_eq!(f.remote_mta.as_deref(), Some("mx.example"));
        assert_eq!(f.diagnostic.as_deref(), Some("250 2.0.0 Ok: queued as 42"));
        assert_eq!(
            f.reason,
            "delivery via mx.example[127.0.0.1]:25: 250 2.0.0 Ok: queued as 42"
        );
        assert_eq!(f.status, "2.0.0");
    }
}

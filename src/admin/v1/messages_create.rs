//! `POST /api/v1/messages` (scope `inject`): one message,
//! `{"from": ADDRESS, "to": [ADDRESS, ...], "message": RFC 5322 TEXT}`,
//! taken as `sendmail` through the daemon takes one: the addresses
//! checked, cleanup (header fixes, the canonical wire form, the size
//! limit), an offer to the pickup ring, and the answer, 202
//! `{"queue_id": ...}`, only once the shard's group commit holds it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::cleanup::intake::SiteParams;
use crate::cleanup::{cleanup, CleanupError, CleanupOptions};
use crate::config::ApiScope;
use crate::mail::parse_smtp_path;
use crate::model::{AckSender, DsnParams, Envelope, Source, Submission};

use crate::admin::context;
use crate::admin::ApiError;

/// Most recipients of one message (`smtpd_recipient_limit`'s default).
const MAX_RECIPIENTS: usize = 1000;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    from: String,
    to: Vec<String>,
    message: String,
}

/// The handler.
pub(crate) async fn create(
    State(shared): State<context::State>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    shared.tokens.check(&headers, ApiScope::Inject)?;
    let bytes = crate::admin::body::read(&headers, body, shared.max_body).await?;
    let req: NewMessage = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("bad JSON: {e}")))?;
    let intake = &shared.ctx.messages;
    let envelope = envelope(&req, &intake.site)?;
    let _permit = shared
        .messages_at_once
        .try_acquire()
        .map_err(|_| ApiError::Unavailable("too many messages being queued at once".into()))?;
    let site = intake.site.clone();
    let (uid, nrcpt) = (shared.uid, envelope.recipients.len());
    // Cleanup reads and copies the whole message: off the workers.
    let mut sub = tokio::task::spawn_blocking(move || prepare(&req.message, envelope, &site, uid))
        .await
        .map_err(|e| ApiError::Unavailable(format!("cleanup: {e}")))??;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    sub.source = Source::Reply {
        id: shared.next_ack.fetch_add(1, Ordering::Relaxed),
        to: AckSender(tx),
    };
    let sender = sub.envelope.sender.clone();
    loop {
        if intake.closed.load(Ordering::Acquire) {
            return Err(ApiError::Unavailable("the daemon is stopping".into()));
        }
        match intake.ring.push(sub) {
            Ok(()) => break,
            Err(back) => {
                sub = back;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    // Every submission in the ring is acknowledged, also when the shards stop.
    match rx.recv().await {
        Some(ack) => match ack.result {
            Ok(queue_id) => {
                crate::info_line!(target: "http", "{queue_id}: from=<{sender}>, nrcpt={nrcpt} (api)");
                let body = serde_json::json!({ "queue_id": queue_id.to_string() });
                Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
            }
            Err(e) if e.is_transient() => Err(ApiError::Unavailable(e.to_string())),
            Err(e) => Err(ApiError::Unprocessable(e.to_string())),
        },
        None => Err(ApiError::Unavailable(
            "the daemon stopped before the commit".into(),
        )),
    }
}

/// The envelope: every address checked (as SMTP paths; no null sender),
/// duplicates (case aside) dropped.
fn envelope(req: &NewMessage, site: &SiteParams) -> Result<Envelope, ApiError> {
    let sender = parse_smtp_path(&req.from, &site.origin, false)
        .map_err(|e| ApiError::Unprocessable(format!("from: {e}")))?;
    if req.to.is_empty() {
        return Err(ApiError::Unprocessable("to: no recipients".into()));
    }
    if req.to.len() > MAX_RECIPIENTS {
        return Err(ApiError::Unprocessable(format!(
            "to: more than {MAX_RECIPIENTS} recipients"
        )));
    }
    let mut recipients: Vec<String> = Vec::with_capacity(req.to.len());
    for r in &req.to {
        let a = parse_smtp_path(r, &site.origin, false)
            .map_err(|e| ApiError::Unprocessable(format!("to: {e}")))?;
        if !recipients.iter().any(|seen| seen.eq_ignore_ascii_case(&a)) {
            recipients.push(a);
        }
    }
    Ok(Envelope { sender, recipients })
}

/// Cleanup: the submission to offer.
fn prepare(
    message: &str,
    envelope: Envelope,
    site: &SiteParams,
    uid: u32,
) -> Result<Box<Submission>, ApiError> {
    let opts = CleanupOptions {
        myhostname: &site.myhostname,
        message_size_limit: site.message_size_limit,
        full_name: None,
        now: chrono::Local::now(),
    };
    let cleaned = cleanup(message.as_bytes(), &envelope, &opts).map_err(|e| match e {
        CleanupError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
        other => ApiError::Unprocessable(other.to_string()),
    })?;
    Ok(Box::new(Submission {
        envelope,
        wire: cleaned.wire,
        flags: cleaned.flags,
        dsn: DsnParams::default(),
        message_id: cleaned.message_id,
        arrival_micros: crate::model::now_micros(),
        uid,
        source: Source::Internal(0),
        origin: crate::obs::metrics::Origin::Api,
        file_identity: None,
        campaign: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteParams {
        SiteParams {
            myhostname: "mx.example.org".into(),
            origin: "example.org".into(),
            message_size_limit: 2048,
        }
    }

    fn req(from: &str, to: &[&str]) -> NewMessage {
        NewMessage {
            from: from.into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            message: "Subject: hi\n\nhello\n".into(),
        }
    }

    #[test]
    fn envelopes_are_checked() {
        let e = envelope(
            &req("app@example.com", &["<A@x.example>", "a@X.example", "b"]),
            &site(),
        )
        .unwrap();
        assert_eq!(e.sender, "app@example.com");
        assert_eq!(e.recipients, ["A@x.example", "b@example.org"]);
        let bad = |r: NewMessage| match envelope(&r, &site()) {
            Err(ApiError::Unprocessable(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(bad(req("", &["a@x.example"])).starts_with("from: "));
        assert!(bad(req("a@x.example", &[])).contains("no recipients"));
        assert!(bad(req("a@x.example", &["a b@x.example"])).starts_with("to: "));
        assert!(bad(req("a@x.example", &["x@y.example\r\nRCPT TO:<z@z>"])).starts_with("to: "));
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("r{i}@x.example"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(bad(req("a@x.example", &many)).contains("more than"));
    }

    #[test]
    fn cleanup_runs_and_the_limit_holds() {
        let e = envelope(&req("app@example.com", &["r@x.example"]), &site()).unwrap();
        let sub = prepare("Subject: hi\n\nhello\n", e.clone(), &site(), 7).unwrap();
        let wire = String::from_utf8(sub.wire).unwrap();
        assert!(wire.contains("Subject: hi\r\n"), "{wire}");
        assert!(wire.contains("Message-ID: <"), "{wire}");
        assert_eq!(sub.uid, 7);
        let big = format!("Subject: big\n\n{}\n", "x".repeat(4096));
        assert!(matches!(
            prepare(&big, e, &site(), 7),
            Err(ApiError::TooLarge(m)) if m.contains("too large")
        ));
    }
}

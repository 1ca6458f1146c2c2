//! `/u/TOKEN`: RFC 8058 one-click unsubscribe.
//!
//! - `GET` shows a confirmation page with one button and changes nothing
//!   (mail scanners and link previews follow links).
//! - `POST` (a mail client's one-click, body `List-Unsubscribe=One-Click`,
//!   or the page's button) verifies the token with the campaign key, finds
//!   the recipient's address in the campaign's results journals (a
//!   recipient holds the link only once its message was sent, and every
//!   result line has the address), and adds it to the suppression list
//!   (global, reason `unsubscribe`, with the campaign). A browser
//!   (`Accept: text/html`) gets a page, a mail client a line of text.
//!
//! No bearer token: the unsubscribe token is the secret.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use crate::compose::RecipientToken;
use crate::queue::campaign_results::find_recipient;
use crate::queue::suppress::{Entry, Reason, ReasonKind, Scope};

use super::context::{self, MAX_UNSUBSCRIBE_BODY};
use super::unsubscribe_page::{html, text, CONFIRM, DONE, NOT_FOUND, UNAVAILABLE};

/// `GET /u/TOKEN`: the confirmation page (404 for a token not ours).
pub(super) async fn page(
    State(shared): State<context::State>,
    Path(token): Path<String>,
) -> Response {
    match shared.ctx.key.verify(&token) {
        Some(_) => html(StatusCode::OK, CONFIRM),
        None => html(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

/// What a POST did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Unsubscribed,
    NotFound,
    Unavailable,
}

/// `POST /u/TOKEN`: unsubscribes.
pub(super) async fn post(
    State(shared): State<context::State>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let browser = wants_html(&headers);
    // Any body is accepted (RFC 8058's is `List-Unsubscribe=One-Click`),
    // but it is read, within a small limit, before answering.
    if let Err(e) = super::body::read(&headers, body, MAX_UNSUBSCRIBE_BODY).await {
        return text(e.status(), "request not accepted\n");
    }
    let outcome = match shared.ctx.key.verify(&token) {
        None => Outcome::NotFound,
        Some(t) => {
            let s = shared.clone();
            let how = if browser {
                "confirmation page"
            } else {
                "one-click"
            };
            tokio::task::spawn_blocking(move || unsubscribe(&s.ctx, t, how))
                .await
                .unwrap_or(Outcome::Unavailable)
        }
    };
    match (outcome, browser) {
        (Outcome::Unsubscribed, true) => html(StatusCode::OK, DONE),
        (Outcome::Unsubscribed, false) => text(StatusCode::OK, "unsubscribed\n"),
        (Outcome::NotFound, true) => html(StatusCode::NOT_FOUND, NOT_FOUND),
        (Outcome::NotFound, false) => text(StatusCode::NOT_FOUND, "unknown unsubscribe link\n"),
        (Outcome::Unavailable, true) => html(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE),
        (Outcome::Unavailable, false) => text(StatusCode::SERVICE_UNAVAILABLE, "try again later\n"),
    }
}

/// Finds the address `t` names and suppresses it (blocking: reads the
/// journals, fdatasyncs the suppression list).
fn unsubscribe(ctx: &super::AdminContext, t: RecipientToken, how: &str) -> Outcome {
    let (cid, index) = (t.campaign, t.recipient);
    let address = match find_recipient(&ctx.campaigns_dir, cid, index) {
        Ok(Some(a)) => a,
        Ok(None) => {
            tracing::warn!(target: "http", "campaign {cid} recipient {index}: unsubscribe link used, but the recipient has no result line (never sent)");
            return Outcome::NotFound;
        }
        Err(e) => {
            tracing::error!(target: "http", "campaign {cid} recipient {index}: unsubscribe: {e}");
            return Outcome::Unavailable;
        }
    };
    let Some(list) = &ctx.suppressions else {
        tracing::error!(target: "http", "campaign {cid} recipient {index} <{address}>: cannot unsubscribe: the suppression list could not be read at start");
        return Outcome::Unavailable;
    };
    let mut entry = match Entry::new(
        &address,
        Scope::Global,
        Reason::new(ReasonKind::Unsubscribe, how),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(target: "http", "campaign {cid} recipient {index} <{address}>: cannot unsubscribe: {e}");
            return Outcome::NotFound;
        }
    };
    entry.campaign = Some(cid);
    match list.add(entry) {
        Ok(_) => {
            crate::info_line!(target: "http", "campaign {cid} recipient {index} <{address}>: unsubscribed ({how})");
            if ctx.events.is_enabled() {
                ctx.events
                    .emit(crate::obs::events::Event::campaign_recipient(
                        crate::obs::events::EventKind::Unsubscribed,
                        cid,
                        index,
                        &address,
                    ));
            }
            Outcome::Unsubscribed
        }
        Err(e) => {
            tracing::error!(target: "http", "campaign {cid} recipient {index} <{address}>: cannot unsubscribe: {e}");
            Outcome::Unavailable
        }
    }
}

/// True for a browser (its `Accept` names HTML), which gets a page.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::context::for_tests as context;
    use crate::queue::campaign_results::ResultsWriter;

    #[test]
    fn a_sent_recipient_is_suppressed_with_its_campaign() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = context(dir.path());
        let (tx, events) = crossbeam_channel::bounded(8);
        ctx.events = crate::obs::events::EventSink::new(tx, Default::default());
        let mut w = ResultsWriter::new(&ctx.campaigns_dir, 1);
        w.note(77, 4, "Four@Example.net", "sent", "2.0.0", "250 ok");
        w.flush().unwrap();
        let t = ctx.key.verify(&ctx.key.token(77, 4)).unwrap();
        assert_eq!(unsubscribe(&ctx, t, "one-click"), Outcome::Unsubscribed);
        let list = ctx.suppressions.as_ref().unwrap();
        let e = list.check("four@example.net", "news.example.com").unwrap();
        assert_eq!(e.campaign, Some(77));
        assert_eq!(e.reason, Reason::new(ReasonKind::Unsubscribe, "one-click"));
        let event = events.try_recv().unwrap();
        assert_eq!(event.kind, crate::obs::events::EventKind::Unsubscribed);
        assert_eq!(
            (
                event.campaign.as_deref(),
                event.recipient_index,
                event.recipient.as_deref()
            ),
            (Some("77"), Some(4), Some("Four@Example.net"))
        );
        // Twice is fine.
        assert_eq!(unsubscribe(&ctx, t, "one-click"), Outcome::Unsubscribed);
        // A recipient never sent (no line) is not found.
        let other = ctx.key.verify(&ctx.key.token(77, 5)).unwrap();
        assert_eq!(unsubscribe(&ctx, other, "one-click"), Outcome::NotFound);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn without_a_list_it_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = context(dir.path());
        ctx.suppressions = None;
        let mut w = ResultsWriter::new(&ctx.campaigns_dir, 0);
        w.note(1, 0, "a@example.net", "sent", "2.0.0", "ok");
        w.flush().unwrap();
        let t = ctx.key.verify(&ctx.key.token(1, 0)).unwrap();
        assert_eq!(unsubscribe(&ctx, t, "one-click"), Outcome::Unavailable);
    }

    #[test]
    fn browsers_are_told_by_accept() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert(
            header::ACCEPT,
            "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap(),
        );
        assert!(wants_html(&h));
    }
}

//! The pages a person sees at `/u/TOKEN`: the confirmation with its one
//! button, the result, and the two ways it can fail. Plain HTML, no
//! script; every answer forbids caching, framing and sending the URL (it
//! holds the token) as a referrer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A whole HTML5 document with `$title` and `$body`.
macro_rules! page {
    ($title:literal, $body:literal) => {
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
            "<title>",
            $title,
            "</title>\n<style>body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em;color:#222}",
            "button{font-size:1.1em;padding:.5em 1.5em;cursor:pointer}</style>\n</head>\n<body>\n<main>\n",
            $body,
            "\n</main>\n</body>\n</html>\n"
        )
    };
}

/// The confirmation page. The form posts RFC 8058's own body to the page's
/// own URL, so a click does what a mail client's one-click POST does.
pub(super) const CONFIRM: &str = page!(
    "Unsubscribe",
    "<h1>Unsubscribe?</h1>\n\
<p>You will no longer receive these emails.</p>\n\
<form method=\"post\">\n\
<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
<button type=\"submit\">Unsubscribe</button>\n\
</form>"
);

/// After the click.
pub(super) const DONE: &str = page!(
    "Unsubscribed",
    "<h1>You are unsubscribed</h1>\n\
<p>You will no longer receive these emails. You can close this page.</p>"
);

/// An unknown or forged token, or a recipient with no record.
pub(super) const NOT_FOUND: &str = page!(
    "Link not valid",
    "<h1>This unsubscribe link is not valid</h1>\n\
<p>It may have been copied incompletely. Use the link in the email you received.</p>"
);

/// The suppression list cannot be written now.
pub(super) const UNAVAILABLE: &str = page!(
    "Try again later",
    "<h1>Please try again in a few minutes</h1>\n\
<p>Your request could not be recorded just now.</p>"
);

/// `page` as an answer with `status`.
pub(super) fn html(status: StatusCode, page: &'static str) -> Response {
    let mut r = (status, page).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_leaks(h);
    r
}

/// `text` as a plain-text answer with `status` (for mail clients).
pub(super) fn text(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    no_leaks(r.headers_mut());
    r
}

/// Headers that keep the token out of caches, referrers and frames.
fn no_leaks(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_whole_documents() {
        for p in [CONFIRM, DONE, NOT_FOUND, UNAVAILABLE] {
            assert!(p.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
            assert!(p.ends_with("</html>\n"));
            assert_eq!(p.matches("<main>").count(), 1);
            assert!(!p.contains("<script"));
        }
        // The one form posts RFC 8058's body to the page's own URL.
        assert!(CONFIRM.contains("<form method=\"post\">"));
        assert!(CONFIRM.contains("name=\"List-Unsubscribe\" value=\"One-Click\""));
        assert!(!DONE.contains("<form"));
        let r = html(StatusCode::OK, CONFIRM);
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}

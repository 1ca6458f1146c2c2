//! `POST /api/v1/campaigns` (scope `inject`): a campaign from JSON, taken
//! exactly as `ringmail campaign send` is (the daemon's
//! [`CampaignIntake`](crate::daemon::campaign_intake::CampaignIntake)).
//! The answer, 202, comes only once every slice is committed and the
//! campaign is sealed.
//!
//! The list is either inline, `"recipients": [{"email": ..., FIELD: ...}]`
//! (turned into JSON Lines: the refused rows' `line` is the recipient's
//! 1-based position), or `"recipients_file": "NAME.csv"` (or `.jsonl`,
//! `.ndjson`), a file under `[http] recipients_dir`, read by the daemon.

use std::io::Read;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::config::ApiScope;
use crate::daemon::campaign_intake::{Accepted, Refusal};
use crate::inject::campaign::CampaignRequest;

use crate::admin::context;
use crate::admin::ApiError;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCampaign {
    name: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    bounce_domain: Option<String>,
    #[serde(default)]
    unsubscribe: Option<String>,
    template: String,
    #[serde(default)]
    recipients: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    recipients_file: Option<String>,
    /// Most messages per interval (`50000/h`), as `campaign send --rate`.
    #[serde(default)]
    rate: Option<String>,
    /// Send nothing before this time (Unix seconds), as `--at`.
    #[serde(default)]
    at: Option<u64>,
}

/// Where the list comes from.
#[derive(Debug, PartialEq, Eq)]
enum List {
    /// JSON Lines made from the inline recipients.
    Inline(Vec<u8>),
    /// A file the daemon opens.
    File(PathBuf),
}

/// What `accept` gets.
#[derive(Debug)]
struct Parsed {
    request: CampaignRequest,
    template: Vec<u8>,
    list: List,
}

/// The handler.
pub(crate) async fn create(
    State(shared): State<context::State>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    shared.tokens.check(&headers, ApiScope::Inject)?;
    let bytes = crate::admin::body::read(&headers, body, shared.max_body).await?;
    let parsed = parse(&bytes, shared.recipients_dir.as_deref())?;
    let _permit = shared
        .campaigns_at_once
        .try_acquire()
        .map_err(|_| ApiError::Unavailable("too many campaigns being accepted at once".into()))?;
    let s = shared.clone();
    let accepted = tokio::task::spawn_blocking(move || accept(&s, parsed))
        .await
        .map_err(|e| ApiError::Unavailable(format!("taking the campaign: {e}")))??;
    Ok((StatusCode::ACCEPTED, axum::Json(answer(&accepted))).into_response())
}

/// Reads and checks the body.
fn parse(bytes: &[u8], recipients_dir: Option<&Path>) -> Result<Parsed, ApiError> {
    let req: CreateCampaign = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("bad JSON: {e}")))?;
    let (format, list) = match (req.recipients, req.recipients_file) {
        (Some(rows), None) => ("jsonl", List::Inline(json_lines(&rows))),
        (None, Some(name)) => {
            let path = list_file(&name, recipients_dir)?;
            (list_format(&path)?, List::File(path))
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give either \"recipients\" or \"recipients_file\"".into(),
            ))
        }
    };
    Ok(Parsed {
        request: CampaignRequest {
            v: 1,
            op: None,
            id: None,
            name: req.name,
            from: req.from,
            bounce_domain: req.bounce_domain,
            unsubscribe: req.unsubscribe,
            format: format.into(),
            template_len: req.template.len(),
            rate: req.rate,
            at: req.at,
        },
        template: req.template.into_bytes(),
        list,
    })
}

/// One line per recipient (a value that is not an object stays as it is,
/// and is refused with its line).
fn json_lines(rows: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        // Serializing a parsed value cannot fail (its keys are strings).
        out.extend_from_slice(row.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// `name` as a path under `dir` (it may not leave it, through `..` or a
/// link).
fn list_file(name: &str, dir: Option<&Path>) -> Result<PathBuf, ApiError> {
    let Some(dir) = dir else {
        return Err(ApiError::Unprocessable(
            "recipients_file needs [http] recipients_dir in the daemon's configuration".into(),
        ));
    };
    let unreadable = |e: std::io::Error| {
        ApiError::Unprocessable(format!("recipients_file {name:?}: cannot open: {e}"))
    };
    let root = dir.canonicalize().map_err(unreadable)?;
    let path = root.join(name).canonicalize().map_err(unreadable)?;
    if !path.starts_with(&root) || !path.is_file() {
        return Err(ApiError::Unprocessable(format!(
            "recipients_file {name:?}: not a file in the recipients directory"
        )));
    }
    Ok(path)
}

/// `csv` or `jsonl`, from the file's extension.
fn list_format(path: &Path) -> Result<&'static str, ApiError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => Ok("csv"),
        Some("jsonl" | "ndjson") => Ok("jsonl"),
        _ => Err(ApiError::Unprocessable(format!(
            "{}: a list is .csv, .jsonl or .ndjson",
            path.display()
        ))),
    }
}

/// Takes the campaign (blocking).
fn accept(shared: &context::Shared, p: Parsed) -> Result<Accepted, ApiError> {
    let list: Box<dyn Read> = match p.list {
        List::Inline(bytes) => Box::new(std::io::Cursor::new(bytes)),
        List::File(path) => Box::new(std::fs::File::open(&path).map_err(|e| {
            ApiError::Unprocessable(format!("{}: cannot open: {e}", path.display()))
        })?),
    };
    shared
        .ctx
        .intake
        .accept(&p.request, p.template, std::io::BufReader::new(list))
        .map_err(|r| match r {
            Refusal::Permanent(why) => ApiError::Unprocessable(why),
            Refusal::Temporary(why) => ApiError::Unavailable(why),
        })
}

/// The 202 body.
fn answer(a: &Accepted) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = a
        .refused_rows
        .iter()
        .map(|r| serde_json::json!({ "line": r.line, "email": r.email, "reason": r.reason }))
        .collect();
    serde_json::json!({
        "id": a.info.id,
        "name": a.info.name,
        "state": a.info.state.as_str(),
        "recipients": a.info.recipients,
        "refused": a.info.refused,
        "duplicates": a.info.duplicates,
        "slices": a.info.slices,
        "refused_rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_recipients_become_json_lines() {
        let body = br#"{"name": "n", "template": "Subject: hi {{ name }}\n\nhello\n",
            "unsubscribe": "https://news.example.com",
            "recipients": [{"email": "a@example.net", "name": "A"}, {"name": "B", "email": "b@example.net"}, 7]}"#;
        let p = parse(body, None).unwrap();
        assert_eq!(p.request.format, "jsonl");
        assert_eq!(p.request.name, "n");
        assert_eq!(
            p.request.unsubscribe.as_deref(),
            Some("https://news.example.com")
        );
        assert_eq!(p.request.template_len, p.template.len());
        assert_eq!(p.template, b"Subject: hi {{ name }}\n\nhello\n");
        // Keys are written in one order whatever order they came in.
        let List::Inline(lines) = p.list else {
            panic!("inline")
        };
        assert_eq!(
            String::from_utf8(lines).unwrap(),
            "{\"email\":\"a@example.net\",\"name\":\"A\"}\n\
             {\"email\":\"b@example.net\",\"name\":\"B\"}\n7\n"
        );
    }

    #[test]
    fn bad_requests_say_why() {
        let err = |b: &[u8]| parse(b, None).unwrap_err();
        let e = err(b"{\"name\": \"n\"");
        assert!(
            matches!(&e, ApiError::BadRequest(m) if m.starts_with("bad JSON: EOF")),
            "{e:?}"
        );
        let e = err(br#"{"name": "n", "recipients": []}"#);
        assert!(
            matches!(&e, ApiError::BadRequest(m) if m.contains("missing field `template`")),
            "{e:?}"
        );
        let e = err(br#"{"name": "n", "template": "x", "colour": 1, "recipients": []}"#);
        assert!(
            matches!(&e, ApiError::BadRequest(m) if m.contains("unknown field `colour`")),
            "{e:?}"
        );
        let e = err(br#"{"name": "n", "template": "x"}"#);
        assert!(
            matches!(&e, ApiError::BadRequest(m) if m.contains("either")),
            "{e:?}"
        );
        let e = err(br#"{"name": "n", "template": "x", "recipients_file": "l.csv"}"#);
        assert!(
            matches!(&e, ApiError::Unprocessable(m) if m.contains("recipients_dir")),
            "{e:?}"
        );
    }

    #[test]
    fn list_files_stay_in_their_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("lists");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.CSV"), "email\na@example.net\n").unwrap();
        std::fs::write(dir.join("b.ndjson"), "{\"email\":\"b@x.net\"}\n").unwrap();
        std::fs::write(dir.join("c.txt"), "email\n").unwrap();
        std::fs::write(root.path().join("secret.csv"), "email\n").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.csv"), dir.join("link.csv")).unwrap();
        let file = |name: &str| {
            let body =
                format!("{{\"name\": \"n\", \"template\": \"x\", \"recipients_file\": {name:?}}}");
            parse(body.as_bytes(), Some(&dir)).map(|p| (p.request.format, p.list))
        };
        let (format, list) = file("a.CSV").unwrap();
        assert_eq!(format, "csv");
        assert_eq!(list, List::File(dir.canonicalize().unwrap().join("a.CSV")));
        assert_eq!(file("b.ndjson").unwrap().0, "jsonl");
        for bad in [
            "c.txt",
            "../secret.csv",
            "link.csv",
            "/etc/passwd",
            "missing.csv",
            ".",
        ] {
            assert!(
                matches!(file(bad), Err(ApiError::Unprocessable(_))),
                "{bad}: {:?}",
                file(bad)
            );
        }
    }
}

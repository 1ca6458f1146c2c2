//! The campaign submission protocol over `spool_dir/campaign.sock`
//! (`ringmail campaign send` to the running daemon).
//!
//! The client sends one JSON line ([`CampaignRequest`]), then the
//! template's bytes (`template_len` of them), then the recipient list until
//! it shuts its side down. The daemon answers, once every slice is
//! committed and the campaign's state file is written:
//!
//! - `ROW LINE ADDRESS REASON` for each of the first refused rows, then
//! - `OK ID recipients=N refused=M duplicates=D slices=S`, or
//! - `FAIL reason` (nothing queued: a bad template or list), or
//! - `TEMP reason` (nothing will be sent: try again later).
//!
//! A control request (`op` = `pause`, `resume` or `cancel`, with `id`) has
//! nothing after its line; the answer is `OK ID was=STATE now=STATE` or
//! `FAIL reason`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest request line.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// Largest template.
pub const MAX_TEMPLATE: usize = 10 << 20;

/// How long the client waits for the answer once the list is sent.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// The first line of a campaign submission.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRequest {
    /// Protocol version (1).
    pub v: u32,
    /// `send` (the default: template and list follow), or `pause`,
    /// `resume`, `cancel` of campaign `id` (nothing follows).
    #[serde(default)]
    pub op: Option<String>,
    /// The campaign an `op` acts on.
    #[serde(default)]
    pub id: Option<u64>,
    /// A name for people.
    pub name: String,
    /// `From:` when the template has none.
    #[serde(default)]
    pub from: Option<String>,
    /// VERP and mailto unsubscribe domain.
    #[serde(default)]
    pub bounce_domain: Option<String>,
    /// One-click unsubscribe base URL.
    #[serde(default)]
    pub unsubscribe: Option<String>,
    /// `csv` or `jsonl`.
    pub format: String,
    /// Bytes of template after the line.
    pub template_len: usize,
    /// Most messages per interval (`N/s`, `N/m`, `N/h`), over all shards.
    #[serde(default)]
    pub rate: Option<String>,
    /// Send nothing before this time (Unix seconds).
    #[serde(default)]
    pub at: Option<u64>,
}

/// A refused row, as reported back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedRow {
    /// Its line.
    pub line: u64,
    /// The address, or `-`.
    pub email: String,
    /// Why.
    pub reason: String,
}

/// What the daemon said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CampaignAnswer {
    /// Accepted.
    Accepted {
        /// Campaign ID.
        id: u64,
        /// Recipients queued.
        recipients: u64,
        /// Rows refused.
        refused: u64,
        /// Duplicate rows.
        duplicates: u64,
        /// The first refused rows.
        rows: Vec<RefusedRow>,
    },
    /// Refused for good (bad template or list); nothing queued.
    Refused(String),
    /// Not accepted now; nothing will be sent.
    Temporary(String),
    /// No daemon listens.
    NoDaemon,
    /// The connection ended before an answer: the campaign may or may not
    /// have been accepted (`ringmail campaign list` tells).
    Unknown(String),
}

/// Sends a campaign to the daemon at `socket`.
pub fn submit_campaign(
    socket: &Path,
    request: &CampaignRequest,
    template: &[u8],
    list: &mut dyn Read,
) -> CampaignAnswer {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return CampaignAnswer::NoDaemon;
    };
    let _ = s.set_read_timeout(Some(ANSWER_TIMEOUT));
    let mut line = match serde_json::to_vec(request) {
        Ok(l) => l,
        Err(e) => return CampaignAnswer::Refused(e.to_string()),
    };
    line.push(b'\n');
    let sent = s
        .write_all(&line)
        .and_then(|()| s.write_all(template))
        .and_then(|()| std::io::copy(list, &mut s).map(|_| ()))
        .and_then(|()| s.shutdown(std::net::Shutdown::Write));
    if let Err(e) = sent {
        // The daemon may have answered early (a refused template).
        if let Some(answer) = read_answer(&s) {
            return answer;
        }
        return CampaignAnswer::Temporary(format!("sending the campaign: {e}"));
    }
    read_answer(&s).unwrap_or_else(|| {
        CampaignAnswer::Unknown("the daemon closed the connection without an answer".into())
    })
}

fn read_answer(s: &UnixStream) -> Option<CampaignAnswer> {
    let mut rows = Vec::new();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else {
            return None;
        };
        let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match word {
            "ROW" => {
                let mut parts = rest.splitn(3, ' ');
                let line_no = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let email = parts.next().unwrap_or("-").to_string();
                let reason = parts.next().unwrap_or("").to_string();
                rows.push(RefusedRow {
                    line: line_no,
                    email,
                    reason,
                });
            }
            "OK" => return Some(parse_ok(rest, rows)),
            "FAIL" => return Some(CampaignAnswer::Refused(rest.to_string())),
            "TEMP" => return Some(CampaignAnswer::Temporary(rest.to_string())),
            _ => {
                return Some(CampaignAnswer::Unknown(format!(
                    "unexpected answer {line:?}"
                )))
            }
        }
    }
    None
}

fn parse_ok(rest: &str, rows: Vec<RefusedRow>) -> CampaignAnswer {
    let mut it = rest.split(' ');
    let Some(id) = it.next().and_then(|i| i.parse().ok()) else {
        return CampaignAnswer::Unknown(format!("unexpected answer OK {rest:?}"));
    };
    let get = |key: &str| {
        rest.split(' ')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    CampaignAnswer::Accepted {
        id,
        recipients: get("recipients"),
        refused: get("refused"),
        duplicates: get("duplicates"),
        rows,
    }
}

/// Asks the daemon at `socket` to pause, resume or cancel campaign `id`.
/// `Ok((before, after))` as the daemon reports the states; `Err(None)` when
/// no daemon listens, `Err(Some(reason))` when it refused.
pub fn control_campaign(
    socket: &Path,
    op: &str,
    id: u64,
) -> Result<(String, String), Option<String>> {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return Err(None);
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let req = CampaignRequest {
        v: 1,
        op: Some(op.to_string()),
        id: Some(id),
        format: String::new(),
        ..CampaignRequest::default()
    };
    let mut line = serde_json::to_vec(&req).map_err(|e| Some(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line)
        .and_then(|()| s.shutdown(std::net::Shutdown::Write))
        .map_err(|e| Some(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(&s)
        .read_line(&mut answer)
        .map_err(|e| Some(e.to_string()))?;
    let answer = answer.trim_end();
    match answer.split_once(' ') {
        Some(("OK", rest)) => {
            let field = |k: &str| {
                rest.split(' ')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=').map(str::to_string))
                    .unwrap_or_default()
            };
            Ok((field("was"), field("now")))
        }
        Some(("FAIL" | "TEMP", why)) => Err(Some(why.to_string())),
        _ => Err(Some(format!("unexpected answer {answer:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        let a = parse_ok(
            "17 recipients=10 refused=2 duplicates=1 slices=1",
            vec![RefusedRow {
                line: 3,
                email: "x".into(),
                reason: "bad".into(),
            }],
        );
        assert_eq!(
            a,
            CampaignAnswer::Accepted {
                id: 17,
                recipients: 10,
                refused: 2,
                duplicates: 1,
                rows: vec![RefusedRow {
                    line: 3,
                    email: "x".into(),
                    reason: "bad".into()
                }]
            }
        );
        assert!(matches!(parse_ok("x", vec![]), CampaignAnswer::Unknown(_)));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            submit_campaign(
                &dir.path().join("campaign.sock"),
                &CampaignRequest::default(),
                b"",
                &mut &b""[..]
            ),
            CampaignAnswer::NoDaemon
        );
    }
}

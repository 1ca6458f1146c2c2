//! `ringmail campaign check`: everything that can be known about a
//! campaign before anything is queued. The whole list is read (bad
//! addresses, duplicates, row count), the first recipients are rendered
//! and passed through cleanup exactly as delivery will, and every problem
//! is reported with its line.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::Read;

use crate::cleanup::{cleanup, CleanupOptions};
use crate::model::Envelope;

use super::recipients::{RecipientReader, RowError};
use super::template::{CampaignTemplate, RenderContext};
use super::token::TokenKey;
use super::ComposeError;

/// Problems kept in a report (the counts are always exact).
const KEPT: usize = 50;

/// A recipient whose message does not render or would be refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderFailure {
    /// Its line in the list.
    pub line: u64,
    /// Its address.
    pub email: String,
    /// Why.
    pub reason: String,
}

/// What a check found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Rows in the list (header row not counted).
    pub rows: u64,
    /// Rows that would be sent to (good address, first time seen).
    pub recipients: u64,
    /// Rows refused (bad or missing address); the first few kept below.
    pub bad_rows: u64,
    /// The first refused rows.
    pub bad_row_examples: Vec<RowError>,
    /// Rows whose address appeared before (sent once).
    pub duplicates: u64,
    /// Recipients rendered.
    pub rendered: u64,
    /// Recipients among those whose message failed; the first kept below.
    pub render_failures: u64,
    /// The first render failures.
    pub render_failure_examples: Vec<RenderFailure>,
    /// Smallest and largest rendered message, in wire bytes.
    pub size_range: Option<(usize, usize)>,
    /// The first rendered message (CRLF, not dot-stuffed).
    pub first_message: Option<Vec<u8>>,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.bad_rows == 0 && self.render_failures == 0
    }
}

/// Reads the whole list and renders its first `render_first` recipients.
pub fn check_campaign<R: Read>(
    template: &CampaignTemplate,
    list: &mut RecipientReader<R>,
    render_first: u64,
    key: &TokenKey,
    cleanup_opts: &CleanupOptions<'_>,
) -> Result<CheckReport, ComposeError> {
    let mut report = CheckReport::default();
    let mut seen: HashSet<u64> = HashSet::new();
    let hasher = std::collections::hash_map::RandomState::new();
    let mut columns_checked = false;
    while let Some(row) = list.next_row()? {
        report.rows += 1;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                report.bad_rows += 1;
                if report.bad_row_examples.len() < KEPT {
                    report.bad_row_examples.push(e);
                }
                continue;
            }
        };
        if !columns_checked {
            let columns: Vec<String> = row.fields.iter().map(|(k, _)| k.clone()).collect();
            template.check_columns(&columns)?;
            columns_checked = true;
        }
        if !seen.insert(hasher.hash_one(row.email.to_ascii_lowercase())) {
            report.duplicates += 1;
            continue;
        }
        let index = report.recipients as u32;
        report.recipients += 1;
        if report.rendered >= render_first {
            continue;
        }
        report.rendered += 1;
        let ctx = RenderContext {
            index,
            row: &row,
            now: cleanup_opts.now,
        };
        let outcome = template.render(ctx, key).and_then(|r| {
            let envelope = Envelope {
                sender: r.sender.clone(),
                recipients: vec![r.recipient.clone()],
            };
            cleanup(&r.message, &envelope, cleanup_opts)
                .map(|c| (r, c))
                .map_err(|e| ComposeError::Render(format!("cleanup would refuse it: {e}")))
        });
        match outcome {
            Ok((r, cleaned)) => {
                let n = cleaned.wire.len();
                report.size_range = Some(match report.size_range {
                    Some((lo, hi)) => (lo.min(n), hi.max(n)),
                    None => (n, n),
                });
                if report.first_message.is_none() {
                    report.first_message = Some(r.message);
                }
            }
            Err(e) => {
                report.render_failures += 1;
                if report.render_failure_examples.len() < KEPT {
                    report.render_failure_examples.push(RenderFailure {
                        line: row.line,
                        email: row.email.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::recipients::ListFormat;
    use crate::compose::TemplateOptions;

    #[test]
    fn finds_bad_rows_duplicates_and_missing_fields() {
        let t = CampaignTemplate::compile(
            b"From: n@example.com\nSubject: Hi {{ name }}\n\nHello {{ name }}\n",
            &TemplateOptions {
                campaign: 1,
                from: None,
                bounce_domain: None,
                unsubscribe_base: None,
            },
        )
        .unwrap();
        let csv = "email,name\na@example.net,A\nbad,B\nA@example.net,again\nc@example.net,\nd@example.net,D\n";
        let mut list = RecipientReader::new(csv.as_bytes(), ListFormat::Csv).unwrap();
        let opts = CleanupOptions {
            myhostname: "mx.example.com",
            message_size_limit: 10_000_000,
            full_name: None,
            now: chrono::Local::now(),
        };
        let r = check_campaign(&t, &mut list, 10, &TokenKey::new(&[0; 32]), &opts).unwrap();
        assert_eq!(
            (r.rows, r.recipients, r.bad_rows, r.duplicates),
            (5, 3, 1, 1)
        );
        assert_eq!(r.bad_row_examples[0].line, 3);
        // An empty field renders (it is defined); all three render.
        assert_eq!((r.rendered, r.render_failures), (3, 0));
        assert!(!r.is_clean());
        let first = String::from_utf8(r.first_message.unwrap()).unwrap();
        assert!(first.contains("Subject: Hi A\r\n"), "{first}");
        // A field the list does not have fails the whole check.
        let t2 = CampaignTemplate::compile(
            b"From: n@example.com\nSubject: {{ city }}\n\nx\n",
            &TemplateOptions {
                campaign: 1,
                from: None,
                bounce_domain: None,
                unsubscribe_base: None,
            },
        )
        .unwrap();
        let mut list = RecipientReader::new(csv.as_bytes(), ListFormat::Csv).unwrap();
        let e = check_campaign(&t2, &mut list, 2, &TokenKey::new(&[0; 32]), &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("{{ city }}"), "{e}");
        // A value that would break a header fails its recipient alone.
        let csv = "email,name\na@example.net,\"x\nBcc: v@example.org\"\nb@example.net,B\n";
        let mut list = RecipientReader::new(csv.as_bytes(), ListFormat::Csv).unwrap();
        let r = check_campaign(&t, &mut list, 10, &TokenKey::new(&[0; 32]), &opts).unwrap();
        assert_eq!((r.rendered, r.render_failures), (2, 1));
        assert_eq!(r.render_failure_examples[0].line, 2);
        assert!(r.render_failure_examples[0].reason.contains("line break"));
    }
}

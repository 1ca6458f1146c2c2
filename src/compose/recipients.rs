//! The recipient list of a campaign: CSV with a header row, or JSON Lines
//! (one object per line), read one row at a time so a list of any length
//! needs no more memory than a row. The address is the column (or key)
//! `email`; every other column is a merge field. A row with a bad address
//! is reported on its own ([`RowError`]) and the list goes on; a list that
//! cannot be read at all (no `email` column, broken CSV quoting) is an
//! error of the whole list.

use std::io::{BufRead, Read};

use crate::mail::parse_smtp_path;

use super::ComposeError;

/// The list formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// Comma-separated values with a header row (RFC 4180).
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl ListFormat {
    /// The format a file name says (`.jsonl`/`.ndjson`: JSON Lines; else CSV).
    pub fn from_path(path: &std::path::Path) -> ListFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson") => {
                ListFormat::JsonLines
            }
            _ => ListFormat::Csv,
        }
    }
}

/// One recipient: where it was in the list, its address, its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientRow {
    /// 1-based line of the list (for CSV, the record's first line).
    pub line: u64,
    /// The address, checked as an SMTP path.
    pub email: String,
    /// The merge fields, in column order (`email` not repeated).
    pub fields: Vec<(String, String)>,
}

/// A row that cannot be a recipient; the others are still read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line.
    pub line: u64,
    /// The address as given, if any.
    pub email: Option<String>,
    /// Why.
    pub reason: String,
}

/// Reads a recipient list row by row.
pub struct RecipientReader<R: Read> {
    inner: Inner<R>,
}

enum Inner<R: Read> {
    Csv {
        reader: csv::Reader<R>,
        columns: Vec<String>,
        email_at: usize,
        record: csv::StringRecord,
    },
    Json {
        lines: std::io::BufReader<R>,
        line: u64,
        buf: String,
    },
}

impl<R: Read> RecipientReader<R> {
    /// Starts reading `input` in `format`; for CSV the header row is read
    /// now and must have an `email` column.
    pub fn new(input: R, format: ListFormat) -> Result<RecipientReader<R>, ComposeError> {
        let inner = match format {
            ListFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(false)
                    .trim(csv::Trim::Headers)
                    .from_reader(input);
                let header = reader.headers().map_err(|e| ComposeError::Recipients {
                    line: 1,
                    reason: format!("cannot read the header row: {e}"),
                })?;
                let columns: Vec<String> = header.iter().map(|c| c.to_string()).collect();
                let email_at = columns
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case("email"))
                    .ok_or_else(|| ComposeError::Recipients {
                        line: 1,
                        reason: format!(
                            "the header row has no `email` column (columns: {})",
                            columns.join(", ")
                        ),
                    })?;
                Inner::Csv {
                    reader,
                    columns,
                    email_at,
                    record: csv::StringRecord::new(),
                }
            }
            ListFormat::JsonLines => Inner::Json {
                lines: std::io::BufReader::new(input),
                line: 0,
                buf: String::new(),
            },
        };
        Ok(RecipientReader { inner })
    }

    /// The next row: `None` at the end, `Some(Err(RowError))` for a row
    /// that is skipped, `Err` when the list itself cannot be read further.
    pub fn next_row(&mut self) -> Result<Option<Result<RecipientRow, RowError>>, ComposeError> {
        match &mut self.inner {
            Inner::Csv {
                reader,
                columns,
                email_at,
                record,
            } => {
                let more = reader
                    .read_record(record)
                    .map_err(|e| ComposeError::Recipients {
                        line: e.position().map_or(0, |p| p.line()),
                        reason: e.to_string(),
                    })?;
                if !more {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line());
                let email = record.get(*email_at).unwrap_or("").trim().to_string();
                let fields = columns
                    .iter()
                    .zip(record.iter())
                    .enumerate()
                    .filter(|(i, _)| i != email_at)
                    .map(|(_, (c, v))| (c.clone(), v.to_string()))
                    .collect();
                Ok(Some(check(line, email, fields)))
            }
            Inner::Json { lines, line, buf } => loop {
                buf.clear();
                let n = lines.read_line(buf).map_err(|e| ComposeError::Recipients {
                    line: *line + 1,
                    reason: e.to_string(),
                })?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                if buf.trim().is_empty() {
                    continue;
                }
                return Ok(Some(json_row(*line, buf)));
            },
        }
    }
}

fn json_row(line: u64, text: &str) -> Result<RecipientRow, RowError> {
    let err = |email: Option<String>, reason: String| RowError {
        line,
        email,
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(None, format!("not JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(err(None, "not a JSON object".into()));
    };
    let mut email = None;
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        let v = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        if k.eq_ignore_ascii_case("email") {
            email = Some(v);
        } else {
            fields.push((k, v));
        }
    }
    let Some(email) = email else {
        return Err(err(None, "no \"email\" key".into()));
    };
    check(line, email.trim().to_string(), fields)
}

/// Checks the address of a row.
fn check(
    line: u64,
    email: String,
    fields: Vec<(String, String)>,
) -> Result<RecipientRow, RowError> {
    if email.is_empty() {
        return Err(RowError {
            line,
            email: None,
            reason: "empty email".into(),
        });
    }
    if !email.contains('@') {
        return Err(RowError {
            line,
            email: Some(email),
            reason: "the address has no domain".into(),
        });
    }
    match parse_smtp_path(&email, "", false) {
        Ok(email) => Ok(RecipientRow {
            line,
            email,
            fields,
        }),
        Err(e) => Err(RowError {
            line,
            email: Some(email),
            reason: format!("bad address: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all<R: Read>(mut r: RecipientReader<R>) -> Vec<Result<RecipientRow, RowError>> {
        let mut out = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            out.push(row);
        }
        out
    }

    #[test]
    fn csv_rows_and_bad_addresses() {
        let csv = "name,email,city\nAda,ada@example.net,\"London, UK\"\nBob,not-an-address,Paris\n\"Zoë\",zoe@example.org,Zürich\n";
        let rows = all(RecipientReader::new(csv.as_bytes(), ListFormat::Csv).unwrap());
        assert_eq!(rows.len(), 3);
        let ada = rows[0].as_ref().unwrap();
        assert_eq!(ada.email, "ada@example.net");
        assert_eq!(ada.line, 2);
        assert_eq!(
            ada.fields,
            vec![
                ("name".to_string(), "Ada".to_string()),
                ("city".to_string(), "London, UK".to_string())
            ]
        );
        let bad = rows[1].as_ref().unwrap_err();
        assert_eq!(bad.line, 3);
        assert!(bad.reason.contains("no domain"), "{bad:?}");
        assert_eq!(rows[2].as_ref().unwrap().fields[0].1, "Zoë");
    }

    #[test]
    fn csv_without_email_column_or_with_ragged_rows() {
        let e = RecipientReader::new("name,addr\nx,y\n".as_bytes(), ListFormat::Csv)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no `email` column"), "{e}");
        let mut r = RecipientReader::new(
            "email,name\na@example.net,A,extra\n".as_bytes(),
            ListFormat::Csv,
        )
        .unwrap();
        let e = r.next_row().unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn json_lines() {
        let text = "{\"email\":\"a@example.net\",\"name\":\"A\",\"n\":3}\n\n[1]\n{\"name\":\"x\"}\n{\"email\":\"b@example.net\"}\n";
        let rows = all(RecipientReader::new(text.as_bytes(), ListFormat::JsonLines).unwrap());
        assert_eq!(rows.len(), 4);
        let a = rows[0].as_ref().unwrap();
        assert_eq!(
            a.fields,
            vec![("n".into(), "3".into()), ("name".into(), "A".into())]
        );
        assert_eq!(rows[1].as_ref().unwrap_err().line, 3);
        assert!(rows[2]
            .as_ref()
            .unwrap_err()
            .reason
            .contains("no \"email\""));
        assert_eq!(rows[3].as_ref().unwrap().line, 5);
        assert_eq!(
            ListFormat::from_path(std::path::Path::new("l.JSONL")),
            ListFormat::JsonLines
        );
    }
}

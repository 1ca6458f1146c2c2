//! Importing addresses: CSV with a header row that has an `email` column
//! (and optionally `reason`, `detail`, `scope`, `added`, `campaign`: the
//! columns of an export), or a plain list of one address a line (`#`
//! comments and blank lines skipped). Every row that cannot be imported is
//! reported with its line; the others are imported in batches of
//! [`BATCH`], each with one lock and one fdatasync.

use std::io::{BufRead, BufReader, Cursor, Read};

use super::entry::{Entry, Reason, ReasonKind, Scope};
use super::list::{Change, Outcome, SuppressionList};
use super::SuppressError;

/// Rows written per lock and fdatasync.
pub const BATCH: usize = 10_000;

/// What rows that do not say get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// The scope of rows without a `scope` column or with an empty one.
    pub scope: Scope,
    /// The reason of rows without a `reason` column or with an empty one.
    pub reason: Reason,
}

impl Default for ImportOptions {
    /// Global, reason `import`.
    fn default() -> ImportOptions {
        ImportOptions {
            scope: Scope::Global,
            reason: Reason::new(ReasonKind::Import, ""),
        }
    }
}

/// A row that was not imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line of the input.
    pub line: u64,
    /// The address as given, if there was one.
    pub email: Option<String>,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows read (not counting the header, comments and blank lines).
    pub rows: u64,
    /// Entries added.
    pub added: u64,
    /// Rows whose address was suppressed in that scope already (or
    /// earlier in the input).
    pub already: u64,
    /// Rows refused, every one of them.
    pub bad: Vec<BadRow>,
}

impl SuppressionList {
    /// Imports the rows of `input` (see the module doc). Rows are
    /// written in batches, so on an error the batches before it stay.
    pub fn import(
        &mut self,
        input: impl Read,
        opts: &ImportOptions,
    ) -> Result<ImportReport, SuppressError> {
        let mut report = ImportReport::default();
        let mut batch = Vec::with_capacity(BATCH);
        read_rows(input, opts, |row| {
            report.rows += 1;
            match row {
                Ok(entry) => batch.push(Change::Add(entry)),
                Err(bad) => report.bad.push(bad),
            }
            if batch.len() >= BATCH {
                self.write_batch(&mut batch, &mut report)?;
            }
            Ok(())
        })?;
        self.write_batch(&mut batch, &mut report)?;
        Ok(report)
    }

    fn write_batch(
        &mut self,
        batch: &mut Vec<Change>,
        report: &mut ImportReport,
    ) -> Result<(), SuppressError> {
        if batch.is_empty() {
            return Ok(());
        }
        for outcome in self.apply(batch)? {
            match outcome {
                Outcome::Added => report.added += 1,
                _ => report.already += 1,
            }
        }
        batch.clear();
        Ok(())
    }
}

/// The columns of a CSV input.
struct Columns {
    email: usize,
    reason: Option<usize>,
    detail: Option<usize>,
    scope: Option<usize>,
    added: Option<usize>,
    campaign: Option<usize>,
}

impl Columns {
    /// The columns a header row names, if it names `email`.
    fn from_header(header: &csv::ByteRecord) -> Option<Columns> {
        let find = |name: &str| {
            header.iter().position(|f| {
                std::str::from_utf8(f).is_ok_and(|f| f.trim().eq_ignore_ascii_case(name))
            })
        };
        Some(Columns {
            email: find("email")?,
            reason: find("reason"),
            detail: find("detail"),
            scope: find("scope"),
            added: find("added"),
            campaign: find("campaign"),
        })
    }
}

/// Reads `input` row by row, handing `row` each entry or bad row.
fn read_rows(
    input: impl Read,
    opts: &ImportOptions,
    mut row: impl FnMut(Result<Entry, BadRow>) -> Result<(), SuppressError>,
) -> Result<(), SuppressError> {
    let mut input = BufReader::new(input);
    let mut first = Vec::new();
    input
        .read_until(b'\n', &mut first)
        .map_err(SuppressError::Input)?;
    if first.starts_with(b"\xEF\xBB\xBF") {
        first.drain(..3);
    }
    let header = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(first.as_slice())
        .byte_records()
        .next()
        .and_then(Result::ok);
    let columns = header.as_ref().and_then(Columns::from_header);
    let whole = Cursor::new(first).chain(input);
    match columns {
        Some(columns) => read_csv(whole, &columns, opts, &mut row),
        None => read_plain(whole, opts, &mut row),
    }
}

fn read_csv(
    input: impl Read,
    columns: &Columns,
    opts: &ImportOptions,
    row: &mut impl FnMut(Result<Entry, BadRow>) -> Result<(), SuppressError>,
) -> Result<(), SuppressError> {
    // Records end at LF only: with CRLF, the csv crate numbers a record
    // before counting the LF that ended the one before. The CR is then
    // the end of the last field, which the trim removes.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                row(
                    csv_entry(&record, columns, opts).map_err(|(email, reason)| BadRow {
                        line,
                        email,
                        reason,
                    }),
                )?;
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(SuppressError::Input(e.into()));
                }
                row(Err(BadRow {
                    line,
                    email: None,
                    reason: e.to_string(),
                }))?;
            }
        }
    }
}

/// One CSV row as an entry, or the address given and why not.
fn csv_entry(
    record: &csv::ByteRecord,
    c: &Columns,
    opts: &ImportOptions,
) -> Result<Entry, (Option<String>, String)> {
    let field = |i: Option<usize>| -> Result<&str, (Option<String>, String)> {
        match i.and_then(|i| record.get(i)) {
            None => Ok(""),
            Some(f) => std::str::from_utf8(f).map_err(|_| (None, "not UTF-8".to_string())),
        }
    };
    let email = field(Some(c.email))?;
    let given = || Some(email.to_string());
    if email.is_empty() {
        return Err((None, "no address in the email column".into()));
    }
    let scope = match field(c.scope)? {
        "" => opts.scope.clone(),
        s => Scope::parse(s).map_err(|e| (given(), e.to_string()))?,
    };
    let mut reason = match field(c.reason)? {
        "" => opts.reason.clone(),
        r => Reason::parse(r, opts.reason.kind),
    };
    let detail = field(c.detail)?;
    if !detail.is_empty() && reason.detail.is_empty() {
        reason = Reason::new(reason.kind, detail);
    }
    let number = |name: &str, s: &str| {
        s.parse::<u64>()
            .map_err(|_| (given(), format!("bad {name} {s:?}: not a number")))
    };
    let mut entry = Entry::new(email, scope, reason).map_err(|e| (given(), e.to_string()))?;
    match field(c.added)? {
        "" => {}
        s => entry.added = number("added", s)?,
    }
    match field(c.campaign)? {
        "" => {}
        s => entry.campaign = Some(number("campaign", s)?),
    }
    Ok(entry)
}

fn read_plain(
    input: impl Read,
    opts: &ImportOptions,
    row: &mut impl FnMut(Result<Entry, BadRow>) -> Result<(), SuppressError>,
) -> Result<(), SuppressError> {
    let mut input = BufReader::new(input);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        if input
            .read_until(b'\n', &mut buf)
            .map_err(SuppressError::Input)?
            == 0
        {
            return Ok(());
        }
        line += 1;
        let Ok(text) = std::str::from_utf8(&buf) else {
            row(Err(BadRow {
                line,
                email: None,
                reason: "not UTF-8".into(),
            }))?;
            continue;
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let entry = Entry::new(text, opts.scope.clone(), opts.reason.clone());
        row(entry.map_err(|e| BadRow {
            line,
            email: Some(text.to_string()),
            reason: e.to_string(),
        }))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(input: &str) -> Vec<Result<Entry, BadRow>> {
        let mut out = Vec::new();
        read_rows(input.as_bytes(), &ImportOptions::default(), |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn csv_rows_with_every_column_and_bad_ones() {
        let input = "\u{feff}Name,EMAIL,reason,scope,added,campaign\r\n\
                     Ann,Ann@X.example,bounce: 550 gone,news.example,1700000000,7\r\n\
                     Bob,bob,,,,\r\n\
                     \"Cy, Jr.\",cy@x.example,,,,\r\n\
                     Di,di@x.example,,no_dot,,\r\n\
                     Ed,ed@x.example,,,soon,\r\n\
                     Fay,,,,,\r\n";
        let got = rows(input);
        assert_eq!(got.len(), 6);
        let ann = got[0].as_ref().unwrap();
        assert_eq!(ann.address, "ann@x.example");
        assert_eq!(ann.reason, Reason::new(ReasonKind::Bounce, "550 gone"));
        assert_eq!(ann.scope, Scope::SenderDomain("news.example".into()));
        assert_eq!((ann.added, ann.campaign), (1_700_000_000, Some(7)));
        let bob = got[1].as_ref().unwrap_err();
        assert_eq!((bob.line, bob.email.as_deref()), (3, Some("bob")));
        assert!(bob.reason.contains("no domain"), "{}", bob.reason);
        let cy = got[2].as_ref().unwrap();
        assert_eq!(
            (cy.scope.clone(), cy.reason.kind),
            (Scope::Global, ReasonKind::Import)
        );
        assert!(got[3].as_ref().unwrap_err().reason.contains("bad scope"));
        assert!(got[4].as_ref().unwrap_err().reason.contains("bad added"));
        let fay = got[5].as_ref().unwrap_err();
        assert_eq!((fay.line, fay.email.clone()), (7, None));
    }

    #[test]
    fn plain_lists_skip_comments_and_report_bad_lines() {
        let got =
            rows("# unsubscribed by mail\nA@x.example\n\n  <b@x.example>  \nnot an address\n");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().address, "a@x.example");
        assert_eq!(got[1].as_ref().unwrap().address, "b@x.example");
        let bad = got[2].as_ref().unwrap_err();
        assert_eq!(
            (bad.line, bad.email.as_deref()),
            (5, Some("not an address"))
        );
        assert!(rows("").is_empty());
        // A one-column CSV is a plain list with a header.
        let got = rows("email\nc@x.example\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().address, "c@x.example");
    }
}

//! The result of `check-domain` as values: one [`Finding`] per check (and
//! per DKIM selector), the [`Report`] that holds them, its exit code, and
//! its two renderings: the aligned table and JSON. No I/O.

use std::fmt::Write as _;

use serde::Serialize;

/// Which check a finding belongs to; the first column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CheckKind {
    /// The SPF policy of the envelope (bounce) domain for the sending IP.
    #[serde(rename = "SPF")]
    Spf,
    /// A configured DKIM key's record.
    #[serde(rename = "DKIM")]
    Dkim,
    /// The DMARC record of the `From:` domain and alignment.
    #[serde(rename = "DMARC")]
    Dmarc,
    /// Reverse DNS of the sending IP, forward-confirmed.
    #[serde(rename = "PTR")]
    Ptr,
    /// MX (or A/AAAA) of the bounce domain.
    #[serde(rename = "MX")]
    Mx,
    /// The SPF policy of the EHLO name (`myhostname`) for the sending IP:
    /// what receivers check for mail with a null sender (bounces).
    #[serde(rename = "HELO")]
    Helo,
}

impl CheckKind {
    /// The name shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Spf => "SPF",
            CheckKind::Dkim => "DKIM",
            CheckKind::Dmarc => "DMARC",
            CheckKind::Ptr => "PTR",
            CheckKind::Mx => "MX",
            CheckKind::Helo => "HELO",
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to fix.
    Pass,
    /// Not checked (say why in the detail), e.g. SPF without `--ip`.
    Skip,
    /// Works, but worth a look.
    Warn,
    /// The DNS did not answer (SERVFAIL, timeout): try again; not a
    /// verdict on the domain.
    #[serde(rename = "temperror")]
    TempError,
    /// Receivers will reject, spam-folder or not verify this mail.
    Fail,
}

impl Status {
    /// The word shown in the table (`FAIL` in capitals, to stand out).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::TempError => "temperror",
            Status::Fail => "FAIL",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check.
    pub check: CheckKind,
    /// Its outcome.
    pub status: Status,
    /// What was found (a record, a name chain, what is missing).
    pub detail: String,
    /// What to do about it, for anything but a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A finding without a fix.
    pub fn new(check: CheckKind, status: Status, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A passing finding.
    pub fn pass(check: CheckKind, detail: impl Into<String>) -> Finding {
        Finding::new(check, Status::Pass, detail)
    }

    /// A failing finding with its fix.
    pub fn fail(check: CheckKind, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::new(check, Status::Fail, detail).with_fix(fix)
    }

    /// This finding with `fix`.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }

    /// The detail with the fix in parentheses, as the table shows it.
    pub fn text(&self) -> String {
        match &self.fix {
            Some(fix) => format!("{} ({fix})", self.detail),
            None => self.detail.clone(),
        }
    }
}

/// Exit code when every check passed (warnings and skips allowed).
pub const EXIT_OK: u8 = 0;
/// Exit code when a check failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit code when the DNS did not answer and nothing failed (EX_TEMPFAIL).
pub const EXIT_TEMPFAIL: u8 = 75;

/// Every finding of one run, in the order the checks are listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The domain checked.
    pub domain: String,
    /// The `From:` domain assumed for DKIM and DMARC.
    pub from_domain: String,
    /// The envelope (bounce) domain assumed for SPF, DMARC and MX.
    pub bounce_domain: String,
    /// The sending IP, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::IpAddr>,
    /// The rows.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst status of the report (`Pass` when empty).
    pub fn worst(&self) -> Status {
        self.findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Pass)
    }

    /// True when some check failed.
    pub fn has_failures(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Fail)
    }

    /// The process exit code: [`EXIT_FAIL`] when a check failed, else
    /// [`EXIT_TEMPFAIL`] when the DNS did not answer, else [`EXIT_OK`].
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Status::Fail => EXIT_FAIL,
            Status::TempError => EXIT_TEMPFAIL,
            _ => EXIT_OK,
        }
    }

    /// The findings that need attention (warn, temperror, FAIL).
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| matches!(f.status, Status::Warn | Status::TempError | Status::Fail))
    }

    /// The table: one line per finding, two spaces in, columns aligned
    /// (`  SPF    pass   v=spf1 ip4:203.0.113.5 -all`).
    pub fn table(&self) -> String {
        table(self.findings.iter())
    }

    /// The report as one JSON object (with `"exit"`, the exit code).
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct WithExit<'a> {
            #[serde(flatten)]
            report: &'a Report,
            exit: u8,
        }
        // Serializing plain strings, enums and numbers cannot fail.
        serde_json::to_string(&WithExit {
            report: self,
            exit: self.exit_code(),
        })
        .unwrap_or_default()
    }
}

/// Renders `findings` as the aligned table of [`Report::table`].
pub fn table<'a>(findings: impl Iterator<Item = &'a Finding> + Clone) -> String {
    let name_w = findings
        .clone()
        .map(|f| f.check.as_str().len())
        .max()
        .unwrap_or(0)
        .max(5)
        + 2;
    let status_w = findings
        .clone()
        .map(|f| f.status.as_str().len())
        .max()
        .unwrap_or(0)
        .max(4)
        + 3;
    let mut out = String::new();
    for f in findings {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "  {:<name_w$}{:<status_w$}{}",
            f.check.as_str(),
            f.status.as_str(),
            f.text()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Report {
        Report {
            domain: "example.com".into(),
            from_domain: "example.com".into(),
            bounce_domain: "example.com".into(),
            ip: Some("203.0.113.5".parse().unwrap()),
            findings: vec![
                Finding::pass(CheckKind::Spf, "v=spf1 ip4:203.0.113.5 -all"),
                Finding::fail(
                    CheckKind::Dkim,
                    "s2026._domainkey.example.com: no record",
                    "publish: \"v=DKIM1; k=ed25519; p=...\"",
                ),
                Finding::pass(
                    CheckKind::Dmarc,
                    "p=quarantine, aligned with From: example.com",
                ),
                Finding::pass(
                    CheckKind::Ptr,
                    "203.0.113.5 -> mail.example.com -> 203.0.113.5",
                ),
            ],
        }
    }

    #[test]
    fn the_table_looks_like_the_issue_example() {
        let want = "  SPF    pass   v=spf1 ip4:203.0.113.5 -all\n\
                    \x20 DKIM   FAIL   s2026._domainkey.example.com: no record (publish: \"v=DKIM1; k=ed25519; p=...\")\n\
                    \x20 DMARC  pass   p=quarantine, aligned with From: example.com\n\
                    \x20 PTR    pass   203.0.113.5 -> mail.example.com -> 203.0.113.5\n";
        assert_eq!(example().table(), want);
    }

    #[test]
    fn a_long_status_widens_the_column() {
        let r = Report {
            findings: vec![
                Finding::pass(CheckKind::Mx, "10 mx.example.com"),
                Finding::new(CheckKind::Ptr, Status::TempError, "SERVFAIL"),
            ],
            ..Report::default()
        };
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "  MX     pass        10 mx.example.com");
        assert_eq!(lines[1], "  PTR    temperror   SERVFAIL");
    }

    #[test]
    fn exit_codes_put_a_failure_before_dns_trouble() {
        let mut r = example();
        assert_eq!(r.exit_code(), EXIT_FAIL);
        r.findings[1].status = Status::TempError;
        assert_eq!(r.exit_code(), EXIT_TEMPFAIL);
        r.findings[1].status = Status::Warn;
        assert_eq!(r.exit_code(), EXIT_OK);
        r.findings[1].status = Status::Skip;
        assert_eq!(r.exit_code(), EXIT_OK);
        assert_eq!(Report::default().exit_code(), EXIT_OK);
        r.findings
            .push(Finding::new(CheckKind::Mx, Status::TempError, "x"));
        r.findings.push(Finding::fail(CheckKind::Spf, "x", "y"));
        assert_eq!(r.exit_code(), EXIT_FAIL);
        assert_eq!(r.problems().count(), 2);
    }

    #[test]
    fn json_has_every_field_and_the_exit_code() {
        let v: serde_json::Value = serde_json::from_str(&example().json()).unwrap();
        assert_eq!(v["domain"], "example.com");
        assert_eq!(v["ip"], "203.0.113.5");
        assert_eq!(v["exit"], 1);
        let checks = v["findings"].as_array().unwrap();
        assert_eq!(checks.len(), 4);
        assert_eq!(checks[0]["check"], "SPF");
        assert_eq!(checks[0]["status"], "pass");
        assert!(checks[0].get("fix").is_none());
        assert_eq!(checks[1]["status"], "fail");
        assert_eq!(checks[1]["fix"], "publish: \"v=DKIM1; k=ed25519; p=...\"");
        let t = Finding::new(CheckKind::Mx, Status::TempError, "x");
        assert_eq!(serde_json::to_value(&t).unwrap()["status"], "temperror");
    }
}

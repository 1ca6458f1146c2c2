//! Exporting the list as CSV: `email,scope,reason,detail,added,campaign`,
//! ordered by address; what [`SuppressionList::import`] reads back.

use std::io::Write;

use super::list::SuppressionList;
use super::SuppressError;

/// The export's header row.
pub const EXPORT_HEADER: [&str; 6] = ["email", "scope", "reason", "detail", "added", "campaign"];

impl SuppressionList {
    /// Writes every entry to `output` as CSV with [`EXPORT_HEADER`]; the
    /// scope is `global` or the sender domain, `added` is in Unix
    /// seconds, `campaign` is empty when none. Returns the rows written.
    pub fn export(&self, output: impl Write) -> Result<u64, SuppressError> {
        let out = |e: csv::Error| SuppressError::Output(e.into());
        let mut w = csv::Writer::from_writer(output);
        w.write_record(EXPORT_HEADER).map_err(out)?;
        let mut rows = 0;
        for e in self.list().iter() {
            let campaign = e.campaign.map(|c| c.to_string()).unwrap_or_default();
            w.write_record([
                e.address.as_str(),
                &e.scope.to_string(),
                e.reason.kind.as_str(),
                &e.reason.detail,
                &e.added.to_string(),
                &campaign,
            ])
            .map_err(out)?;
            rows += 1;
        }
        w.flush().map_err(SuppressError::Output)?;
        Ok(rows)
    }
}

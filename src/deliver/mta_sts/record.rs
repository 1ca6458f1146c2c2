//! The `_mta-sts.DOMAIN` TXT record (RFC 8461 section 3.1), sans-IO:
//! `v=STSv1; id=20160831085700Z;`. Its `id` changes whenever the policy
//! does, which is how a sender knows to fetch it again.
//!
//! Of the TXT records at the name, those that do not begin with
//! `v=STSv1` are ignored; unless exactly one is left, and it parses, the
//! domain has no MTA-STS record.

/// Why the TXT records do not give one valid MTA-STS record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// No TXT record begins with `v=STSv1`.
    #[error("no v=STSv1 TXT record")]
    Missing,
    /// More than one does (the RFC says: no policy then).
    #[error("{0} v=STSv1 TXT records, expected one")]
    Several(usize),
    /// The one record is malformed or has no valid `id`.
    #[error("malformed v=STSv1 TXT record {0:?}")]
    Malformed(String),
}

impl RecordError {
    /// The DNS data may be fixed later; it never causes a bounce.
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// A valid `v=STSv1` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsRecord {
    /// The policy id: 1 to 32 letters and digits.
    pub id: String,
}

impl StsRecord {
    /// Picks the one MTA-STS record among the TXT records `records` (each
    /// the concatenation of its character-strings) and parses it.
    pub fn select<S: AsRef<str>>(records: &[S]) -> Result<StsRecord, RecordError> {
        let sts: Vec<&str> = records
            .iter()
            .map(AsRef::as_ref)
            .filter(|r| is_sts(r))
            .collect();
        match sts.as_slice() {
            [] => Err(RecordError::Missing),
            [one] => StsRecord::parse(one),
            many => Err(RecordError::Several(many.len())),
        }
    }

    /// Parses one record: `v=STSv1` first, then `;`-separated `key=value`
    /// fields (unknown keys ignored, the first `id` counts), an optional
    /// final `;`.
    pub fn parse(text: &str) -> Result<StsRecord, RecordError> {
        let bad = || RecordError::Malformed(text.to_string());
        let body = text.trim_end_matches([' ', '\t']);
        let body = body.strip_suffix(';').unwrap_or(body);
        let mut fields = body.split(';').map(|f| f.trim_matches([' ', '\t']));
        if fields.next() != Some("v=STSv1") {
            return Err(bad());
        }
        let mut id = None;
        for field in fields {
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(bad());
            }
            if key == "id" && id.is_none() {
                if value.is_empty()
                    || value.len() > 32
                    || !value.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(bad());
                }
                id = Some(value.to_string());
            }
        }
        id.map(|id| StsRecord { id }).ok_or_else(bad)
    }
}

/// True when `record` begins with the version field `v=STSv1` followed by
/// the end or a field separator.
fn is_sts(record: &str) -> bool {
    match record.strip_prefix("v=STSv1") {
        Some(rest) => {
            let rest = rest.trim_start_matches([' ', '\t']);
            rest.is_empty() || rest.starts_with(';')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_and_variants() {
        assert_eq!(
            StsRecord::parse("v=STSv1; id=20160831085700Z;").unwrap().id,
            "20160831085700Z"
        );
        assert_eq!(StsRecord::parse("v=STSv1;id=abc").unwrap().id, "abc");
        assert_eq!(
            StsRecord::parse("v=STSv1 ; ext=1 ; id=Z9 ; id=other")
                .unwrap()
                .id,
            "Z9"
        );
    }

    #[test]
    fn malformed_records() {
        for bad in [
            "v=STSv1",
            "v=STSv1;",
            "v=STSv1; id=",
            "v=STSv1; id=has-dash",
            "v=STSv1; id=123456789012345678901234567890123",
            "v=STSv1;; id=1",
            "v=STSv1; novalue; id=1",
            "v=STSv2; id=1",
            "id=1; v=STSv1",
        ] {
            assert!(StsRecord::parse(bad).is_err(), "{bad}");
        }
        assert!(RecordError::Missing.is_transient());
    }

    #[test]
    fn selecting_the_one_record() {
        let r = StsRecord::select(&["v=spf1 -all", "v=STSv1; id=7"]).unwrap();
        assert_eq!(r.id, "7");
        assert_eq!(
            StsRecord::select(&["v=spf1 -all"]),
            Err(RecordError::Missing)
        );
        assert_eq!(StsRecord::select::<&str>(&[]), Err(RecordError::Missing));
        assert_eq!(
            StsRecord::select(&["v=STSv1; id=1", "v=STSv1; id=2"]),
            Err(RecordError::Several(2))
        );
        assert_eq!(
            StsRecord::select(&["v=STSv10; id=1"]),
            Err(RecordError::Missing),
            "another version is not ours"
        );
        assert!(matches!(
            StsRecord::select(&["v=STSv1; id=no good"]),
            Err(RecordError::Malformed(_))
        ));
    }
}

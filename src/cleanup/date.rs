//! RFC 5322 date-time text for the `Date:` field and Message-IDs.

use std::fmt::Write;

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike};

/// English day names, Monday first (RFC 5322 3.3).
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// English month names (RFC 5322 3.3).
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats `t` as an RFC 5322 date-time with a numeric zone, e.g.
/// `Sat, 28 Nov 2026 04:53:11 +0000`, whatever the process locale.
pub fn rfc5322_date<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    let day = DAYS[t.weekday().num_days_from_monday() as usize % 7];
    let month = MONTHS[t.month0() as usize % 12];
    let offset_minutes = t.offset().fix().local_minus_utc() / 60;
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let offset_minutes = offset_minutes.unsigned_abs();
    let mut out = String::with_capacity(32);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{day}, {:02} {month} {:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        offset_minutes / 60,
        offset_minutes % 60,
    );
    out
}

/// `YYYYMMDDhhmmss` of `t`, the time part of generated Message-IDs.
pub fn compact_timestamp<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    let mut out = String::with_capacity(14);
    let _ = write!(
        out,
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn at(
        offset_secs: i32,
        y: i32,
        mo: u32,
        d: u32,
        h: u32,
        mi: u32,
        s: u32,
    ) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(offset_secs)
            .unwrap()
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
    }

    #[test]
    fn formats_rfc5322_dates() {
        assert_eq!(
            rfc5322_date(&at(0, 2026, 11, 28, 4, 53, 11)),
            "Sat, 28 Nov 2026 04:53:11 +0000"
        );
        assert_eq!(
            rfc5322_date(&at(-(5 * 3600 + 1800), 2025, 1, 5, 23, 0, 9)),
            "Sun, 05 Jan 2025 23:00:09 -0530"
        );
        assert_eq!(
            rfc5322_date(&at(3600, 2024, 2, 29, 12, 30, 0)),
            "Thu, 29 Feb 2024 12:30:00 +0100"
        );
    }

    #[test]
    fn formats_compact_timestamps() {
        assert_eq!(
            compact_timestamp(&at(0, 2026, 11, 28, 4, 53, 11)),
            "20261128045311"
        );
        assert_eq!(
            compact_timestamp(&at(0, 2026, 1, 2, 3, 4, 5)),
            "20260102030405"
        );
    }
}

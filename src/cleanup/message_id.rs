//! Generated Message-IDs and reading an existing one.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeZone};

use super::date::compact_timestamp;

/// Messages given an ID by this process so far.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// This process's ID, read once (`getpid` is a system call each time, and
/// the daemon makes a Message-ID for every message that comes without one).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A new Message-ID (without angle brackets):
/// `YYYYMMDDhhmmss.PID.COUNTER.NANOS@myhostname`, all but the time in
/// upper-case hex. The counter makes it unique within this process; the
/// process ID and the sub-second time of `now` keep it apart from IDs made by
/// other processes, including an earlier process with the same PID.
pub fn generate_message_id<Tz: TimeZone>(now: &DateTime<Tz>, myhostname: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.{:X}.{:X}.{:08X}@{}",
        compact_timestamp(now),
        pid(),
        n,
        now.timestamp_subsec_nanos(),
        myhostname
    )
}

/// The ID in an existing Message-ID field value: the part between `<` and
/// `>` when there is one, else the whole value, with whitespace removed.
pub fn existing_message_id(value: &str) -> String {
    let value = value.trim();
    let inner = match value.find('<') {
        Some(open) => {
            let rest = &value[open + 1..];
            rest.find('>').map_or(rest, |close| &rest[..close])
        }
        None => value,
    };
    inner.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_unique_and_well_formed() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 4, 53, 11).unwrap();
        let ids: HashSet<String> = (0..1000)
            .map(|_| generate_message_id(&now, "mx.example"))
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert!(id.starts_with("20261128045311."), "{id}");
            assert!(id.ends_with("@mx.example"), "{id}");
            let pid = format!(".{:X}.", std::process::id());
            assert!(id.contains(&pid), "{id}");
        }
    }

    #[test]
    fn ids_from_other_threads_differ_too() {
        let now = Utc::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..500)
                        .map(|_| generate_message_id(&now, "h"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 2000);
    }

    #[test]
    fn reads_existing_ids() {
        assert_eq!(
            existing_message_id(" <abc.123@x.example> "),
            "abc.123@x.example"
        );
        assert_eq!(
            existing_message_id("<abc@x.example> (comment)"),
            "abc@x.example"
        );
        assert_eq!(existing_message_id("bare@x.example"), "bare@x.example");
        assert_eq!(
            existing_message_id("<split\r\n @x.example>"),
            "split@x.example"
        );
        assert_eq!(existing_message_id("<open@x.example"), "open@x.example");
    }
}

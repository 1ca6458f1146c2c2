//! `ringmail queue shape`: the queue's recipients counted by domain and
//! age, as Postfix's `qshape` shows them. Sans-IO: it takes the listing.

use std::collections::HashMap;

use serde::Serialize;

use super::listing::QueuedMessage;
use crate::model::RcptStatus;

/// Which domain a recipient is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeBy {
    /// The recipient's domain (qshape's default).
    Recipient,
    /// The envelope sender's domain (`qshape -s`).
    Sender,
}

/// One row: a domain's live recipients by age bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShapeRow {
    /// The domain (`TOTAL` for the first row).
    pub domain: String,
    /// All of them.
    pub total: u64,
    /// Counts per bucket, youngest first (the last bucket is open-ended).
    pub buckets: Vec<u64>,
}

/// The table: the bucket bounds and the rows, busiest domain first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Upper bound of each bucket in minutes; the last bucket has none
    /// and holds everything older than the one before.
    pub bucket_minutes: Vec<u64>,
    /// `TOTAL`, then one row per domain.
    pub rows: Vec<ShapeRow>,
}

/// Counts the live recipients of `messages` at `now` (seconds since the
/// epoch) into `buckets` buckets of doubling age (5, 10, 20 ... minutes,
/// the last open-ended, as qshape's defaults), keeping the `top` busiest
/// domains (the rest summed into one `(other)` row; 0 keeps all).
pub fn shape(
    messages: &[QueuedMessage],
    by: ShapeBy,
    now: u64,
    buckets: usize,
    top: usize,
) -> Shape {
    let buckets = buckets.clamp(2, 20);
    let bounds: Vec<u64> = (0..buckets - 1).map(|i| 5u64 << i).collect();
    let bucket_of = |arrival: u64| {
        let minutes = now.saturating_sub(arrival) / 60;
        bounds
            .iter()
            .position(|&b| minutes < b)
            .unwrap_or(buckets - 1)
    };
    let mut by_domain: HashMap<String, Vec<u64>> = HashMap::new();
    let mut total = vec![0u64; buckets];
    for m in messages {
        let b = bucket_of(m.arrival_time);
        for r in m.recipients.iter().filter(|r| is_live(r.status)) {
            let addr = match by {
                ShapeBy::Recipient => r.address.as_str(),
                ShapeBy::Sender => m.sender.as_str(),
            };
            let domain = match addr.rsplit_once('@') {
                Some((_, d)) => d.to_ascii_lowercase(),
                None if addr.is_empty() => "MAILER-DAEMON".to_string(),
                None => addr.to_ascii_lowercase(),
            };
            by_domain.entry(domain).or_insert_with(|| vec![0; buckets])[b] += 1;
            total[b] += 1;
        }
    }
    let mut rows: Vec<ShapeRow> = by_domain
        .into_iter()
        .map(|(domain, buckets)| ShapeRow {
            total: buckets.iter().sum(),
            domain,
            buckets,
        })
        .collect();
    rows.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.domain.cmp(&b.domain)));
    if top > 0 && rows.len() > top {
        let rest = rows.split_off(top);
        let mut other = vec![0u64; buckets];
        for r in &rest {
            for (o, v) in other.iter_mut().zip(&r.buckets) {
                *o += v;
            }
        }
        rows.push(ShapeRow {
            domain: format!("({} other domains)", rest.len()),
            total: other.iter().sum(),
            buckets: other,
        });
    }
    let mut all = vec![ShapeRow {
        domain: "TOTAL".into(),
        total: total.iter().sum(),
        buckets: total,
    }];
    all.extend(rows);
    Shape {
        bucket_minutes: bounds,
        rows: all,
    }
}

/// Recipients still to be delivered.
fn is_live(status: &str) -> bool {
    status == RcptStatus::Pending.as_str() || status == RcptStatus::Deferred.as_str()
}

/// The table as qshape prints it: right-aligned columns headed `T` and the
/// bucket bounds, the last `N+`.
pub fn render(shape: &Shape) -> String {
    let mut headers: Vec<String> = vec!["T".into()];
    headers.extend(shape.bucket_minutes.iter().map(|b| b.to_string()));
    if let Some(last) = shape.bucket_minutes.last() {
        headers.push(format!("{last}+"));
    }
    let name_width = shape
        .rows
        .iter()
        .map(|r| r.domain.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let widths: Vec<usize> = (0..headers.len())
        .map(|col| {
            let data = shape
                .rows
                .iter()
                .map(|r| {
                    if col == 0 {
                        r.total.to_string().len()
                    } else {
                        r.buckets.get(col - 1).map_or(1, |v| v.to_string().len())
                    }
                })
                .max()
                .unwrap_or(1);
            data.max(headers[col].len())
        })
        .collect();
    let mut out = format!("{:>name_width$}", "");
    for (h, w) in headers.iter().zip(&widths) {
        out.push_str(&format!(" {h:>w$}"));
    }
    out.push('\n');
    for r in &shape.rows {
        out.push_str(&format!("{:>name_width$}", r.domain));
        out.push_str(&format!(" {:>w$}", r.total, w = widths[0]));
        for (v, w) in r.buckets.iter().zip(&widths[1..]) {
            out.push_str(&format!(" {v:>w$}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::listing::QueuedRecipient;

    fn msg(arrival: u64, sender: &str, rcpts: &[(&str, &'static str)]) -> QueuedMessage {
        QueuedMessage {
            queue_id: "0123456789AB".into(),
            arrival_time: arrival,
            sender: sender.into(),
            size: 100,
            message_id: "x@y".into(),
            recipients: rcpts
                .iter()
                .map(|(a, s)| QueuedRecipient {
                    address: a.to_string(),
                    status: s,
                    reason: None,
                })
                .collect(),
            source_file: None,
            campaign: None,
        }
    }

    #[test]
    fn live_recipients_are_counted_by_domain_and_age() {
        let now = 1_000_000;
        let messages = vec![
            msg(
                now - 60,
                "a@s.example",
                &[("x@Gmail.com", "pending"), ("y@gmail.com", "sent")],
            ),
            msg(
                now - 30 * 60,
                "a@s.example",
                &[("x@gmail.com", "deferred"), ("z@yahoo.com", "deferred")],
            ),
            msg(now - 5000 * 60, "", &[("q@yahoo.com", "deferred")]),
        ];
        let s = shape(&messages, ShapeBy::Recipient, now, 10, 0);
        assert_eq!(
            s.bucket_minutes,
            vec![5, 10, 20, 40, 80, 160, 320, 640, 1280]
        );
        assert_eq!(s.rows[0].domain, "TOTAL");
        assert_eq!(s.rows[0].total, 4);
        let gmail = s.rows.iter().find(|r| r.domain == "gmail.com").unwrap();
        assert_eq!(gmail.total, 2);
        assert_eq!(gmail.buckets[0], 1, "a minute old");
        assert_eq!(gmail.buckets[3], 1, "30 minutes: the 20-40 bucket");
        let yahoo = s.rows.iter().find(|r| r.domain == "yahoo.com").unwrap();
        assert_eq!(yahoo.buckets[9], 1, "older than 1280 minutes");
        let by_sender = shape(&messages, ShapeBy::Sender, now, 10, 0);
        assert!(by_sender
            .rows
            .iter()
            .any(|r| r.domain == "MAILER-DAEMON" && r.total == 1));
        assert!(by_sender
            .rows
            .iter()
            .any(|r| r.domain == "s.example" && r.total == 3));
    }

    #[test]
    fn beyond_top_the_rest_is_one_row() {
        let now = 10_000;
        let messages: Vec<QueuedMessage> = (0..5)
            .map(|i| {
                msg(
                    now,
                    "a@b.example",
                    &[(
                        &*Box::leak(format!("r@d{i}.example").into_boxed_str()),
                        "pending",
                    )],
                )
            })
            .collect();
        let s = shape(&messages, ShapeBy::Recipient, now, 4, 2);
        assert_eq!(s.rows.len(), 4);
        assert_eq!(s.rows[3].domain, "(3 other domains)");
        assert_eq!(s.rows[3].total, 3);
        let text = render(&s);
        let words = |n: usize| {
            text.lines()
                .nth(n)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(words(0), ["T", "5", "10", "20", "20+"], "{text}");
        assert_eq!(words(1), ["TOTAL", "5", "5", "0", "0", "0"], "{text}");
        // Columns line up: every line is as wide as the header.
        let width = text.lines().next().unwrap().len();
        assert!(text.lines().all(|l| l.len() == width), "{text}");
    }
}

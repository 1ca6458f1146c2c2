//! `ringmail bench --via campaign`: one campaign of `--messages`
//! recipients (a template with three merge fields, about `--size` bytes
//! rendered) sent through the daemon's campaign socket, then delivered to
//! the sink like the other paths. Also measures what the campaign costs
//! to accept (seconds until it is durably queued and sealed) and to keep
//! (queue bytes per recipient).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use ringmail::inject::campaign::{submit_campaign, CampaignAnswer, CampaignRequest};
use ringmail::queue::record::{record_len, Kind};
use ringmail::queue::recovery::Records;
use ringmail::queue::segment;

/// The campaign's template: three merge fields (name, city, code), padded
/// with body lines to about `size` bytes once rendered.
pub fn template(size: usize) -> Vec<u8> {
    let mut t = String::from(
        "From: Bench <sender@bench.example>\nTo: \"{{ name }}\" <{{ email }}>\nSubject: ringmail campaign bench for {{ name }}\n\n\
         Hello {{ name }} in {{ city }}, your code is {{ code }}.\n",
    );
    let line = "The quick brown fox jumps over the lazy dog; ringmail benchmark body line.\n";
    // The fields the campaign adds (Date, Message-ID, List-Unsubscribe...)
    // are about 350 bytes.
    while t.len() + 350 < size {
        t.push_str(line);
    }
    t.into_bytes()
}

/// The list: `n` recipients with their fields, as CSV.
pub fn write_list(path: &Path, n: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "email,name,city,code")?;
    for i in 0..n {
        writeln!(
            f,
            "user{i}@d0.bench.example,Name {i},City {},{:08x}",
            i % 97,
            i * 7919
        )?;
    }
    f.flush()?;
    Ok(())
}

/// What accepting the campaign measured.
pub struct Accepted {
    /// From the first byte sent to the daemon's answer (durable and sealed).
    pub seconds: f64,
}

/// Sends the campaign; returns once the daemon answered.
pub fn send(spool: &Path, template: &[u8], list: &Path, n: usize) -> anyhow::Result<Accepted> {
    let req = CampaignRequest {
        v: 1,
        op: None,
        id: None,
        name: "bench".into(),
        from: None,
        bounce_domain: None,
        unsubscribe: Some("https://unsubscribe.bench.example".into()),
        format: "csv".into(),
        template_len: template.len(),
        rate: None,
        at: None,
    };
    let mut file = std::fs::File::open(list).context("opening the list")?;
    let start = Instant::now();
    match submit_campaign(&spool.join("campaign.sock"), &req, template, &mut file) {
        CampaignAnswer::Accepted { recipients, .. } => {
            if recipients != n as u64 {
                bail!("the daemon queued {recipients} recipients, not {n}");
            }
            Ok(Accepted {
                seconds: start.elapsed().as_secs_f64(),
            })
        }
        other => bail!("campaign not accepted: {other:?}"),
    }
}

/// Bytes the campaign's records take in the queue (campaign records and
/// slices, headers and padding included), read from the segment files.
pub fn queue_bytes(queue_root: &Path) -> anyhow::Result<u64> {
    let mut total = 0u64;
    for shard in std::fs::read_dir(queue_root)? {
        let shard = shard?.path();
        if !shard.is_dir() {
            continue;
        }
        for seg in std::fs::read_dir(&shard)? {
            let path = seg?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("seg") {
                continue;
            }
            let file = std::fs::File::open(&path)?;
            let map = segment::map_ro(&file)?;
            for found in Records::new(&map) {
                if matches!(found.kind, Kind::Campaign | Kind::Recipients) {
                    total += record_len(found.payload.len(), found.aux.len()) as u64;
                }
            }
        }
    }
    Ok(total)
}

/// The recipient index in a campaign Message-ID
/// (`<CAMPAIGN.INDEX.MICROS@bench.example>`).
pub fn index(message_id: &str) -> Option<usize> {
    let inner = message_id.trim_matches(|c| c == '<' || c == '>');
    let (local, domain) = inner.split_once('@')?;
    if domain != "bench.example" {
        return None;
    }
    local.split('.').nth(1)?.parse().ok()
}

/// Peak resident memory of a process, in MB (Linux `VmHWM`).
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaign_message_ids_give_the_index() {
        assert_eq!(index("<17.42.99@bench.example>"), Some(42));
        assert_eq!(index("<17.42.99@other.example>"), None);
        assert_eq!(index("<bench.3@ringmail.bench>"), None);
        assert!(template(2048).len() < 2048);
    }
}

//! `ringmail campaign show | follow | report | pause | resume | cancel`:
//! a campaign's counts come from its state file and its results journals
//! (readable with the daemon running or not); control goes through the
//! daemon when it runs (it acts within a second) and straight to the state
//! file when it does not.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringmail::inject::campaign::control_campaign;
use ringmail::queue::campaign_results::{read_results, ResultCounts, ResultLine};
use ringmail::queue::campaign_state::{CampaignInfo, CampaignRegistry, CampaignState};
use ringmail::spool::Spool;

/// A campaign's state and counts.
struct Progress {
    info: CampaignInfo,
    counts: ResultCounts,
}

impl Progress {
    fn pending(&self) -> u64 {
        self.info.recipients.saturating_sub(self.counts.seen())
    }

    fn finished(&self) -> bool {
        self.counts.done() >= self.info.recipients
    }

    fn line(&self) -> String {
        let c = &self.counts;
        format!(
            "{} / {}  sent {} · deferred {} · bounced {} · expired {} · suppressed {} · cancelled {} · pending {}",
            c.done(),
            self.info.recipients,
            c.sent,
            c.deferred,
            c.bounced,
            c.expired,
            c.suppressed,
            c.cancelled,
            self.pending()
        )
    }
}

fn spool(config: Option<PathBuf>) -> Result<Spool, ExitCode> {
    match super::load(config) {
        Ok(c) => Ok(Spool::new(&c.spool_dir)),
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            Err(ExitCode::from(78))
        }
    }
}

fn progress(spool: &Spool, id: u64) -> Result<Progress, ExitCode> {
    let dir = spool.campaigns();
    let reg = CampaignRegistry::load(&dir).map_err(|e| {
        eprintln!("ringmail: fatal: {e}");
        ExitCode::from(74)
    })?;
    let Some(info) = reg.get(id) else {
        eprintln!("ringmail: no campaign {id}");
        return Err(ExitCode::from(67));
    };
    let counts = read_results(&dir, id, |_| {}).map_err(|e| {
        eprintln!("ringmail: fatal: {e}");
        ExitCode::from(74)
    })?;
    Ok(Progress { info, counts })
}

/// `campaign show ID [--json]`.
pub fn show(config: Option<PathBuf>, id: u64, json: bool) -> ExitCode {
    let p = match spool(config).and_then(|s| progress(&s, id)) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if json {
        let c = &p.counts;
        println!(
            "{}",
            serde_json::json!({
                "id": p.info.id,
                "name": p.info.name,
                "state": p.info.state.as_str(),
                "recipients": p.info.recipients,
                "refused": p.info.refused,
                "duplicates": p.info.duplicates,
                "sent": c.sent,
                "deferred": c.deferred,
                "bounced": c.bounced,
                "expired": c.expired,
                "suppressed": c.suppressed,
                "cancelled": c.cancelled,
                "pending": p.pending(),
            })
        );
    } else {
        println!(
            "campaign {} ({}): {}",
            p.info.id,
            p.info.name,
            p.info.state.as_str()
        );
        println!("  {}", p.line());
        if p.info.refused + p.info.duplicates > 0 {
            println!(
                "  not queued: {} rows refused, {} duplicates",
                p.info.refused, p.info.duplicates
            );
        }
    }
    ExitCode::SUCCESS
}

/// `campaign follow ID` (and `send --follow`): a progress bar on a
/// terminal, a plain line every few seconds otherwise, until every
/// recipient has an outcome or the campaign is cancelled.
pub fn follow(config: Option<PathBuf>, id: u64) -> ExitCode {
    let spool = match spool(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let tty = std::io::stdout().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let started = Instant::now();
    let mut first_done: Option<u64> = None;
    let mut last_print = Instant::now() - Duration::from_secs(60);
    loop {
        let p = match progress(&spool, id) {
            Ok(p) => p,
            Err(code) => return code,
        };
        let done = p.counts.done();
        let base = *first_done.get_or_insert(done);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = (done - base) as f64 / secs;
        let left = p.pending() + p.counts.deferred;
        let eta = if rate > 0.0 {
            format!("ETA {}", short_duration((left as f64 / rate) as u64))
        } else {
            "ETA -".into()
        };
        let text = format!("{} · {:.0}/s · {eta}", p.line(), rate);
        let finished =
            p.finished() || (p.info.state == CampaignState::Cancelled && p.pending() == 0);
        if tty {
            let b = bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::new(p.info.recipients);
                if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {msg}") {
                    b.set_style(style);
                }
                b
            });
            b.set_position(done);
            b.set_message(text.clone());
            if finished {
                b.finish();
            }
        } else if finished || last_print.elapsed() >= Duration::from_secs(5) {
            println!("campaign {id}: {} · {text}", p.info.state.as_str());
            let _ = std::io::stdout().flush();
            last_print = Instant::now();
        }
        if finished {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `campaign report ID [--json]`: one line per recipient, in list order:
/// its outcome, or `pending` while it has none (rows refused at acceptance
/// are not recipients and were reported then).
pub fn report(config: Option<PathBuf>, id: u64, json: bool) -> ExitCode {
    let spool = match spool(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(code) = progress(&spool, id) {
        return code;
    }
    let mut lines = Vec::new();
    if let Err(e) = read_results(&spool.campaigns(), id, |r| lines.push(r.clone())) {
        eprintln!("ringmail: fatal: {e}");
        return ExitCode::from(74);
    }
    // Recipients without an outcome yet: still in the queue, pending.
    let seen: std::collections::HashSet<u32> = lines.iter().map(|r| r.index).collect();
    match ringmail::queue::listing::list_queue(&spool.queue()) {
        Ok(queued) => {
            for m in queued {
                let Some(c) = m.campaign.filter(|c| c.id == id) else {
                    continue;
                };
                for (i, r) in m.recipients.iter().enumerate() {
                    let index = c.first_index.saturating_add(i as u32);
                    if r.status == "pending" && !seen.contains(&index) {
                        lines.push(ResultLine {
                            index,
                            email: r.address.clone(),
                            status: "pending".into(),
                            dsn: String::new(),
                            time: 0,
                            reply: String::new(),
                        });
                    }
                }
            }
        }
        Err(e) => eprintln!("ringmail: the queue cannot be read ({e}): recipients without an outcome are not listed"),
    }
    lines.sort_by_key(|r| r.index);
    let mut out = std::io::stdout().lock();
    if !json {
        let _ = writeln!(out, "index,email,status,dsn,time,reply");
    }
    for r in lines {
        let line = if json {
            serde_json::json!({
                "index": r.index, "email": r.email, "status": r.status,
                "dsn": r.dsn, "time": r.time, "reply": r.reply,
            })
            .to_string()
        } else {
            format!(
                "{},{},{},{},{},{}",
                r.index,
                csv_field(&r.email),
                r.status,
                r.dsn,
                r.time,
                csv_field(&r.reply)
            )
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// `42s`, `3m05s`, `2h10m`.
fn short_duration(s: u64) -> String {
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A CSV field, quoted when it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `campaign pause|resume|cancel ID`.
pub fn control(config: Option<PathBuf>, op: &str, id: u64) -> ExitCode {
    let spool = match spool(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match control_campaign(&spool.campaign_socket(), op, id) {
        Ok((was, now)) => {
            println!("campaign {id}: {now} (was {was})");
            ExitCode::SUCCESS
        }
        Err(Some(why)) => {
            eprintln!("ringmail: campaign {id}: {why}");
            if why.starts_with("no campaign") {
                ExitCode::from(67)
            } else {
                ExitCode::from(75)
            }
        }
        Err(None) => {
            // No daemon: change the state file itself (the daemon reads it
            // when it starts).
            let state = match op {
                "pause" => CampaignState::Paused,
                "resume" => CampaignState::Running,
                _ => CampaignState::Cancelled,
            };
            let reg = match CampaignRegistry::load(&spool.campaigns()) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("ringmail: fatal: {e}");
                    return ExitCode::from(74);
                }
            };
            match reg.set_state(id, state) {
                Ok(Some(before)) => {
                    let now = reg.state(id).unwrap_or(before);
                    println!(
                        "campaign {id}: {} (was {}; the daemon is not running: takes effect when it starts)",
                        now.as_str(),
                        before.as_str()
                    );
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    eprintln!("ringmail: no campaign {id}");
                    ExitCode::from(67)
                }
                Err(e) => {
                    eprintln!("ringmail: fatal: {e}");
                    ExitCode::from(74)
                }
            }
        }
    }
}

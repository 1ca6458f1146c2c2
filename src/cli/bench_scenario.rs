//! `ringmail bench --scenario FILE`: a bulk send to simulated mailbox
//! providers. One sink listener per provider on its own 127.0.0.x address
//! (its latency, failure rates, connection cap and rate limit answered with
//! its throttle reply), a loopback DNS server that maps the scenario's
//! recipient domains to them, the daemon configured to use only that
//! resolver, every message staged then renamed into pickup/, and a wait
//! until every message is delivered or bounced. The report gives per
//! provider what was delivered, deferred and bounced, the caps against
//! what was observed, and the run's throughput as a share of the
//! scenario's own limit (what the caps allow).

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ringmail::sink::dns::DnsServer;
use ringmail::sink::scenario::{Limit, Recipient, Scenario};
use ringmail::sink::SinkHandle;

use super::bench::BenchArgs;

/// One provider's results.
#[derive(Debug, serde::Serialize)]
struct ProviderReport {
    name: String,
    address: String,
    messages: usize,
    domains: usize,
    delivered: u64,
    bounced: u64,
    /// `status=deferred` log lines (each a failed attempt).
    deferred_attempts: u64,
    /// Seconds from the start until its last message was delivered or
    /// bounced.
    seconds: f64,
    /// Delivered per second over `seconds`.
    messages_per_second: f64,
    /// Transactions per second the caps allow.
    capacity: f64,
    /// The listener's connection cap (with `own_mx`, the sum over the
    /// provider's domains).
    max_connections: usize,
    /// Most connections the sink served at once (never above the cap).
    max_served_connections: u64,
    /// Most connections open at once, refused ones included.
    max_open_connections: u64,
    /// Connections refused for being over the cap.
    refused_connections: u64,
    /// The listener's rate cap (with `own_mx`, the sum).
    rate_per_second: f64,
    /// Most messages the sink accepted in one second.
    max_messages_per_second: u64,
    /// MAIL commands answered with the throttle reply.
    throttled: u64,
    /// The sink's tempfails and permfails at RCPT.
    rejected_rcpt: u64,
}

/// The scenario run's results.
#[derive(Debug, serde::Serialize)]
struct Report {
    scenario: String,
    messages: usize,
    seconds: f64,
    messages_per_second: f64,
    /// What the providers' caps allow, messages per second.
    scenario_limit: f64,
    /// The least time the caps allow.
    scenario_limit_seconds: f64,
    /// `messages_per_second` as a percentage of `scenario_limit`.
    percent_of_limit: f64,
    delivered: u64,
    bounced: u64,
    deferred_attempts: u64,
    /// Messages neither delivered (by the sinks' Message-IDs) nor bounced.
    lost: u64,
    /// Deliveries of a message beyond its first.
    duplicates: u64,
    /// Lines of the daemon's log matching `site …: suspended|connection
    /// limit|rate` (automatic shaping actions; 0 until shaping exists).
    automation_actions: u64,
    /// Some provider refused a connection or throttled a MAIL: the sender
    /// went over a cap (the sink enforced it).
    over_cap: bool,
    /// One run of the sender configuration.
    group_by_provider: bool,
    concurrency: usize,
    daemon_cpu_seconds: f64,
    providers: Vec<ProviderReport>,
}

/// Per-provider counts from the daemon's log.
#[derive(Clone, Debug, Default)]
struct Tally {
    delivered: u64,
    bounced: u64,
    deferred: u64,
    finished_at: Option<f64>,
}

/// Runs the scenario; returns the exit code (1 when a message was lost or
/// delivered twice).
pub(super) fn run(args: &BenchArgs, file: &Path) -> anyhow::Result<u8> {
    let mut scenario = Scenario::load(file)?;
    if let Some(ms) = args.sink_latency_ms {
        for p in &mut scenario.providers {
            p.latency_ms = ms;
        }
    }
    if let Some(dir) = &args.export {
        export(&scenario, dir, args.export_port)?;
        return Ok(0);
    }
    let limit = scenario.limit();
    let recipients = scenario.recipients();
    let (sinks, port) = scenario.start_sinks(0)?;
    let dns = DnsServer::start(scenario.zone()?, 0).context("starting the loopback DNS server")?;
    let dir = tempfile::Builder::new()
        .prefix("ringmail-scenario.")
        .tempdir_in(&args.workdir)
        .with_context(|| format!("creating a work directory in {}", args.workdir.display()))?;
    let spool = dir.path().join("spool");
    let config = dir.path().join("ringmail.toml");
    std::fs::write(&config, daemon_config(&scenario, args, &spool, port, &dns))?;
    let exe = std::env::current_exe().context("locating the ringmail binary")?;
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path)?;
    let mut serve = Command::new(&exe);
    serve.args(["serve", "--config"]).arg(&config);
    if args.daemon_verbose {
        serve.arg("--verbose");
    }
    let mut daemon = serve
        .env_remove("RINGMAIL_IO")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the daemon")?;
    let result = drive(
        args,
        &scenario,
        &limit,
        &recipients,
        &sinks,
        &mut daemon,
        &spool,
        dir.path(),
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
    drop(dns);
    let mut report = result?;
    report.scenario = file.display().to_string();
    for s in sinks {
        s.shutdown();
    }
    if args.keep {
        eprintln!("kept {}", dir.keep().display());
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(u8::from(report.lost > 0 || report.duplicates > 0))
}

/// The daemon's configuration: MX delivery on the sinks' port, only the
/// loopback resolver, fast retries, TLS off (the sinks do not offer it:
/// `none` globally and, over the shipped shaping rules that require TLS
/// for some providers, per route or per domain), and the scenario's
/// sender settings.
fn daemon_config(
    scenario: &Scenario,
    args: &BenchArgs,
    spool: &Path,
    port: u16,
    dns: &DnsServer,
) -> String {
    let s = &scenario.sender;
    let mut c = format!(
        "spool_dir = {spool:?}\nmyhostname = \"bench.localhost\"\nshards = {}\nio_backend = {:?}\n\
         pickup_settle_ms = 0\npickup_interval_ms = 50\nminimal_backoff_time = 1\nmaximal_backoff_time = 5\n\
         smtp_port = {port}\ninet_protocols = \"ipv4\"\nsmtp_mta_sts = false\nsmtp_tls_security_level = \"none\"\n\
         smtp_transaction_chaining = {:?}\ndefault_destination_concurrency_limit = {}\n{}\n",
        args.shards, args.io_backend, args.chaining, s.concurrency, s.extra
    );
    if !s.shaping.is_empty() {
        let file = spool.with_file_name("shaping.toml");
        match std::fs::write(&file, &s.shaping) {
            Ok(()) => c.push_str(&format!("shaping_file = {file:?}\n")),
            Err(e) => eprintln!("bench: cannot write {}: {e}", file.display()),
        }
    }
    c.push_str(&format!(
        "[dns]\nservers = [\"{}\"]\ntimeout = 2\nattempts = 2\n",
        dns.addr
    ));
    if s.group_by_provider {
        for p in &scenario.providers {
            for d in p.all_domains() {
                let host = p.mx_hosts(&d).into_iter().next().unwrap_or_default();
                c.push_str(&format!(
                    "[[route]]\ndomain = \"{d}\"\nnexthop = \"[{host}]:{port}\"\nrate = \"{}/s\"\ntls = \"none\"\n",
                    p.rate_per_second.floor().max(1.0)
                ));
            }
        }
    } else {
        // The sinks offer no STARTTLS: without routes, say so per
        // domain, over the shipped shaping rules' `tls = "encrypt"`.
        for p in &scenario.providers {
            for d in p.all_domains() {
                c.push_str(&format!(
                    "[[tls_policy]]\ndomain = \"{d}\"\nlevel = \"none\"\n"
                ));
            }
        }
    }
    c
}

/// Writes the messages and a Postfix configuration for the scenario: one
/// `smtp` transport per provider (`prov_NAME`), every domain mapped to it
/// with the provider's listener as `[127.0.0.x]:port` (Postfix asks the
/// system resolver, which must not learn the scenario's names), and per
/// transport the provider's cap as its destination concurrency: a bulk
/// sender that knows each provider's limits.
fn export(scenario: &Scenario, dir: &Path, port: u16) -> anyhow::Result<()> {
    let messages = dir.join("messages");
    let postfix = dir.join("postfix");
    std::fs::create_dir_all(&messages)?;
    std::fs::create_dir_all(&postfix)?;
    for (i, r) in scenario.recipients().iter().enumerate() {
        std::fs::write(
            messages.join(format!("m{i}.eml")),
            message(i, &r.address, scenario.size),
        )?;
    }
    let mut transport = String::new();
    let mut main = String::from("# generated by ringmail bench --scenario --export\n");
    let mut master = String::new();
    for p in &scenario.providers {
        let name = format!("prov_{}", p.name.replace('-', "_"));
        for d in p.all_domains() {
            transport.push_str(&format!("{d} {name}:[{}]:{port}\n", p.address));
        }
        master.push_str(&format!("{name} unix - - n - - smtp\n"));
        let cap = p.listener_caps().0;
        main.push_str(&format!(
            "{name}_destination_concurrency_limit = {cap}\n{name}_initial_destination_concurrency = {}\n",
            cap.min(5)
        ));
    }
    std::fs::write(postfix.join("transport"), transport)?;
    std::fs::write(postfix.join("main.cf"), main)?;
    std::fs::write(postfix.join("master.cf"), master)?;
    let limit = scenario.limit();
    std::fs::write(
        dir.join("limit.json"),
        serde_json::to_string(&serde_json::json!({
            "messages": scenario.messages,
            "scenario_limit": limit.messages_per_second,
            "scenario_limit_seconds": limit.seconds,
        }))?,
    )?;
    Ok(())
}

/// A scenario message: one recipient, a bench Message-ID.
fn message(i: usize, to: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "X-Sender: sender@scenario.invalid\nX-Receiver: {to}\nFrom: Bench <sender@scenario.invalid>\nTo: {to}\n\
         Subject: ringmail scenario {i}\nMessage-ID: <bench.{i}@ringmail.bench>\n\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog; ringmail benchmark body line.\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

#[allow(clippy::too_many_arguments)]
fn drive(
    args: &BenchArgs,
    scenario: &Scenario,
    limit: &Limit,
    recipients: &[Recipient],
    sinks: &[SinkHandle],
    daemon: &mut Child,
    spool: &Path,
    workdir: &Path,
) -> anyhow::Result<Report> {
    let up = Instant::now();
    while !spool.join("control.sock").exists() {
        if let Some(status) = daemon.try_wait()? {
            bail!(
                "daemon exited at start ({status}); see {}",
                workdir.join("daemon.log").display()
            );
        }
        if up.elapsed() > Duration::from_secs(30) {
            bail!("daemon did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let total = recipients.len();
    let staging = workdir.join("staging");
    std::fs::create_dir_all(&staging)?;
    for (i, r) in recipients.iter().enumerate() {
        std::fs::write(
            staging.join(format!("m{i}.eml")),
            message(i, &r.address, scenario.size),
        )?;
    }
    let domains = scenario.domain_index();
    let counts = scenario.counts();
    let tty = std::io::stderr().is_terminal() && !args.json;
    let cpu_before = super::bench::process_cpu_seconds(daemon.id());
    let start = Instant::now();
    let pickup = spool.join("pickup");
    for i in 0..total {
        let name = format!("m{i}.eml");
        std::fs::rename(staging.join(&name), pickup.join(&name))?;
    }
    let mut log = LogScan::new(workdir.join("daemon.log"), scenario.providers.len());
    let mut last_progress = (0usize, Instant::now());
    loop {
        log.poll(&domains, start.elapsed().as_secs_f64(), &counts);
        let done = log.finished.len();
        if tty {
            eprint!(
                "\r  finished {done}/{total} (delivered or bounced), {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
        if done >= total {
            break;
        }
        if done != last_progress.0 {
            last_progress = (done, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(args.stall_timeout) {
            if tty {
                eprintln!();
            }
            eprintln!(
                "no progress for {} s; see {}",
                args.stall_timeout,
                workdir.join("daemon.log").display()
            );
            break;
        }
        if let Some(status) = daemon.try_wait()? {
            bail!("daemon exited during the run ({status})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = start.elapsed().as_secs_f64();
    if tty {
        eprintln!();
    }
    let cpu = super::bench::process_cpu_seconds(daemon.id()) - cpu_before;
    // Losses: every message must be at a sink (by Message-ID) or bounced.
    let mut seen: HashSet<usize> = log.bounced.clone();
    let mut duplicates = 0u64;
    for s in sinks {
        for (id, n) in s.message_id_counts() {
            if let Some(i) = super::bench::bench_index(&id) {
                seen.insert(i);
                duplicates += u64::from(n.saturating_sub(1));
            }
        }
    }
    let lost = (0..total).filter(|i| !seen.contains(i)).count() as u64;
    let providers: Vec<ProviderReport> = scenario
        .providers
        .iter()
        .zip(sinks)
        .zip(&limit.providers)
        .zip(&log.tally)
        .map(|(((p, sink), pl), t)| {
            let snap = sink.stats();
            let (max_connections, rate_per_second) = p.listener_caps();
            let secs = t.finished_at.unwrap_or(seconds);
            ProviderReport {
                name: p.name.clone(),
                address: sink.local_addr.to_string(),
                messages: pl.messages,
                domains: p.all_domains().len(),
                delivered: t.delivered,
                bounced: t.bounced,
                deferred_attempts: t.deferred,
                seconds: secs,
                messages_per_second: t.delivered as f64 / secs.max(1e-9),
                capacity: pl.capacity,
                max_connections,
                max_served_connections: snap.max_served_connections,
                max_open_connections: snap.max_concurrent_connections,
                refused_connections: snap.refused_connections,
                rate_per_second,
                max_messages_per_second: snap.max_messages_per_second,
                throttled: snap.throttled,
                rejected_rcpt: snap.rejected_rcpt,
            }
        })
        .collect();
    let over_cap = providers
        .iter()
        .any(|p| p.refused_connections > 0 || p.throttled > 0);
    let messages_per_second = total as f64 / seconds.max(1e-9);
    Ok(Report {
        scenario: String::new(),
        messages: total,
        seconds,
        messages_per_second,
        scenario_limit: limit.messages_per_second,
        scenario_limit_seconds: limit.seconds,
        percent_of_limit: 100.0 * messages_per_second / limit.messages_per_second.max(1e-9),
        delivered: providers.iter().map(|p| p.delivered).sum(),
        bounced: providers.iter().map(|p| p.bounced).sum(),
        deferred_attempts: providers.iter().map(|p| p.deferred_attempts).sum(),
        lost,
        duplicates,
        automation_actions: log.automation,
        over_cap,
        group_by_provider: scenario.sender.group_by_provider,
        concurrency: scenario.sender.concurrency,
        daemon_cpu_seconds: cpu,
        providers,
    })
}

/// Reads the daemon's log as it grows: per provider `status=sent`,
/// `status=bounced` and `status=deferred` lines (by the recipient's
/// domain), which messages are finished, and automation lines.
struct LogScan {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    tally: Vec<Tally>,
    finished: HashSet<usize>,
    bounced: HashSet<usize>,
    automation: u64,
}

impl LogScan {
    fn new(path: PathBuf, providers: usize) -> LogScan {
        LogScan {
            path,
            offset: 0,
            partial: Vec::new(),
            tally: vec![Tally::default(); providers],
            finished: HashSet::new(),
            bounced: HashSet::new(),
            automation: 0,
        }
    }

    fn poll(
        &mut self,
        domains: &std::collections::HashMap<String, usize>,
        now: f64,
        counts: &[usize],
    ) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if let Ok(n) = f.read_to_end(&mut buf) {
            self.offset += n as u64;
        }
        self.partial.extend_from_slice(&buf);
        let complete = self
            .partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0);
        let lines: Vec<u8> = self.partial.drain(..complete).collect();
        for line in String::from_utf8_lossy(&lines).lines() {
            self.line(line, domains, now, counts);
        }
    }

    fn line(
        &mut self,
        line: &str,
        domains: &std::collections::HashMap<String, usize>,
        now: f64,
        counts: &[usize],
    ) {
        if is_automation(line) {
            self.automation += 1;
        }
        let Some((index, domain, status)) = parse_status(line) else {
            return;
        };
        let Some(&p) = domains.get(&domain) else {
            return;
        };
        let t = &mut self.tally[p];
        match status {
            "sent" => t.delivered += 1,
            "bounced" => {
                t.bounced += 1;
                self.bounced.insert(index);
            }
            "deferred" => {
                t.deferred += 1;
                return;
            }
            _ => return,
        }
        self.finished.insert(index);
        if t.delivered + t.bounced >= counts[p] as u64 && t.finished_at.is_none() {
            t.finished_at = Some(now);
        }
    }
}

/// `site NAME: suspended|connection limit|rate…`, the shaping actions'
/// log form.
fn is_automation(line: &str) -> bool {
    line.match_indices("site ").any(|(at, _)| {
        let rest = &line[at + 5..];
        rest.find(": ").is_some_and(|colon| {
            let what = &rest[colon + 2..];
            what.starts_with("suspended")
                || what.starts_with("connection limit")
                || what.starts_with("rate")
        })
    })
}

/// From `…: to=<uN@domain>, … status=WORD (…)`: N, the domain, WORD.
fn parse_status(line: &str) -> Option<(usize, String, &str)> {
    let to = line.split("to=<").nth(1)?.split('>').next()?;
    let (local, domain) = to.rsplit_once('@')?;
    let index = local.strip_prefix('u')?.parse().ok()?;
    let status = line.split("status=").nth(1)?.split([' ', ',']).next()?;
    Some((index, domain.to_ascii_lowercase(), status))
}

fn print_report(r: &Report) {
    println!(
        "ringmail bench --scenario {}: {} messages, {} providers, sender {} (concurrency {})",
        r.scenario,
        r.messages,
        r.providers.len(),
        if r.group_by_provider {
            "grouped by provider"
        } else {
            "per recipient domain"
        },
        r.concurrency
    );
    println!(
        "  time            {:.2} s until every message was delivered or bounced",
        r.seconds
    );
    println!(
        "  throughput      {:.0} messages/s = {:.1}% of the scenario's limit ({:.0} messages/s, {:.2} s: what the providers' caps allow)",
        r.messages_per_second, r.percent_of_limit, r.scenario_limit, r.scenario_limit_seconds
    );
    println!(
        "  outcome         delivered {}, bounced {}, deferred attempts {}, lost {}, delivered twice {}",
        r.delivered, r.bounced, r.deferred_attempts, r.lost, r.duplicates
    );
    println!(
        "  caps            {}; automation actions {}; daemon CPU {:.2} s",
        if r.over_cap {
            "the sender went over a cap (connections refused or MAIL throttled)"
        } else {
            "no provider's cap was hit"
        },
        r.automation_actions,
        r.daemon_cpu_seconds
    );
    println!(
        "  {:<10} {:>7} {:>9} {:>7} {:>8} {:>8} {:>9} {:>13} {:>9} {:>13} {:>9}",
        "provider",
        "msgs",
        "delivered",
        "bounced",
        "deferred",
        "seconds",
        "msg/s",
        "conns max/cap",
        "refused",
        "rate max/cap",
        "throttled"
    );
    for p in &r.providers {
        println!(
            "  {:<10} {:>7} {:>9} {:>7} {:>8} {:>8.2} {:>9.0} {:>13} {:>9} {:>13} {:>9}",
            p.name,
            p.messages,
            p.delivered,
            p.bounced,
            p.deferred_attempts,
            p.seconds,
            p.messages_per_second,
            format!("{}/{}", p.max_served_connections, p.max_connections),
            p.refused_connections,
            format!("{}/{}", p.max_messages_per_second, p.rate_per_second),
            p.throttled
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let l = "Dec  7 02:00:00 h ringmail/smtp[1]: 4F1A: to=<u42@Gmail.com>, relay=x[127.0.0.2]:2525, delay=1, dsn=2.0.0, status=sent (250 ok)";
        assert_eq!(parse_status(l), Some((42, "gmail.com".into(), "sent")));
        assert_eq!(
            parse_status("x: to=<sender@scenario.invalid>, status=bounced (x)"),
            None
        );
        assert_eq!(parse_status("no status here"), None);
    }

    #[test]
    fn automation_lines_are_counted() {
        assert!(is_automation("shape: site gmail: suspended for 60 s"));
        assert!(is_automation(
            "shape: site google.com: connection limit 20 -> 10"
        ));
        assert!(is_automation("shape: site x: rate 100/s -> 50/s"));
        assert!(!is_automation("qmgr: 4F1A: to=<a@b>, status=sent (250 ok)"));
        assert!(!is_automation("site x: nothing"));
    }

    #[test]
    fn log_scan_tallies_per_provider() {
        let mut s = LogScan::new(PathBuf::from("/nonexistent"), 2);
        let domains = [("a.test".to_string(), 0), ("b.test".to_string(), 1)]
            .into_iter()
            .collect();
        let counts = [2, 1];
        s.line(
            "q: to=<u0@a.test>, status=deferred (451)",
            &domains,
            1.0,
            &counts,
        );
        s.line(
            "q: to=<u0@a.test>, status=sent (250)",
            &domains,
            2.0,
            &counts,
        );
        s.line(
            "q: to=<u1@b.test>, status=bounced (550)",
            &domains,
            3.0,
            &counts,
        );
        s.line(
            "q: to=<u2@a.test>, status=sent (250)",
            &domains,
            4.0,
            &counts,
        );
        assert_eq!(s.tally[0].delivered, 2);
        assert_eq!(s.tally[0].deferred, 1);
        assert_eq!(s.tally[0].finished_at, Some(4.0));
        assert_eq!(s.tally[1].finished_at, Some(3.0));
        assert_eq!(s.finished.len(), 3);
        assert!(s.bounced.contains(&1));
    }
}

//! `ringmail bench`: the main job. A complete bulk send on this machine:
//! the bundled sink on a loopback port, a temporary spool and config with
//! the sink as relay host, the daemon as a child process, N messages
//! injected through the pickup directory or the sendmail command, then
//! throughput and injection-to-acceptance latency once the sink has them
//! all. Exits non-zero if any message was lost or delivered twice.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use ringmail::sink::{self, SinkConfig};

/// How messages get into ringmail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Files renamed into pickup/.
    Spool,
    /// One `ringmail sendmail -t -i` process per message.
    Sendmail,
    /// SMTP to the daemon's listener, `--smtp-sessions` connections at once,
    /// each sending its messages one after another (MAIL, RCPT and DATA
    /// pipelined), `250` only after the commit.
    Smtp,
    /// One campaign of `--messages` recipients through the campaign socket
    /// (template with three merge fields, rendered at delivery).
    Campaign,
}

/// Benchmark parameters (the CLI's flags).
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Messages to send.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Approximate size of each message in bytes.
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    pub recipients: usize,
    /// Recipient domains, used round-robin.
    #[arg(long, default_value_t = 1)]
    pub domains: usize,
    /// Injection path.
    #[arg(long, value_enum, default_value_t = Via::Spool)]
    pub via: Via,
    /// Use this running sink (loopback only) instead of the bundled one.
    #[arg(long)]
    pub sink: Option<SocketAddr>,
    /// Shards (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// io backend: auto, uring or epoll.
    #[arg(long, default_value = "auto")]
    pub io_backend: String,
    /// Parallel sendmail processes with --via sendmail.
    #[arg(long, default_value_t = 8)]
    pub sendmail_parallel: usize,
    /// The sendmail command for --via sendmail (for example the static
    /// build of tools/build_static_sendmail.sh); default: the
    /// `ringmail-sendmail` beside this binary, else `ringmail sendmail`.
    #[arg(long)]
    pub sendmail: Option<PathBuf>,
    /// SMTP sessions at once with `--via smtp`.
    #[arg(long, default_value_t = 8)]
    pub smtp_sessions: usize,
    /// Directory for the temporary spool (a real disk, so fsync counts).
    #[arg(long, default_value = "/var/tmp")]
    pub workdir: PathBuf,
    /// Keep the temporary spool, config and daemon log.
    #[arg(long)]
    pub keep: bool,
    /// Give up when the sink sees no progress for this many seconds.
    #[arg(long, default_value_t = 60)]
    pub stall_timeout: u64,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// The bundled sink refuses commands pipelined after the end of DATA
    /// (503, as Haraka does): shows the cost of the safe path.
    #[arg(long)]
    pub strict_pipelining: bool,
    /// The daemon's `smtp_transaction_chaining`: auto, on or off.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub chaining: String,
    /// DKIM-sign every message (keys made for the run); the report adds
    /// how many messages the machine's cores can sign per second.
    #[arg(long, value_enum, default_value = "none")]
    pub dkim: super::bench_dkim::BenchDkim,
    /// The daemon's `dkim_signing_threads` (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub dkim_threads: usize,
    /// Scrape the daemon's `/metrics` every this many milliseconds during
    /// the run (0: no HTTP server, no scraping), to measure what it costs.
    #[arg(long, default_value_t = 0)]
    pub scrape_metrics_ms: u64,
    /// The daemon's `pickup_unlink_threads` (threads unlinking spool files
    /// once queued).
    #[arg(long, default_value_t = 16)]
    pub unlink_threads: usize,
    /// Run the bench `--rounds` times on each io backend, alternating
    /// (io_uring, epoll, epoll, io_uring, ...), and print throughput and
    /// the daemon's CPU per message for each with their medians.
    #[arg(long)]
    pub compare_backends: bool,
    /// Runs per backend with `--compare-backends`.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Run the daemon with `--verbose` (debug lines in its log; with
    /// `--keep`, for looking at what the scheduler did).
    #[arg(long)]
    pub daemon_verbose: bool,
    /// Write delivery events (`[events]`, the file only, fsync per batch)
    /// during the run, to measure what they cost.
    #[arg(long)]
    pub events: bool,
    /// The bundled sink waits this many milliseconds before each reply (a
    /// receiver that far away); with `--scenario`, every provider's
    /// latency.
    #[arg(long)]
    pub sink_latency_ms: Option<u64>,
    /// The bundled sink answers each batch of pipelined commands this many
    /// milliseconds after it arrived, once per batch (a receiver this
    /// round trip away over the network, where `--sink-latency-ms` is a
    /// server that thinks before every reply).
    #[arg(long, conflicts_with = "sink_latency_ms")]
    pub sink_rtt_ms: Option<u64>,
    /// Run a provider scenario (TOML; see tools/scenarios/providers.toml):
    /// one sink per provider on its own 127.0.0.x address, a loopback DNS
    /// server for the recipient domains, the scenario's message count and
    /// mix. `--messages`, `--size`, `--recipients`, `--domains`, `--via`
    /// and `--sink` do not apply.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// With `--scenario`: run nothing; write the scenario's messages
    /// (`messages/m<N>.eml`) and a Postfix configuration for it
    /// (`postfix/transport`, `postfix/main.cf`, `postfix/master.cf`, for
    /// listeners on `--export-port`) into this directory, for
    /// tools/compare_scenario.sh.
    #[arg(long, value_name = "DIR", requires = "scenario")]
    pub export: Option<PathBuf>,
    /// With `--export`: the port of the scenario's listeners
    /// (`ringmail sink --scenario FILE --port N`).
    #[arg(long, default_value_t = 2525)]
    pub export_port: u16,
}

/// What a run measured.
#[derive(Debug, serde::Serialize)]
pub(super) struct Report {
    pub(super) messages: usize,
    recipients: u64,
    bytes: u64,
    seconds: f64,
    pub(super) messages_per_second: f64,
    recipients_per_second: f64,
    megabytes_per_second: f64,
    latency_p50_ms: Option<f64>,
    latency_p90_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_max_ms: Option<f64>,
    pub(super) lost: u64,
    pub(super) duplicates: u64,
    pub(super) daemon_cpu_seconds: f64,
    /// The daemon's CPU in user space and in the kernel, seconds.
    pub(super) daemon_cpu: super::bench_threads::Cpu,
    /// The daemon's CPU by thread group (`bench_threads.rs`), seconds.
    pub(super) daemon_cpu_by_thread: std::collections::BTreeMap<String, super::bench_threads::Cpu>,
    pub(super) io_backend: String,
    shards: usize,
    via: String,
    max_concurrent_connections: u64,
    /// Connections the bundled sink accepted during the run: well above
    /// the most open at once means connections were closed and opened
    /// again.
    connections_opened: u64,
    /// `smtp_transaction_chaining` of the run.
    chaining: String,
    /// The bundled sink refused commands pipelined after the end of DATA.
    strict_pipelining: bool,
    /// Commands the sink refused as pipelined after the end of DATA.
    pipelined_after_data: u64,
    /// `--via campaign`: seconds until the campaign was durably queued.
    campaign_accept_seconds: Option<f64>,
    /// `--via campaign`: queue bytes per recipient (records, padding).
    queue_bytes_per_recipient: Option<f64>,
    /// `--scrape-metrics-ms`: scrapes of `/metrics` answered during the run.
    metrics_scrapes: Option<u64>,
    /// `--events`: delivery events in the events file after the run.
    events_written: Option<u64>,
    /// `--dkim`: the keys messages were signed with.
    dkim: String,
    /// `--dkim`: messages per second this machine's cores can sign.
    dkim_machine_sign_rate: Option<f64>,
    /// The daemon's peak resident memory, MB.
    daemon_peak_rss_mb: Option<f64>,
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Runs the benchmark; returns the process exit code.
pub fn run(args: BenchArgs) -> anyhow::Result<u8> {
    if let Some(file) = &args.scenario {
        return super::bench_scenario::run(&args, file);
    }
    if args.compare_backends {
        return super::bench_backends::run(&args);
    }
    let report = run_once(&args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.lost == 0 && report.duplicates == 0 {
        0
    } else {
        1
    })
}

/// One bench run as `args` describe it: its report (not printed).
pub(super) fn run_once(args: &BenchArgs) -> anyhow::Result<Report> {
    let args = args.clone();
    if args.messages == 0 || args.recipients == 0 || args.domains == 0 {
        bail!("--messages, --recipients and --domains must be at least 1");
    }
    if let Some(addr) = args.sink {
        if !addr.ip().is_loopback() {
            bail!("--sink must be a loopback address (127.0.0.0/8 or ::1): benchmarks never send elsewhere");
        }
    }
    // Injection time per message index, and latency samples filled by the
    // sink's accept hook.
    let injected: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; args.messages]));
    let latencies: Arc<Mutex<Histogram<u64>>> = Arc::new(Mutex::new(
        Histogram::new_with_bounds(1, 3_600_000_000, 3).context("histogram")?,
    ));
    let bundled = match args.sink {
        Some(_) => None,
        None => {
            let injected = Arc::clone(&injected);
            let latencies = Arc::clone(&latencies);
            let hook: sink::AcceptHook = Arc::new(move |a: &sink::Accepted<'_>| {
                let Some(i) = a.message_id.and_then(bench_index) else {
                    return;
                };
                let at =
                    a.at.duration_since(UNIX_EPOCH)
                        .map(|d| d.as_micros() as u64)
                        .unwrap_or(0);
                let sent = injected
                    .lock()
                    .ok()
                    .and_then(|v| v.get(i).copied())
                    .unwrap_or(0);
                if sent > 0 {
                    if let Ok(mut h) = latencies.lock() {
                        let _ = h.record(at.saturating_sub(sent).max(1));
                    }
                }
            });
            let cfg = SinkConfig {
                listen: "127.0.0.1:0".parse().context("sink address")?,
                on_accept: Some(hook),
                threads: 1,
                strict_pipelining: args.strict_pipelining,
                latency: match (args.sink_latency_ms, args.sink_rtt_ms) {
                    (Some(ms), _) if ms > 0 => sink::Latency::Fixed(Duration::from_millis(ms)),
                    (_, Some(ms)) if ms > 0 => sink::Latency::RoundTrip(Duration::from_millis(ms)),
                    _ => sink::Latency::None,
                },
                ..SinkConfig::default()
            };
            Some(sink::start(cfg).context("starting the bundled sink")?)
        }
    };
    let sink_addr = args
        .sink
        .or(bundled.as_ref().map(|s| s.local_addr))
        .context("no sink")?;

    let dir = tempfile::Builder::new()
        .prefix("ringmail-bench.")
        .tempdir_in(&args.workdir)
        .with_context(|| format!("creating a work directory in {}", args.workdir.display()))?;
    let spool = dir.path().join("spool");
    let smtp_port = if args.via == Via::Smtp {
        Some(
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        )
    } else {
        None
    };
    // Measured before the daemon starts, so nothing competes for the cores.
    let sign_rate = super::bench_dkim::machine_sign_rate(args.dkim, args.size)?;
    let dkim_tables = super::bench_dkim::config_tables(args.dkim, dir.path())?;
    let http_port = if args.scrape_metrics_ms > 0 {
        Some(
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        )
    } else {
        None
    };
    let http_table = http_port
        .map(|p| format!("[http]\nlisten = \"127.0.0.1:{p}\"\n"))
        .unwrap_or_default();
    let events_table = if args.events { "[events]\n" } else { "" };
    let config = dir.path().join("ringmail.toml");
    std::fs::write(
        &config,
        format!(
            "spool_dir = {spool:?}\nmyhostname = \"bench.localhost\"\nrelayhost = \"[{}]:{}\"\nshards = {}\nio_backend = {:?}\npickup_settle_ms = 0\npickup_interval_ms = 50\nminimal_backoff_time = 1\nmaximal_backoff_time = 5\nsmtp_transaction_chaining = {:?}\ndkim_signing_threads = {}\npickup_unlink_threads = {}\n",
            sink_addr.ip(),
            sink_addr.port(),
            args.shards,
            args.io_backend,
            args.chaining,
            args.dkim_threads,
            args.unlink_threads
        ) + &super::bench_smtp::listener_table(smtp_port)
            + &dkim_tables
            + &http_table
            + events_table,
    )?;
    let exe = std::env::current_exe().context("locating the ringmail binary")?;
    let log = std::fs::File::create(dir.path().join("daemon.log"))?;
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
    let scraper =
        http_port.map(|port| super::bench_dkim::Scraper::start(port, args.scrape_metrics_ms));
    let result = drive(
        &args,
        &exe,
        &config,
        &spool,
        &mut daemon,
        &injected,
        &latencies,
        bundled.as_ref(),
        dir.path(),
        smtp_port,
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
    if let Some(s) = bundled {
        s.shutdown();
    }
    let events_written = args.events.then(|| count_events(&spool));
    if args.keep {
        let kept = dir.keep();
        eprintln!("kept {}", kept.display());
    }
    let scrapes = scraper.map(super::bench_dkim::Scraper::stop);
    let mut report = result?;
    report.metrics_scrapes = scrapes;
    report.events_written = events_written;
    report.dkim_machine_sign_rate = sign_rate.map(|(rate, _)| rate);
    Ok(report)
}

/// The message index encoded in a bench Message-ID (`<bench.N@ringmail.bench>`).
pub(super) fn bench_index(message_id: &str) -> Option<usize> {
    if let Some(i) = super::bench_campaign::index(message_id) {
        return Some(i);
    }
    message_id
        .trim_matches(|c| c == '<' || c == '>')
        .strip_prefix("bench.")?
        .split('@')
        .next()?
        .parse()
        .ok()
}

fn message(i: usize, args: &BenchArgs) -> Vec<u8> {
    let to: Vec<String> = (0..args.recipients)
        .map(|r| format!("user{i}.{r}@d{}.bench.example", (i + r) % args.domains))
        .collect();
    let mut m = format!(
        "From: Bench <sender@bench.example>\nTo: {}\nSubject: ringmail bench {i}\nMessage-ID: <bench.{i}@ringmail.bench>\n\n",
        to.join(", ")
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog; ringmail benchmark body line.\n";
    while m.len() < args.size {
        m.extend_from_slice(line);
    }
    m
}

#[allow(clippy::too_many_arguments)]
fn drive(
    args: &BenchArgs,
    exe: &Path,
    config: &Path,
    spool: &Path,
    daemon: &mut Child,
    injected: &Mutex<Vec<u64>>,
    latencies: &Mutex<Histogram<u64>>,
    bundled: Option<&sink::SinkHandle>,
    workdir: &Path,
    smtp_port: Option<u16>,
) -> anyhow::Result<Report> {
    // Wait for the daemon to be up (it creates the control socket).
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
    let tty = std::io::stderr().is_terminal() && !args.json;
    let total = args.messages;
    // Spool path: write every file into a staging directory on the same file
    // system first (untimed), then hand them over by renaming into pickup/
    // during the run, as a producer that writes and renames would. Creating
    // files while the daemon unlinks others in the same directory is slow on
    // ext4 and would measure the benchmark's own writer.
    let staging = workdir.join("staging");
    let list = workdir.join("campaign.csv");
    let template = super::bench_campaign::template(args.size);
    if args.via == Via::Campaign {
        if args.recipients != 1 {
            bail!("--via campaign sends one message per recipient: leave --recipients at 1");
        }
        super::bench_campaign::write_list(&list, total)?;
        while !spool.join("campaign.sock").exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut campaign_accept_seconds = None;
    let mut queue_bytes_per_recipient = None;
    if args.via == Via::Spool {
        std::fs::create_dir_all(&staging)?;
        for i in 0..total {
            std::fs::write(staging.join(format!("bench{i}.eml")), message(i, args))?;
        }
    }
    let threads_before = super::bench_threads::snapshot(daemon.id());
    let total_before = super::bench_threads::process_total(daemon.id());
    let start = Instant::now();
    match args.via {
        Via::Spool => {
            let pickup = spool.join("pickup");
            for i in 0..total {
                let name = format!("bench{i}.eml");
                if let Ok(mut v) = injected.lock() {
                    v[i] = micros_now();
                }
                std::fs::rename(staging.join(&name), pickup.join(&name))?;
            }
        }
        Via::Campaign => {
            let accepted = super::bench_campaign::send(spool, &template, &list, total)?;
            campaign_accept_seconds = Some(accepted.seconds);
            let now = micros_now();
            if let Ok(mut v) = injected.lock() {
                v.iter_mut().for_each(|t| *t = now);
            }
            queue_bytes_per_recipient = Some(
                super::bench_campaign::queue_bytes(&spool.join("queue"))? as f64 / total as f64,
            );
        }
        Via::Smtp => {
            let port = smtp_port.context("no listener port")?;
            super::bench_smtp::inject(port, total, args.smtp_sessions, injected, |i| {
                message(i, args)
            })?;
        }
        Via::Sendmail => {
            // The command users install as /usr/sbin/sendmail: the lean
            // `ringmail-sendmail` beside this binary, else `ringmail sendmail`.
            let lean = args
                .sendmail
                .clone()
                .unwrap_or_else(|| exe.with_file_name("ringmail-sendmail"));
            let (program, sub): (&Path, &[&str]) = if lean.is_file() {
                (&lean, &[])
            } else if args.sendmail.is_some() {
                bail!("--sendmail {}: no such file", lean.display());
            } else {
                (exe, &["sendmail"])
            };
            eprintln!(
                "bench: injecting with {} {}",
                program.display(),
                sub.join(" ")
            );
            let mut running: Vec<Child> = Vec::new();
            for i in 0..total {
                while running.len() >= args.sendmail_parallel.max(1) {
                    let mut still = Vec::new();
                    for mut c in running.drain(..) {
                        match c.try_wait()? {
                            Some(s) if !s.success() => bail!("sendmail exited {s}"),
                            Some(_) => {}
                            None => still.push(c),
                        }
                    }
                    running = still;
                    if running.len() >= args.sendmail_parallel.max(1) {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                if let Ok(mut v) = injected.lock() {
                    v[i] = micros_now();
                }
                let mut c = Command::new(program)
                    .args(sub)
                    .args(["-t", "-i", "-C"])
                    .arg(config)
                    .stdin(Stdio::piped())
                    .spawn()?;
                if let Some(mut stdin) = c.stdin.take() {
                    stdin.write_all(&message(i, args))?;
                }
                running.push(c);
            }
            for mut c in running {
                let s = c.wait()?;
                if !s.success() {
                    bail!("sendmail exited {s}");
                }
            }
        }
    }
    let expected = (total * args.recipients) as u64;
    // With the bundled sink, the sink counts; with an external one (--sink),
    // the daemon's `status=sent` log lines do.
    let mut from_log = LogCounter::new(workdir.join("daemon.log"));
    let mut snapshot = || match bundled {
        Some(s) => s.stats(),
        None => {
            let sent = from_log.poll();
            sink::SinkSnapshot {
                recipients: sent,
                unique_message_ids: if sent >= expected { total as u64 } else { 0 },
                ..sink::SinkSnapshot::default()
            }
        }
    };
    let mut last_progress = (0u64, Instant::now());
    let final_snap = loop {
        let snap = snapshot();
        if tty {
            eprint!(
                "\r  delivered {}/{} recipients, {:.1} s",
                snap.recipients,
                expected,
                start.elapsed().as_secs_f64()
            );
        }
        if snap.recipients >= expected && snap.unique_message_ids as usize >= total {
            break snap;
        }
        if snap.recipients != last_progress.0 {
            last_progress = (snap.recipients, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(args.stall_timeout) {
            if tty {
                eprintln!();
            }
            eprintln!(
                "no progress for {} s; see {}",
                args.stall_timeout,
                workdir.join("daemon.log").display()
            );
            break snap;
        }
        if let Some(status) = daemon.try_wait()? {
            bail!("daemon exited during the run ({status})");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = start.elapsed().as_secs_f64();
    if tty {
        eprintln!();
    }
    let total_after = super::bench_threads::process_total(daemon.id());
    let daemon_cpu_by_thread = super::bench_threads::by_group(
        &threads_before,
        &super::bench_threads::snapshot(daemon.id()),
        total_before,
        total_after,
    );
    let daemon_cpu = super::bench_threads::Cpu {
        user: total_after.user - total_before.user,
        system: total_after.system - total_before.system,
    };
    let cpu = daemon_cpu.user + daemon_cpu.system;
    let daemon_peak_rss_mb = super::bench_campaign::peak_rss_mb(daemon.id());
    let log = std::fs::read_to_string(workdir.join("daemon.log")).unwrap_or_default();
    let backend = log
        .split("io backend ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("unknown")
        .to_string();
    let shards = log
        .split(", ")
        .find_map(|s| s.strip_suffix(" shards").and_then(|n| n.parse().ok()))
        .unwrap_or(args.shards);
    let (seen, duplicates) = match bundled {
        Some(b) => {
            let counts: HashMap<String, u32> = b.message_id_counts();
            let seen = counts.keys().filter_map(|k| bench_index(k)).count() as u64;
            let dups: u64 = counts
                .iter()
                .filter(|(k, _)| bench_index(k).is_some())
                .map(|(_, &n)| u64::from(n.saturating_sub(1)))
                .sum();
            (seen, dups)
        }
        // External sink: per recipient, from the daemon's log (one
        // `status=sent` line per recipient delivered).
        None => {
            let k = args.recipients as u64;
            let sent = final_snap.recipients;
            (
                (sent / k).min(total as u64),
                sent.saturating_sub(expected) / k,
            )
        }
    };
    let h = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("latency lock poisoned"))?;
    // Latency is only known where the accept hook runs: the bundled sink.
    let known = bundled.is_some() && !h.is_empty();
    let ms = |q: f64| known.then(|| h.value_at_quantile(q) as f64 / 1000.0);
    Ok(Report {
        messages: total,
        recipients: final_snap.recipients,
        bytes: final_snap.bytes,
        seconds,
        messages_per_second: total as f64 / seconds,
        recipients_per_second: final_snap.recipients as f64 / seconds,
        megabytes_per_second: final_snap.bytes as f64 / seconds / 1e6,
        latency_p50_ms: ms(0.5),
        latency_p90_ms: ms(0.9),
        latency_p99_ms: ms(0.99),
        latency_max_ms: (bundled.is_some() && !h.is_empty()).then(|| h.max() as f64 / 1000.0),
        lost: (total as u64).saturating_sub(seen),
        duplicates,
        daemon_cpu_seconds: cpu,
        daemon_cpu,
        daemon_cpu_by_thread,
        io_backend: backend,
        shards,
        via: format!("{:?}", args.via).to_lowercase(),
        max_concurrent_connections: final_snap.max_concurrent_connections,
        connections_opened: final_snap.connections,
        chaining: args.chaining.clone(),
        strict_pipelining: args.strict_pipelining,
        pipelined_after_data: final_snap.pipelined_after_data,
        campaign_accept_seconds,
        queue_bytes_per_recipient,
        metrics_scrapes: None,
        events_written: None,
        dkim: format!("{:?}", args.dkim).to_lowercase(),
        dkim_machine_sign_rate: None,
        daemon_peak_rss_mb,
    })
}

/// User + system CPU seconds of a process so far (Linux /proc).
pub(super) fn process_cpu_seconds(pid: u32) -> f64 {
    let cpu = super::bench_threads::process_total(pid);
    cpu.user + cpu.system
}

fn print_report(r: &Report) {
    println!(
        "ringmail bench: {} messages × {} recipient(s), via {}, {} shards, io backend {}, chaining {}{}",
        r.messages,
        r.recipients / r.messages.max(1) as u64,
        r.via,
        r.shards,
        r.io_backend,
        r.chaining,
        if r.strict_pipelining {
            " (sink refuses commands pipelined after end of data)"
        } else {
            ""
        }
    );
    println!("  time            {:.2} s", r.seconds);
    println!(
        "  throughput      {:.0} messages/s, {:.0} recipients/s, {:.1} MB/s",
        r.messages_per_second, r.recipients_per_second, r.megabytes_per_second
    );
    match (r.latency_p50_ms, r.latency_p90_ms, r.latency_p99_ms, r.latency_max_ms) {
        (Some(p50), Some(p90), Some(p99), Some(max)) => println!(
            "  latency         p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (injection to sink acceptance)"
        ),
        _ => println!("  latency         n/a (only measured with the bundled sink)"),
    }
    println!(
        "  daemon CPU      {:.2} s ({:.0} µs per message){}",
        r.daemon_cpu_seconds,
        r.daemon_cpu_seconds * 1e6 / r.messages.max(1) as f64,
        r.daemon_peak_rss_mb
            .map(|m| format!(", peak RSS {m:.0} MB"))
            .unwrap_or_default()
    );
    let per = |s: f64| s * 1e6 / r.messages.max(1) as f64;
    println!(
        "  daemon CPU by thread (µs per message, user + kernel): {}",
        r.daemon_cpu_by_thread
            .iter()
            .filter(|(_, c)| per(c.user + c.system) >= 0.05)
            .map(|(g, c)| format!(
                "{g} {:.1} ({:.1} + {:.1})",
                per(c.user + c.system),
                per(c.user),
                per(c.system)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(n) = r.events_written {
        println!("  events          {n} delivery events written to the events file");
    }
    if let Some(n) = r.metrics_scrapes {
        println!("  metrics         /metrics scraped {n} times during the run");
    }
    if let Some(rate) = r.dkim_machine_sign_rate {
        println!(
            "  dkim            {} signing: this machine's cores sign {rate:.0} messages/s; this run {:.0} messages/s = {:.0}% of that",
            r.dkim,
            r.messages_per_second,
            100.0 * r.messages_per_second / rate.max(1.0)
        );
    }
    if let (Some(a), Some(b)) = (r.campaign_accept_seconds, r.queue_bytes_per_recipient) {
        println!("  campaign        accepted (durable, sealed) in {a:.2} s; {b:.1} queue bytes per recipient");
    }
    if r.latency_p50_ms.is_some() {
        println!(
            "  connections     {} opened, at most {} at once at the sink",
            r.connections_opened, r.max_concurrent_connections
        );
        if r.strict_pipelining {
            println!(
                "  refused         {} commands pipelined after end of data (each retried unchained)",
                r.pipelined_after_data
            );
        }
        println!("  lost {}, delivered twice {}", r.lost, r.duplicates);
    } else {
        println!(
            "  lost {}, delivered twice {} (external sink: counted from the daemon's status=sent lines; bytes and connections not measured)",
            r.lost, r.duplicates
        );
    }
}

/// Counts `status=sent` lines in the daemon's log as it grows.
struct LogCounter {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    sent: u64,
}

impl LogCounter {
    fn new(path: PathBuf) -> LogCounter {
        LogCounter {
            path,
            offset: 0,
            partial: Vec::new(),
            sent: 0,
        }
    }

    /// Reads what was appended since the last call; returns the total count.
    fn poll(&mut self) -> u64 {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return self.sent;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return self.sent;
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
        let needle = b"status=sent ";
        self.sent += self.partial[..complete]
            .split(|&b| b == b'\n')
            .filter(|line| line.windows(needle.len()).any(|w| w == needle))
            .count() as u64;
        self.partial.drain(..complete);
        self.sent
    }
}

/// Lines in the events file and its rotations under `spool/events/`.
fn count_events(spool: &Path) -> u64 {
    let Ok(dir) = std::fs::read_dir(spool.join("events")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("events.jsonl") && !name.ends_with(".cursor")
        })
        .filter_map(|e| std::fs::read(e.path()).ok())
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_counter_counts_sent_lines_across_partial_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut c = LogCounter::new(path.clone());
        assert_eq!(c.poll(), 0);
        std::fs::write(
            &path,
            "a: status=sent (250 ok)\nb: status=deferred (x)\nc: status=se",
        )
        .unwrap();
        assert_eq!(c.poll(), 1);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"nt (250 ok)\n").unwrap();
        assert_eq!(c.poll(), 2);
    }

    #[test]
    fn bench_ids_parse() {
        assert_eq!(bench_index("<bench.42@ringmail.bench>"), Some(42));
        assert_eq!(bench_index("other@x"), None);
    }
}

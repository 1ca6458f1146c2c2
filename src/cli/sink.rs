//! `ringmail sink`: the bundled SMTP receiver in the foreground, for tests
//! and benchmarks. Binds loopback by default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringmail::sink::{run_foreground, tls_server_config, Faults, Latency, RateLimit, SinkConfig};

/// The sink's flags.
#[derive(Clone, Debug, clap::Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2526")]
    pub listen: SocketAddr,
    /// Write every accepted message into this directory.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Do not announce PIPELINING.
    #[arg(long)]
    pub no_pipelining: bool,
    /// Refuse EHLO (502): HELO only, like an old receiver.
    #[arg(long)]
    pub helo_only: bool,
    /// Answer 421 to connections beyond this many.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// The reply to connections beyond --max-connections, a whole line
    /// (`421 4.7.0 text`).
    #[arg(long, value_name = "REPLY")]
    pub connection_reply: Option<String>,
    /// Accept at most this many transactions per second (a token bucket
    /// checked at MAIL); more get --throttle-reply.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<f64>,
    /// The bucket size of --rate-limit (default: one second's worth).
    #[arg(long, requires = "rate_limit")]
    pub burst: Option<f64>,
    /// The reply to a MAIL over --rate-limit, a whole line (a 421 also
    /// closes the connection).
    #[arg(long, value_name = "REPLY", requires = "rate_limit")]
    pub throttle_reply: Option<String>,
    /// Serve a provider scenario instead (tools/scenarios/providers.toml):
    /// one listener per provider on its own 127.0.0.x address and --port,
    /// with its caps, plus a loopback DNS server on 127.0.0.1:--dns-port
    /// for the scenario's domains. The other flags do not apply.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// With --scenario: the listeners' port (0: any free one).
    #[arg(long, default_value_t = 0, requires = "scenario")]
    pub port: u16,
    /// With --scenario: the DNS server's UDP and TCP port (0: any free one).
    #[arg(long, default_value_t = 0, requires = "scenario")]
    pub dns_port: u16,
    /// Probability of 4xx at RCPT.
    #[arg(long, default_value_t = 0.0)]
    pub rcpt_tempfail: f64,
    /// Probability of 5xx at RCPT.
    #[arg(long, default_value_t = 0.0)]
    pub rcpt_permfail: f64,
    /// Probability of 4xx after DATA.
    #[arg(long, default_value_t = 0.0)]
    pub data_tempfail: f64,
    /// Probability of 5xx after DATA.
    #[arg(long, default_value_t = 0.0)]
    pub data_permfail: f64,
    /// Probability per transaction of answering 421 and closing.
    #[arg(long, default_value_t = 0.0)]
    pub disconnect: f64,
    /// Delay before every reply, in milliseconds: `N` or `MIN-MAX` (uniform).
    #[arg(long)]
    pub latency_ms: Option<String>,
    /// Announced and enforced SIZE limit in bytes.
    #[arg(long)]
    pub size_limit: Option<u64>,
    /// Seed for the fault and latency dice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print statistics every N seconds (0 = only at the end).
    #[arg(long, default_value_t = 5)]
    pub stats_every: u64,
    /// Offer STARTTLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Announce STARTTLS, answer 220, then send garbage and close instead
    /// of a TLS handshake (to test a client's fallback).
    #[arg(long)]
    pub tls_broken: bool,
    /// Require AUTH PLAIN or LOGIN with these credentials before MAIL
    /// (offered over TLS only, unless --auth-plaintext).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = credentials)]
    pub auth: Option<(String, String)>,
    /// Offer and accept AUTH without TLS too.
    #[arg(long)]
    pub auth_plaintext: bool,
    /// Answer 503 to every command pipelined after the end of DATA (sent
    /// before the reply to the final dot), as Haraka does.
    #[arg(long)]
    pub strict_pipelining: bool,
}

/// Parses `USER:PASSWORD` (the password may contain colons).
fn credentials(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_string(), password.to_string())),
        _ => Err("expected USER:PASSWORD".to_string()),
    }
}

fn latency(spec: Option<&str>) -> anyhow::Result<Latency> {
    let Some(spec) = spec else {
        return Ok(Latency::None);
    };
    let ms = |s: &str| -> anyhow::Result<Duration> {
        Ok(Duration::from_millis(
            s.trim()
                .parse()
                .with_context(|| format!("bad latency {spec:?}"))?,
        ))
    };
    Ok(match spec.split_once('-') {
        Some((a, b)) => Latency::Uniform(ms(a)?, ms(b)?),
        None => Latency::Fixed(ms(spec)?),
    })
}

/// Runs the sink until SIGINT/SIGTERM; prints the final counters as JSON.
pub fn run(args: SinkArgs) -> anyhow::Result<()> {
    if let Some(file) = &args.scenario {
        return run_scenario(file, args.port, args.dns_port, args.stats_every);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_server_config(cert, key)?),
        _ => None,
    };
    let config = SinkConfig {
        listen: args.listen,
        pipelining: !args.no_pipelining,
        esmtp: !args.helo_only,
        max_connections: args.max_connections,
        connection_cap_reply: args.connection_reply,
        rate_limit: args.rate_limit.map(|rate| {
            let mut limit = RateLimit::per_second(rate);
            if let Some(burst) = args.burst {
                limit.burst = burst;
            }
            if let Some(reply) = args.throttle_reply {
                limit.reply = reply;
            }
            limit
        }),
        faults: Faults {
            rcpt_tempfail: args.rcpt_tempfail,
            rcpt_permfail: args.rcpt_permfail,
            data_tempfail: args.data_tempfail,
            data_permfail: args.data_permfail,
            disconnect_421: args.disconnect,
            tls_broken: args.tls_broken,
        },
        latency: latency(args.latency_ms.as_deref())?,
        seed: args.seed,
        dump_dir: args.dump,
        max_message_size: args.size_limit,
        threads: args.threads.max(1),
        tls,
        auth: args.auth,
        auth_plaintext: args.auth_plaintext,
        strict_pipelining: args.strict_pipelining,
        ..SinkConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let every = (args.stats_every > 0).then(|| Duration::from_secs(args.stats_every));
    run_foreground(config, stop, every)?;
    Ok(())
}

/// `ringmail sink --scenario`: every provider's listener and the DNS
/// server until SIGINT/SIGTERM. Prints `provider NAME ADDR` lines and
/// `dns ADDR` to stderr once listening, a statistics line per provider every
/// `stats_every` seconds, and at the end one JSON object per provider on
/// stdout (`{"provider": NAME, ...counters}`).
fn run_scenario(
    file: &std::path::Path,
    port: u16,
    dns_port: u16,
    stats_every: u64,
) -> anyhow::Result<()> {
    use ringmail::sink::dns::DnsServer;
    use ringmail::sink::scenario::Scenario;
    use std::sync::atomic::Ordering;

    let scenario = Scenario::load(file)?;
    let (sinks, port) = scenario.start_sinks(port)?;
    let dns = DnsServer::start(scenario.zone()?, dns_port).context("starting the DNS server")?;
    for (p, s) in scenario.providers.iter().zip(&sinks) {
        eprintln!("provider {} {}", p.name, s.local_addr);
    }
    eprintln!("port {port}");
    eprintln!("dns {}", dns.addr);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if stats_every > 0 && last.elapsed() >= Duration::from_secs(stats_every) {
            last = std::time::Instant::now();
            for (p, s) in scenario.providers.iter().zip(&sinks) {
                let n = s.stats();
                eprintln!(
                    "sink {}: {} msgs, conns max {} served {} refused, {} throttled, max {}/s",
                    p.name,
                    n.messages,
                    n.max_served_connections,
                    n.refused_connections,
                    n.throttled,
                    n.max_messages_per_second
                );
            }
        }
    }
    drop(dns);
    for (p, s) in scenario.providers.iter().zip(sinks) {
        let snap = s.shutdown();
        let mut json = serde_json::to_value(&snap)?;
        if let Some(o) = json.as_object_mut() {
            o.insert("provider".into(), serde_json::Value::String(p.name.clone()));
        }
        println!("{json}");
    }
    Ok(())
}

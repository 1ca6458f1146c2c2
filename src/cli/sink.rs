//! `ringmail sink`: the bundled SMTP receiver in the foreground, for tests
//! and benchmarks. Binds loopback by default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringmail::sink::{run_foreground, tls_server_config, Faults, Latency, SinkConfig};

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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_server_config(cert, key)?),
        _ => None,
    };
    let config = SinkConfig {
        listen: args.listen,
        pipelining: !args.no_pipelining,
        esmtp: !args.helo_only,
        max_connections: args.max_connections,
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

//! `ringmail bench --dkim ALG`: signing keys for the run, and how many
//! messages this machine's cores can sign per second (the ceiling a signed
//! run is measured against); and `--scrape-metrics-ms`, a Prometheus-like
//! scraper of the daemon's `/metrics` during the run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use ringmail::config::{DkimAlgorithm, DkimKeyConfig};
use ringmail::sign::{keygen, PrivateKey, Signers};

/// Which keys a benchmark signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchDkim {
    /// No signing.
    None,
    /// Ed25519.
    Ed25519,
    /// RSA, 2048 bits.
    Rsa2048,
    /// Both at once (dual signing).
    Dual,
}

impl BenchDkim {
    fn algorithms(self) -> Vec<DkimAlgorithm> {
        match self {
            BenchDkim::None => vec![],
            BenchDkim::Ed25519 => vec![DkimAlgorithm::Ed25519Sha256],
            BenchDkim::Rsa2048 => vec![DkimAlgorithm::RsaSha256],
            BenchDkim::Dual => vec![DkimAlgorithm::RsaSha256, DkimAlgorithm::Ed25519Sha256],
        }
    }
}

/// The domain the bench's messages come from.
const DOMAIN: &str = "bench.example";

/// Writes the keys into `dir` and returns the `[[dkim]]` tables for the
/// daemon's configuration (empty for `none`).
pub fn config_tables(dkim: BenchDkim, dir: &Path) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, alg) in dkim.algorithms().into_iter().enumerate() {
        let path = dir.join(format!("dkim-{i}.pem"));
        let pem = keygen::generate(alg, 2048)?;
        keygen::write_key(&path, &pem)?;
        out.push_str(&format!(
            "[[dkim]]\ndomain = \"{DOMAIN}\"\nselector = \"bench{i}\"\nkey_file = {:?}\n",
            path.display().to_string()
        ));
    }
    Ok(out)
}

/// Messages per second the machine can sign: every core signing the same
/// message for a second at once, summed. `None` without signing.
pub fn machine_sign_rate(dkim: BenchDkim, size: usize) -> anyhow::Result<Option<(f64, usize)>> {
    let algs = dkim.algorithms();
    if algs.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for (i, alg) in algs.into_iter().enumerate() {
        let pem = keygen::generate(alg, 2048)?;
        let key = PrivateKey::from_pem(pem.as_bytes()).map_err(|e| anyhow::anyhow!(e))?;
        let config = DkimKeyConfig {
            domain: DOMAIN.into(),
            selector: format!("bench{i}"),
            key_file: "unused".into(),
            algorithm: None,
            headers: None,
            oversign_headers: None,
            canonicalization: Default::default(),
            from_domains: None,
            expire: 0,
        };
        keys.push((config, key));
    }
    let signers = Signers::from_keys(keys).context("bench keys")?;
    let mut wire = format!(
        "From: Bench <sender@{DOMAIN}>\r\nTo: r@example.net\r\nSubject: sign rate\r\nMessage-ID: <rate@{DOMAIN}>\r\n\r\n"
    )
    .into_bytes();
    while wire.len() < size {
        wire.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog, again and again.\r\n",
        );
    }
    // Every core signing at once, as in the run (two vCPUs may share a
    // physical core: one core's rate times the cores would overstate it).
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let signers = std::sync::Arc::new(signers);
    let wire = std::sync::Arc::new(wire);
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let signers = std::sync::Arc::clone(&signers);
            let wire = std::sync::Arc::clone(&wire);
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < Duration::from_millis(1000) {
                    if signers.sign(&wire).is_err() {
                        break;
                    }
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    let mut rate = 0.0;
    for t in threads {
        rate += t
            .join()
            .map_err(|_| anyhow::anyhow!("a signing thread panicked"))?;
    }
    Ok(Some((rate, cores)))
}

/// Scrapes `http://127.0.0.1:PORT/metrics` every `every` milliseconds on a
/// thread of its own until stopped.
pub struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Scraper {
    /// Starts scraping.
    pub fn start(port: u16, every: u64) -> Scraper {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut answered = 0u64;
            let mut body = Vec::with_capacity(16 * 1024);
            while !flag.load(Ordering::Acquire) {
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(
                        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                    );
                    body.clear();
                    if s.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                        answered += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(every));
            }
            answered
        });
        Scraper { stop, thread }
    }

    /// Stops; the number of scrapes answered 200.
    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().unwrap_or(0)
    }
}

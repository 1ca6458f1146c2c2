//! Haraka (from the npm registry, installed into `tests/haraka/` by
//! `.ci/run` with `npm ci --prefix tests/haraka`) as a real receiver on a
//! loopback port: STARTTLS with a throwaway certificate, and the test
//! plugin `tests/haraka/plugins/ringmail_capture.js`, which accepts every
//! recipient and writes each message (as received, CRLF) and its envelope
//! to a capture directory.
//!
//! Haraka 3.3 refuses every command pipelined after the end of DATA with
//! `503 5.5.1`, which is what makes it a judge of transaction chaining.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The `haraka` launcher of the test install, if it is there.
pub fn haraka_bin() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/haraka/node_modules/.bin/haraka");
    bin.exists().then_some(bin)
}

/// The launcher, or `None` after printing why the test is skipped; panics
/// instead when `RINGMAIL_REQUIRE_HARAKA` is set (CI installs Haraka, so
/// there a missing install is a failure, not a skip).
pub fn haraka_or_skip(test: &str) -> Option<PathBuf> {
    match haraka_bin() {
        Some(b) => Some(b),
        None if std::env::var_os("RINGMAIL_REQUIRE_HARAKA").is_some() => {
            panic!("{test}: Haraka is not installed (npm ci --prefix tests/haraka)")
        }
        None => {
            eprintln!("{test}: skipped: Haraka is not installed (npm ci --prefix tests/haraka)");
            None
        }
    }
}

/// A running Haraka; killed when dropped.
pub struct Haraka {
    child: Child,
    /// Its listening port on 127.0.0.1.
    pub port: u16,
    /// Where the capture plugin writes messages.
    pub capture: PathBuf,
    /// Its instance directory (config, log).
    pub dir: PathBuf,
}

/// One captured message.
#[derive(Clone, Debug, Deserialize)]
pub struct Captured {
    /// Envelope sender (`""` for `<>`).
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpt_to: Vec<String>,
    /// The message arrived over TLS.
    pub tls: bool,
    /// The message as Haraka stored it, its own `Received:` field removed.
    #[serde(skip)]
    pub content: Vec<u8>,
}

impl Haraka {
    /// Starts Haraka `bin` with an instance directory under `root`.
    pub fn start(bin: &Path, root: &Path) -> Haraka {
        let dir = root.join("haraka");
        let config = dir.join("config");
        let plugins = dir.join("plugins");
        let capture = dir.join("capture");
        for d in [&config, &plugins, &capture] {
            fs::create_dir_all(d).expect("mkdir haraka instance");
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/haraka");
        for (from, to) in [
            (src.join("config"), &config),
            (src.join("plugins"), &plugins),
        ] {
            for entry in fs::read_dir(&from).expect("read tests/haraka") {
                let entry = entry.expect("dir entry");
                fs::copy(entry.path(), to.join(entry.file_name())).expect("copy haraka file");
            }
        }
        let cert = super::certs::self_signed(&["localhost", "haraka.test"]);
        fs::write(config.join("tls_cert.pem"), cert.cert_pem()).expect("write cert");
        fs::write(config.join("tls_key.pem"), cert.key_pem()).expect("write key");
        let port = free_port();
        fs::write(
            config.join("smtp.ini"),
            format!("listen=127.0.0.1:{port}\nnodes=0\n"),
        )
        .expect("write smtp.ini");
        let log = fs::File::create(dir.join("haraka.log")).expect("haraka log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&dir)
            .env("RINGMAIL_CAPTURE_DIR", &capture)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start haraka");
        let mut h = Haraka {
            child,
            port,
            capture,
            dir,
        };
        h.wait_ready();
        h
    }

    /// Waits until Haraka greets on its port (node takes a few seconds).
    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("haraka exited ({status}) before listening:\n{}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = [0u8; 256];
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"220") {
                        return;
                    }
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("haraka did not start listening:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Haraka's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("haraka.log")).unwrap_or_default()
    }

    /// How many messages were captured so far.
    pub fn count(&self) -> usize {
        fs::read_dir(&self.capture)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Every captured message.
    pub fn messages(&self) -> Vec<Captured> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.capture)
            .expect("read capture dir")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".eml") else {
                continue;
            };
            let json = fs::read_to_string(self.capture.join(format!("{stem}.json")))
                .expect("envelope of a captured message");
            let mut m: Captured = serde_json::from_str(&json).expect("captured envelope");
            let raw = fs::read(entry.path()).expect("read captured message");
            m.content = strip_received(&raw).to_vec();
            out.push(m);
        }
        out
    }
}

impl Drop for Haraka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// `raw` without the leading `Received:` field Haraka adds (with its
/// continuation lines).
fn strip_received(raw: &[u8]) -> &[u8] {
    if !raw.starts_with(b"Received:") {
        return raw;
    }
    let mut pos = 0;
    loop {
        let Some(lf) = raw[pos..].iter().position(|&b| b == b'\n') else {
            return &raw[raw.len()..];
        };
        pos += lf + 1;
        match raw.get(pos) {
            Some(b' ') | Some(b'\t') => continue,
            _ => return &raw[pos..],
        }
    }
}

//! Shared helpers for the integration tests: a sandboxed spool with its own
//! configuration file, the real `ringmail` binary run as a child process,
//! polling helpers, the `queue list --json` reader and an independent
//! reader of queue segment files (the format of `src/queue/segment.rs` and
//! `src/queue/record.rs`).
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod certs;
pub mod dns;
pub mod haraka;
pub mod postfix;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringmail");

/// How long to wait for anything the daemon should do soon.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How long a daemon may take to exit after SIGTERM.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// The io backends every daemon test runs on.
pub const BACKENDS: [&str; 2] = ["uring", "epoll"];

/// Generates one `#[test]` per io backend for a function `fn name(io: &str)`:
/// `name::uring` and `name::epoll`.
#[macro_export]
macro_rules! daemon_test {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                super::$name("uring");
            }
            #[test]
            fn epoll() {
                super::$name("epoll");
            }
        }
    };
}

/// Polls `cond` until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The configuration keys tests vary. Every sandbox config also sets
/// `myhostname = "mx.example.org"`, `myorigin = "example.org"` and
/// `segment_size = 1048576`; `extra` may add other keys (not these: TOML
/// forbids duplicates).
#[derive(Clone, Debug)]
pub struct Settings {
    pub shards: usize,
    pub pickup_settle_ms: u64,
    pub message_size_limit: u64,
    pub pickup_interval_ms: u64,
    /// The `[dns]` table's servers. The default is a loopback port where
    /// no server answers, so mail without a relay host or route is
    /// deferred ("try again") and no test ever asks a real DNS server.
    pub dns_servers: Vec<String>,
    /// Extra TOML lines appended verbatim.
    pub extra: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            shards: 2,
            pickup_settle_ms: 50,
            message_size_limit: 10_240_000,
            pickup_interval_ms: 50,
            dns_servers: vec!["127.0.0.1:9".into()],
            extra: String::new(),
        }
    }
}

/// A temporary spool with a configuration file pointing at it.
pub struct Sandbox {
    dir: tempfile::TempDir,
    pub spool: PathBuf,
    pub config: PathBuf,
}

impl Sandbox {
    /// A sandbox with the default [`Settings`]. The spool directory itself is
    /// not created: the daemon creates it, or [`Sandbox::make_maildrop`].
    pub fn new() -> Sandbox {
        Sandbox::with(Settings::default())
    }

    /// A sandbox with these settings.
    pub fn with(settings: Settings) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("ringmail-it-")
            .tempdir()
            .expect("temp dir");
        let spool = dir.path().join("spool");
        let config = dir.path().join("ringmail.toml");
        let sb = Sandbox { dir, spool, config };
        sb.write_config(&settings);
        sb
    }

    /// The sandbox's root (holds the config, the spool and anything else).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)writes the configuration file.
    pub fn write_config(&self, s: &Settings) {
        let text = format!(
            "# written by the integration tests\n\
             spool_dir = {spool:?}\n\
             myhostname = \"mx.example.org\"\n\
             myorigin = \"example.org\"\n\
             shards = {shards}\n\
             segment_size = 1048576\n\
             message_size_limit = {limit}\n\
             pickup_interval_ms = {interval}\n\
             pickup_settle_ms = {settle}\n\
             dns = {{ servers = {dns:?}, timeout = 1, attempts = 1 }}\n\
             {extra}\n",
            spool = self.spool.display().to_string(),
            shards = s.shards,
            limit = s.message_size_limit,
            interval = s.pickup_interval_ms,
            settle = s.pickup_settle_ms,
            dns = s.dns_servers,
            extra = s.extra,
        );
        fs::write(&self.config, text).expect("write config");
    }

    pub fn maildrop(&self) -> PathBuf {
        self.spool.join("maildrop")
    }
    pub fn pickup(&self) -> PathBuf {
        self.spool.join("pickup")
    }
    pub fn corrupt(&self) -> PathBuf {
        self.spool.join("corrupt")
    }
    pub fn queue(&self) -> PathBuf {
        self.spool.join("queue")
    }

    /// Creates `spool/maildrop/` so `sendmail` works without ever starting
    /// the daemon.
    pub fn make_maildrop(&self) {
        fs::create_dir_all(self.maildrop()).expect("mkdir maildrop");
    }

    /// A `ringmail` command with a clean environment (no config or io
    /// backend inherited from the caller's environment).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("RINGMAIL_CONFIG").env_remove("RINGMAIL_IO");
        c
    }

    /// Runs `ringmail sendmail -C <config> <args>` with `stdin` as input.
    pub fn sendmail(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = self.cmd();
        c.arg("sendmail").arg("-C").arg(&self.config).args(args);
        run_with_stdin(c, stdin)
    }

    /// `sendmail` that must succeed.
    pub fn sendmail_ok(&self, args: &[&str], stdin: &[u8]) {
        let out = self.sendmail(args, stdin);
        assert_eq!(
            out.status.code(),
            Some(0),
            "sendmail {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ringmail queue list --json --config <config>`, parsed.
    pub fn queue_list(&self) -> Vec<Listed> {
        let out = self
            .cmd()
            .args(["queue", "list", "--json", "--config"])
            .arg(&self.config)
            .output()
            .expect("run queue list");
        assert!(
            out.status.success(),
            "queue list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("queue list output is UTF-8")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// `ringmail queue flush --config <config>`: asks the running daemon
    /// to retry deferred mail now.
    pub fn flush(&self) -> Output {
        self.cmd()
            .args(["queue", "flush", "--config"])
            .arg(&self.config)
            .output()
            .expect("run queue flush")
    }

    /// How many times each recipient address appears in the queue listing.
    pub fn recipient_counts(&self) -> BTreeMap<String, usize> {
        recipient_counts(&self.queue_list())
    }

    /// Starts `ringmail serve` on the `io` backend and waits until it has
    /// started (lock taken, control socket bound).
    pub fn start_daemon(&self, io: &str) -> Daemon {
        self.start_daemon_nth(io, 0)
    }

    /// Like [`Sandbox::start_daemon`]; `run` numbers the log file so every
    /// start of the daemon in one test keeps its own log.
    pub fn start_daemon_nth(&self, io: &str, run: usize) -> Daemon {
        self.start_daemon_from(self.cmd(), io, run)
    }

    /// Like [`Sandbox::start_daemon_nth`], from `cmd`, a `ringmail` command
    /// already set up (run as another user, say).
    pub fn start_daemon_from(&self, mut cmd: Command, io: &str, run: usize) -> Daemon {
        let log = self.root().join(format!("daemon-{run}.log"));
        let stderr = File::create(&log).expect("create daemon log");
        let child = cmd
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RINGMAIL_IO", io)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn daemon");
        let mut d = Daemon {
            child,
            log,
            io: io.to_string(),
            exited: None,
        };
        d.wait_for_log("daemon started");
        let log = d.log();
        let started = log
            .lines()
            .find(|l| l.contains("daemon started"))
            .unwrap_or_default()
            .to_string();
        match io {
            "epoll" => assert!(
                started.contains("io backend epoll"),
                "RINGMAIL_IO=epoll but: {started}"
            ),
            _ => {
                if !started.contains("io backend io_uring") {
                    eprintln!("note: io_uring not available here, daemon fell back: {started}");
                }
            }
        }
        d
    }

    /// Starts `ringmail serve` (run number `run`) and waits until it has
    /// either started (`Ok`) or exited (`Err` with its status and log), for
    /// configurations the daemon may rightly refuse.
    pub fn try_start_daemon(&self, io: &str, run: usize) -> Result<Daemon, (ExitStatus, String)> {
        let log = self.root().join(format!("daemon-{run}.log"));
        let stderr = File::create(&log).expect("create daemon log");
        let child = self
            .cmd()
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RINGMAIL_IO", io)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn daemon");
        let mut d = Daemon {
            child,
            log,
            io: io.to_string(),
            exited: None,
        };
        let start = Instant::now();
        loop {
            if d.log().contains("daemon started") {
                return Ok(d);
            }
            if let Some(st) = d.child.try_wait().expect("try_wait") {
                d.exited = Some(st);
                return Err((st, d.log()));
            }
            if start.elapsed() > DEADLINE {
                panic!("daemon neither started nor exited:\n{}", d.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes a file into `pickup/` the safe way: under a dot-name, then
    /// renamed to `name`.
    pub fn drop_file(&self, name: &str, contents: &[u8]) {
        drop_file(&self.pickup(), name, contents);
    }

    /// Names (not starting with `.`) currently in `dir`.
    pub fn names_in(&self, dir: &Path) -> Vec<String> {
        names_in(dir)
    }

    /// Every segment file under `queue/`, sorted by path.
    pub fn segment_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(dirs) = fs::read_dir(self.queue()) else {
            return out;
        };
        for d in dirs.flatten() {
            if !d.path().is_dir() {
                continue;
            }
            for f in fs::read_dir(d.path()).expect("read shard dir").flatten() {
                if f.file_name().to_string_lossy().ends_with(".seg") {
                    out.push(f.path());
                }
            }
        }
        out.sort();
        out
    }

    /// Every message record in every segment.
    pub fn segment_messages(&self) -> Vec<Record> {
        self.segment_files()
            .iter()
            .flat_map(|p| read_records(p).records)
            .filter(|r| r.kind == 1)
            .collect()
    }
}

/// Runs `cmd` feeding `stdin`, collecting its output.
pub fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringmail");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // Write from a thread: sendmail may stop reading early (lone dot, size
    // limit, usage error), which must not block or fail the test.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for ringmail");
    let _ = writer.join();
    out
}

/// Writes `contents` into `dir` under a dot-name, then renames it to `name`.
pub fn drop_file(dir: &Path, name: &str, contents: &[u8]) {
    let tmp = dir.join(format!(".tmp-{name}"));
    fs::write(&tmp, contents).expect("write pickup temp file");
    fs::rename(&tmp, dir.join(name)).expect("rename into pickup");
}

/// Names (not starting with `.`) in `dir`; empty when it does not exist.
pub fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// Number of entries (not starting with `.`) in `dir`.
pub fn count_in(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
                .count()
        })
        .unwrap_or(0)
}

/// A simple pickup file: recipient from `To:`.
pub fn pickup_message(i: usize) -> Vec<u8> {
    format!(
        "From: Bulk Sender <bulk@example.com>\n\
         To: r{i}@example.net\n\
         Subject: message {i}\n\
         \n\
         body of message {i}\n"
    )
    .into_bytes()
}

/// The recipient of [`pickup_message`] `i`.
pub fn rcpt(i: usize) -> String {
    format!("r{i}@example.net")
}

/// A running (or stopped) `ringmail serve`.
pub struct Daemon {
    child: Child,
    log: PathBuf,
    pub io: String,
    exited: Option<ExitStatus>,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the daemon has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            self.exited = Some(status);
            panic!(
                "daemon exited unexpectedly with {status}; log:\n{}",
                self.log()
            );
        }
    }

    /// Waits until the log contains `needle`; fails if the daemon dies.
    pub fn wait_for_log(&mut self, needle: &str) {
        let start = Instant::now();
        loop {
            if self.log().contains(needle) {
                return;
            }
            self.assert_running();
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out waiting for {needle:?} in the daemon log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the log shows `n` shards have finished recovery, and
    /// returns their recovery reports.
    pub fn wait_recovered(&mut self, n: usize) -> Vec<Recovery> {
        let start = Instant::now();
        loop {
            let r = recoveries(&self.log());
            if r.len() >= n {
                return r;
            }
            self.assert_running();
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for {n} recovery lines:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `wait_until` that also fails fast when the daemon dies.
    pub fn wait_until(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if cond() {
                return;
            }
            self.assert_running();
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out after {DEADLINE:?} waiting for: {what}; daemon log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM (`kill -TERM`) and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let st = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(st.success(), "kill -TERM failed");
        self.wait_exit(EXIT_DEADLINE)
    }

    /// SIGTERM, then asserts the daemon exited with status 0.
    pub fn stop(&mut self) {
        let status = self.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "daemon did not exit cleanly on SIGTERM ({status}); log:\n{}",
            self.log()
        );
    }

    /// SIGKILL (`kill -9`), then reaps the process.
    pub fn kill9(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the daemon");
        let st = self.child.wait().expect("wait after SIGKILL");
        self.exited = Some(st);
        st
    }

    /// Waits up to `timeout` for the daemon to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(st);
                return st;
            }
            if start.elapsed() > timeout {
                panic!(
                    "daemon did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log ({}, RINGMAIL_IO={}) ----\n{}",
                self.log.display(),
                self.io,
                self.log()
            );
        }
    }
}

/// One shard's `recovered ...` log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub shard: usize,
    pub messages: usize,
    pub recipients: usize,
    pub segments: usize,
    pub torn: usize,
}

/// Parses every `shard N: recovered M messages, R recipients from K segments
/// in X ms (T torn records cut, ...)` line in `log`.
pub fn recoveries(log: &str) -> Vec<Recovery> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(at) = line.find("ringmail/qmgr[") else {
            continue;
        };
        let Some(rest) = line[at..].split_once("]: shard ").map(|x| x.1) else {
            continue;
        };
        if !rest.contains(": recovered ") {
            continue;
        }
        // "0: recovered 4 messages, 4 recipients from 1 segments in 3 ms (1 torn records cut, 0 empty segments removed)"
        let words: Vec<&str> = rest
            .split(|c: char| c.is_whitespace() || c == ':' || c == ',' || c == '(')
            .filter(|w| !w.is_empty())
            .collect();
        let num = |i: usize| -> usize {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("unexpected recovery line: {line}"))
        };
        let after = |word: &str| -> usize {
            let i = words
                .iter()
                .position(|w| *w == word)
                .unwrap_or_else(|| panic!("no {word:?} in recovery line: {line}"));
            num(i - 1)
        };
        out.push(Recovery {
            shard: num(0),
            messages: after("messages"),
            recipients: after("recipients"),
            segments: after("segments"),
            torn: after("torn"),
        });
    }
    out
}

/// One message in `ringmail queue list --json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Listed {
    pub queue_id: String,
    pub arrival_time: u64,
    pub sender: String,
    pub size: u64,
    pub message_id: String,
    pub recipients: Vec<ListedRcpt>,
    #[serde(default)]
    pub source_file: Option<String>,
}

/// One recipient in the JSON listing.
#[derive(Clone, Debug, Deserialize)]
pub struct ListedRcpt {
    pub address: String,
    pub status: String,
    pub reason: Option<String>,
}

impl Listed {
    pub fn addresses(&self) -> Vec<&str> {
        self.recipients.iter().map(|r| r.address.as_str()).collect()
    }
}

/// How many times each recipient appears over `listed`.
pub fn recipient_counts(listed: &[Listed]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in listed {
        for r in &l.recipients {
            *m.entry(r.address.clone()).or_insert(0) += 1;
        }
    }
    m
}

/// One record of a segment file, decoded independently of the crate.
#[derive(Clone, Debug)]
pub struct Record {
    /// Offset of the record in the file.
    pub offset: usize,
    /// Total length including padding.
    pub len: usize,
    pub kind: u16,
    /// Whether the stored CRC32C matches header bytes 0..12 plus the payload.
    pub crc_ok: bool,
    /// Message records only.
    pub queue_id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub message_id: String,
    pub wire: Vec<u8>,
    /// Recipient status bytes.
    pub status: Vec<u8>,
}

/// All records of a segment file up to the end marker (or a record that does
/// not fit), plus the shard number from the file header.
pub struct SegmentContents {
    pub shard: u32,
    pub records: Vec<Record>,
    /// Offset where the walk stopped.
    pub end: usize,
}

/// Walks a segment file: a 64-byte header, then records of a 16-byte header
/// (kind u16, reserved u16, payload_len u32, aux_len u32, crc32c u32), the
/// payload, the status bytes and zero padding to 8 bytes; an all-zero
/// header ends the data.
pub fn read_records(path: &Path) -> SegmentContents {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() >= 64,
        "{}: shorter than its header",
        path.display()
    );
    assert_eq!(&bytes[0..8], b"RMQSEG\r\n", "{}: bad magic", path.display());
    assert_eq!(
        crc32c::crc32c(&bytes[0..60]),
        u32le(&bytes[60..64]),
        "{}: file header CRC",
        path.display()
    );
    let shard = u32le(&bytes[12..16]);
    let mut records = Vec::new();
    let mut pos = 64;
    while pos + 16 <= bytes.len() {
        let h = &bytes[pos..pos + 16];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let kind = u16::from_le_bytes([h[0], h[1]]);
        let payload_len = u32le(&h[4..8]) as usize;
        let aux_len = u32le(&h[8..12]) as usize;
        let crc = u32le(&h[12..16]);
        let len = (16 + payload_len + aux_len).div_ceil(8) * 8;
        if pos + len > bytes.len() {
            break;
        }
        let payload = &bytes[pos + 16..pos + 16 + payload_len];
        let crc_ok = crc32c::crc32c_append(crc32c::crc32c(&h[0..12]), payload) == crc;
        let mut rec = Record {
            offset: pos,
            len,
            kind,
            crc_ok,
            queue_id: String::new(),
            sender: String::new(),
            recipients: Vec::new(),
            message_id: String::new(),
            wire: Vec::new(),
            status: bytes[pos + 16 + payload_len..pos + 16 + payload_len + aux_len].to_vec(),
        };
        if kind == 1 && crc_ok {
            decode_message(payload, &mut rec);
        }
        records.push(rec);
        pos += len;
    }
    SegmentContents {
        shard,
        records,
        end: pos,
    }
}

fn u32le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Message payload: id u64, arrival u64, flags u32, uid u32, nrcpt u32,
/// sender, nrcpt recipients, message-id (each u16 length + bytes), wire
/// length u32 and the wire form.
fn decode_message(p: &[u8], rec: &mut Record) {
    let mut pos = 0usize;
    let mut take = |n: usize| {
        let s = &p[pos..pos + n];
        pos += n;
        s
    };
    let id = u64::from_le_bytes(take(8).try_into().unwrap());
    take(8 + 4 + 4);
    let nrcpt = u32le(take(4)) as usize;
    let mut short = || {
        let n = u16::from_le_bytes(take(2).try_into().unwrap()) as usize;
        String::from_utf8(take(n).to_vec()).expect("UTF-8 field")
    };
    rec.sender = short();
    rec.recipients = (0..nrcpt).map(|_| short()).collect();
    rec.message_id = short();
    let wire_len = u32le(take(4)) as usize;
    rec.wire = take(wire_len).to_vec();
    rec.queue_id = format!("{:012X}", id & ((1 << 48) - 1));
}

/// Number of lines of `log` that contain every one of `needles`.
pub fn count_lines(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// True when `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The header section of a wire form (up to the first empty line).
pub fn header_section(wire: &[u8]) -> &[u8] {
    let end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(wire.len());
    &wire[..end]
}

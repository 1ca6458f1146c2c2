//! A private Postfix instance as a receiving MX on loopback.
//!
//! [`PostfixReceiver::start`] runs Debian's Postfix (`/usr/sbin/postfix`)
//! with its own configuration, queue, data and mail directories in a
//! temporary directory, listening with smtpd on a free port of 127.0.0.1
//! only, and stops it when the handle is dropped.
//!
//! How the instance is configured:
//! - `main.cf` and `master.cf` are written from scratch (nothing is read
//!   from `/etc/postfix` but the package's `postfix-files`): no chroot, one
//!   `127.0.0.1:PORT inet n - n - - smtpd` listener, the usual internal
//!   services, and `postlog` so `maillog_file` (in the temporary directory,
//!   allowed by `maillog_file_prefixes`) gets the log;
//! - the master runs in the foreground (`postfix start-fg`) as a child of
//!   the test, so it is reaped; the listener is up when the banner naming
//!   this instance's unique `myhostname` is read on the port (that probe
//!   is one `connect from` / `QUIT` in the log; a port taken
//!   meanwhile by someone else makes the master exit, and the start is
//!   retried on another port);
//! - the domains given are `virtual_mailbox_domains`; every address in them
//!   is accepted (`virtual_mailbox_maps = static:inbox/`) and delivered by
//!   virtual(8), as the `postfix` user, to one Maildir, `mail/inbox/`
//!   (virtual(8) adds `Delivered-To:` and `Return-Path:` to each copy, one
//!   copy per recipient; see [`delivered_to`]); nothing else is a local or
//!   relay destination, and `default_transport`/`relay_transport` are
//!   `error:` so no bounce or anything else ever leaves the machine;
//! - recipients whose local part starts with `reject` are refused at RCPT
//!   with `550 5.1.1`, with `defer` with `450 4.2.0`
//!   (`check_recipient_access` regexp table);
//! - STARTTLS is offered (`smtpd_tls_security_level = may`) with a
//!   self-signed certificate for `localhost` and 127.0.0.1 generated with
//!   rcgen ([`PostfixReceiver::cert_pem`]), and `smtpd_tls_loglevel = 1`
//!   logs `Anonymous TLS connection established from ...`;
//! - `smtpd_relay_restrictions = reject_unauth_destination`: other
//!   domains are refused with `554 5.7.1`, even from loopback;
//! - no SASL AUTH; `smtpd_peername_lookup = no` (no DNS for the client);
//! - the configuration files get an mtime a minute back: Postfix programs
//!   wait about 2 s for a `main.cf` written within the last second to
//!   settle. A start then takes about 0.4 s (banner read), a stop less.
//!
//! It must run as root (Postfix's master does); without root or without
//! Postfix installed, `start` returns `None` after printing why.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `postfix` command of the Debian package.
pub const POSTFIX: &str = "/usr/sbin/postfix";

/// The `postconf` command of the Debian package.
const POSTCONF: &str = "/usr/sbin/postconf";

/// How long Postfix gets to come up (it takes well under a second here).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How long Postfix gets to stop before its master is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// How many ports are tried when the one picked is taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Instances started by this process, for unique host names.
static INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// The services of `master.cf` besides the smtpd listener: Debian's
/// defaults without chroot and without the pipe(8) examples.
const MASTER_CF_SERVICES: &str = "\
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
virtual    unix  -       n       n       -       -       virtual
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
";

/// The recipient access table: the `reject*` and `defer*` local parts.
const RCPT_ACCESS: &str = "\
/^reject[^@]*@/\t550 5.1.1 rejected by the test receiver
/^defer[^@]*@/\t450 4.2.0 deferred by the test receiver
";

/// A running private Postfix instance receiving mail for some domains on
/// 127.0.0.1; it is stopped, and its directory removed, when dropped.
pub struct PostfixReceiver {
    /// `127.0.0.1:PORT` of its smtpd.
    pub addr: SocketAddr,
    /// Its `myhostname`, unique per instance (the banner is
    /// `220 HOSTNAME ESMTP Postfix`).
    pub hostname: String,
    /// The domains it accepts mail for.
    pub domains: Vec<String>,
    /// The self-signed certificate smtpd presents (PEM; subject names
    /// `localhost` and `127.0.0.1`), for clients that verify.
    pub cert_pem: String,
    /// The same certificate, DER.
    pub cert_der: Vec<u8>,
    /// The Postfix version (`mail_version`).
    pub version: String,
    /// How long the start took, until the banner was read.
    pub startup: Duration,
    dir: tempfile::TempDir,
    master: Option<Child>,
}

/// The uid and gid of a user in `/etc/passwd`.
fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some(user))?;
    let mut fields = line.split(':').skip(2);
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some((uid, gid))
}

/// Sets a configuration file's mtime a minute back: Postfix programs wait
/// for a `main.cf` modified within the last second to settle (about 2 s
/// per start otherwise).
fn backdate(path: &Path) {
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(past))
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Reads the first line the server sends, if any arrives within 5 s.
fn banner(addr: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let _ = (&stream).write_all(b"QUIT\r\n");
    let _ = reader.read_line(&mut String::new());
    Some(line)
}

/// The `Delivered-To:` address virtual(8) put at the top of a delivered
/// message file (the envelope recipient of that copy).
pub fn delivered_to(path: &Path) -> Option<String> {
    let text = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("Delivered-To")
            .then(|| value.trim().to_string())
    })
}

impl PostfixReceiver {
    /// Starts an instance accepting mail for `domains` (see the module
    /// documentation). Returns `None`, after printing the reason, when
    /// Postfix is not installed or the test does not run as root; panics
    /// with the logs on any other failure.
    pub fn start(domains: &[&str]) -> Option<PostfixReceiver> {
        Self::start_with(domains, &[])
    }

    /// [`start`](Self::start), with `main.cf` settings added or replaced:
    /// for example `("smtpd_tls_security_level", "none")` for no STARTTLS,
    /// `("message_size_limit", "100000")`, or `smtpd_tls_cert_file` and
    /// `smtpd_tls_key_file` naming PEM files of a certificate for other
    /// names (such as `certs::write_pki`'s); [`cert_pem`](Self::cert_pem)
    /// is then not the one served.
    pub fn start_with(domains: &[&str], main_cf: &[(&str, &str)]) -> Option<PostfixReceiver> {
        if !Path::new(POSTFIX).exists() {
            eprintln!(
                "skipped: Postfix is not installed ({POSTFIX} is missing; apt-get install postfix)"
            );
            return None;
        }
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: a private Postfix instance needs root (its master runs as root)");
            return None;
        }
        let t0 = Instant::now();
        let (pf_uid, pf_gid) =
            passwd_ids("postfix").expect("the postfix user (from the postfix package)");
        let n = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let hostname = format!("mx-{}-{n}.receiver.test", std::process::id());

        let dir = tempfile::Builder::new()
            .prefix("ringmail-postfix-")
            .tempdir()
            .expect("temporary directory");
        let root = dir.path();
        // The daemons run as postfix and must reach the queue inside.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .expect("chmod the temporary directory");
        let etc = root.join("etc");
        for sub in ["etc", "queue", "data", "mail"] {
            fs::create_dir(root.join(sub)).expect("create an instance directory");
        }
        std::os::unix::fs::chown(root.join("data"), Some(pf_uid), Some(pf_gid))
            .expect("chown data/");
        std::os::unix::fs::chown(root.join("mail"), Some(pf_uid), Some(pf_gid))
            .expect("chown mail/");

        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("generate a certificate");
        let cert_pem = cert.cert.pem();
        let cert_der = cert.cert.der().to_vec();
        fs::write(etc.join("cert.pem"), &cert_pem).expect("write cert.pem");
        fs::write(etc.join("key.pem"), cert.key_pair.serialize_pem()).expect("write key.pem");
        fs::set_permissions(etc.join("key.pem"), fs::Permissions::from_mode(0o600))
            .expect("chmod key.pem");
        fs::write(etc.join("rcpt_access"), RCPT_ACCESS).expect("write rcpt_access");
        backdate(&etc.join("rcpt_access"));

        // The version decides the compatibility level (3.6 when known).
        fs::write(etc.join("main.cf"), "").expect("write main.cf");
        let version = Command::new(POSTCONF)
            .args([
                "-c".as_ref(),
                etc.as_os_str(),
                "-dh".as_ref(),
                "mail_version".as_ref(),
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mut vparts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let modern = (vparts.next().unwrap_or(0), vparts.next().unwrap_or(0)) >= (3, 6);

        let r = |p: &str| root.join(p).display().to_string();
        let mut settings: Vec<(String, String)> = [
            (
                "compatibility_level",
                if modern { "3.6" } else { "2" }.to_string(),
            ),
            ("config_directory", r("etc")),
            ("queue_directory", r("queue")),
            ("data_directory", r("data")),
            ("maillog_file", r("maillog")),
            ("maillog_file_prefixes", root.display().to_string()),
            ("myhostname", hostname.clone()),
            ("mydomain", "receiver.test".into()),
            ("myorigin", "$myhostname".into()),
            ("mydestination", String::new()),
            ("local_recipient_maps", String::new()),
            ("local_transport", "error:local delivery is disabled".into()),
            (
                "default_transport",
                "error:outbound delivery is disabled".into(),
            ),
            (
                "relay_transport",
                "error:outbound delivery is disabled".into(),
            ),
            ("alias_maps", String::new()),
            ("alias_database", String::new()),
            ("inet_interfaces", "127.0.0.1".into()),
            ("inet_protocols", "ipv4".into()),
            ("mynetworks", "127.0.0.0/8".into()),
            // An MX, not a relay, even for loopback clients.
            (
                "smtpd_relay_restrictions",
                "reject_unauth_destination".into(),
            ),
            ("smtpd_peername_lookup", "no".into()),
            ("biff", "no".into()),
            ("append_dot_mydomain", "no".into()),
            ("readme_directory", "no".into()),
            ("virtual_mailbox_domains", domains.join(", ")),
            ("virtual_mailbox_base", r("mail")),
            ("virtual_mailbox_maps", "static:inbox/".into()),
            ("virtual_uid_maps", format!("static:{pf_uid}")),
            ("virtual_gid_maps", format!("static:{pf_gid}")),
            ("virtual_minimum_uid", "1".into()),
            (
                "smtpd_recipient_restrictions",
                format!("check_recipient_access regexp:{}", r("etc/rcpt_access")),
            ),
            ("smtpd_tls_security_level", "may".into()),
            ("smtpd_tls_cert_file", r("etc/cert.pem")),
            ("smtpd_tls_key_file", r("etc/key.pem")),
            ("smtpd_tls_loglevel", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in main_cf {
            match settings.iter_mut().find(|(key, _)| key == k) {
                Some(entry) => entry.1 = v.to_string(),
                None => settings.push((k.to_string(), v.to_string())),
            }
        }
        let mut main =
            String::from("# private receiving instance: ringmail tests/common/postfix.rs\n");
        for (k, v) in &settings {
            main.push_str(&format!("{k} = {v}\n"));
        }
        fs::write(etc.join("main.cf"), main).expect("write main.cf");
        backdate(&etc.join("main.cf"));

        let mut receiver = PostfixReceiver {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            hostname,
            domains: domains.iter().map(|d| d.to_string()).collect(),
            cert_pem,
            cert_der,
            version,
            startup: Duration::ZERO,
            dir,
            master: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            receiver.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            fs::write(
                etc.join("master.cf"),
                format!("127.0.0.1:{port} inet n - n - - smtpd\n{MASTER_CF_SERVICES}"),
            )
            .expect("write master.cf");
            backdate(&etc.join("master.cf"));
            match receiver.launch() {
                Ok(()) => {
                    receiver.startup = t0.elapsed();
                    eprintln!(
                        "postfix {} receiving for {:?} on {} ({}), started in {} ms",
                        receiver.version,
                        receiver.domains,
                        receiver.addr,
                        receiver.dir.path().display(),
                        receiver.startup.as_millis()
                    );
                    return Some(receiver);
                }
                Err(why) if why.contains("Address already in use") && attempt < PORT_ATTEMPTS => {
                    eprintln!("postfix: port {port} was taken meanwhile; trying another");
                }
                Err(why) => panic!("the private Postfix did not start: {why}"),
            }
        }
        unreachable!()
    }

    /// Starts the master in the foreground and waits for this instance's
    /// banner on `self.addr`. On failure the master is reaped and the logs
    /// are returned.
    fn launch(&mut self) -> Result<(), String> {
        let out =
            fs::File::create(self.path("postfix-start.log")).expect("create postfix-start.log");
        let err = out.try_clone().expect("clone a file handle");
        let child = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.path("etc"))
            .arg("start-fg")
            .env_remove("MAIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {POSTFIX}: {e}"))?;
        self.master = Some(child);
        let start = Instant::now();
        loop {
            let exited = self
                .master
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten();
            if let Some(status) = exited {
                self.master = None;
                return Err(format!(
                    "`postfix start-fg` exited with {status}\n{}",
                    self.diagnostics()
                ));
            }
            if let Some(line) = banner(self.addr) {
                if line.starts_with(&format!("220 {} ", self.hostname)) {
                    return Ok(());
                }
            }
            if start.elapsed() > START_DEADLINE {
                self.stop();
                return Err(format!(
                    "no banner on {} after {START_DEADLINE:?}\n{}",
                    self.addr,
                    self.diagnostics()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The start-up output and the maillog, for failure messages.
    fn diagnostics(&self) -> String {
        let start = fs::read_to_string(self.path("postfix-start.log")).unwrap_or_default();
        format!(
            "--- postfix start-fg output:\n{start}--- maillog ({}):\n{}",
            self.path("maillog").display(),
            self.log()
        )
    }

    /// The instance's configuration directory, for `-c` of its commands
    /// (`postqueue -c DIR -p`, `postsuper -c DIR -h ID`).
    pub fn config_dir(&self) -> PathBuf {
        self.path("etc")
    }

    /// The instance's log so far (`maillog_file`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("maillog")).unwrap_or_default()
    }

    /// The Maildir all mail is delivered to.
    pub fn maildir(&self) -> PathBuf {
        self.path("mail/inbox")
    }

    /// The message files delivered so far (one per recipient), sorted by
    /// name (Maildir names start with the delivery time).
    pub fn messages(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| fs::read_dir(self.maildir().join(sub)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files
    }

    /// Waits until at least `n` message files have been delivered and returns
    /// them all ([`messages`](Self::messages)); panics with the log after
    /// `timeout`.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<PathBuf> {
        let start = Instant::now();
        loop {
            let files = self.messages();
            if files.len() >= n {
                return files;
            }
            if start.elapsed() > timeout {
                panic!(
                    "the private Postfix has {} of {n} messages after {timeout:?}\n{}",
                    files.len(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log contains `needle` (polling); panics with the log
    /// after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if start.elapsed() > timeout {
                panic!("no {needle:?} in the private Postfix's log after {timeout:?}\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the master (`postfix stop`, then SIGKILL after a while), reaps
    /// it, and waits for the daemons of this instance to be gone.
    fn stop(&mut self) {
        let Some(mut child) = self.master.take() else {
            return;
        };
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.path("etc"))
            .arg("stop")
            .env_remove("MAIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if start.elapsed() > STOP_DEADLINE => {
                    eprintln!("postfix: the master did not stop in {STOP_DEADLINE:?}; killing it");
                    if let Some(pid) = self.master_pid().and_then(rustix::process::Pid::from_raw) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        self.reap_daemons();
    }

    /// The pid of the running master (from its pid file).
    pub fn master_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.path("queue/pid/master.pid")).ok()?;
        text.trim().parse().ok()
    }

    /// The live processes working in this instance's queue directory (every
    /// Postfix daemon chdirs there).
    fn daemons(&self) -> Vec<i32> {
        let queue = self.path("queue");
        let Ok(procs) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&queue))
            })
            .filter(|pid| {
                // A zombie is not running (an init that reaps late keeps some).
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next());
                !matches!(state, None | Some('Z') | Some('X'))
            })
            .collect()
    }

    /// Waits for the daemons the master left (they exit when it does), and
    /// kills the ones still there after 10 s.
    fn reap_daemons(&self) {
        let start = Instant::now();
        loop {
            let left = self.daemons();
            if left.is_empty() {
                return;
            }
            if start.elapsed() > Duration::from_secs(10) {
                eprintln!("postfix: killing daemons left behind: {left:?}");
                for pid in left {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PostfixReceiver {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- the private Postfix's log ({}):\n{}",
                self.addr,
                self.log()
            );
        }
    }
}

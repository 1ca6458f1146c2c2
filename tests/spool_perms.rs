//! The spool as local users see it (issue 12, items 4 and 5), tested as
//! real unprivileged users: the commands run with another uid and gid
//! (set by the kernel through `setuid`/`setgid` before `exec`, the way
//! `setpriv` does it). The uids have no /etc/passwd entry, so the machine
//! is not changed. Every test needs root to switch users and skips,
//! saying so, where it does not run as root.
//!
//! - `sendmail` as a user: exit 0 only with the file durably in
//!   `maildrop/` (the directory cannot be fsync'd by a non-owner), the
//!   file mode 0600 and unreadable by other users, delivered once.
//! - `pickup/`: `pickup_group` and `pickup_mode` applied at every start
//!   (default 1770, the daemon's group), writable by the group only.
//! - `queue flush`, `queue list`, `sendmail -q`, `sendmail -bp` as a user:
//!   "permission denied" with the path and exit 77 (EX_NOPERM).
//! - A daemon running as the spool's (non-root) owner reads its own
//!   user's files and says once that it cannot read another user's.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use ringmail::sink::{self, SinkConfig, SinkHandle};

/// The unprivileged user the tests submit as (no /etc/passwd entry).
const USER: u32 = 64123;
/// Another unprivileged user.
const OTHER: u32 = 64124;
/// A group that may drop files into `pickup/` when configured.
const DROPPERS: u32 = 64200;

/// True when the test can switch users; otherwise says why it skips.
fn can_switch_users(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        true
    } else {
        eprintln!("skipping {test}: only root can run commands as another user");
        false
    }
}

/// A sandbox relaying to `sink`, its directory open to every user (the
/// temp directory is created 0700).
fn sandbox(sink: &SinkHandle, extra: &str) -> Sandbox {
    let sb = Sandbox::with(Settings {
        extra: format!(
            "{extra}relayhost = \"[127.0.0.1]:{}\"\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    fs::set_permissions(sb.root(), fs::Permissions::from_mode(0o755)).expect("chmod sandbox");
    fs::set_permissions(&sb.config, fs::Permissions::from_mode(0o644)).expect("chmod config");
    sb
}

/// The `ringmail` binary as users can run it: the built one, or a copy in
/// the sandbox when the build directory is closed to them.
fn user_bin(sb: &Sandbox) -> PathBuf {
    let reachable = Command::new(BIN)
        .arg("--version")
        .uid(USER)
        .gid(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if reachable {
        return PathBuf::from(BIN);
    }
    let copy = sb.root().join("ringmail");
    fs::copy(BIN, &copy).expect("copy the binary");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod the copy");
    copy
}

/// `ringmail ARGS` as `uid` (group `gid`), with a clean environment.
fn as_user(sb: &Sandbox, uid: u32, gid: u32) -> Command {
    let mut c = Command::new(user_bin(sb));
    c.env_remove("RINGMAIL_CONFIG")
        .env_remove("RINGMAIL_IO")
        .current_dir(sb.root())
        .uid(uid)
        .gid(gid);
    c
}

/// `sendmail -C config ARGS` as `uid` with `stdin`.
fn sendmail_as(sb: &Sandbox, uid: u32, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = as_user(sb, uid, uid);
    c.arg("sendmail").arg("-C").arg(&sb.config).args(args);
    run_with_stdin(c, stdin)
}

/// A shell command as `uid`:`gid` (file access checks of other programs).
fn shell_as(uid: u32, gid: u32, script: &str, arg: &Path) -> Output {
    Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(arg)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run sh")
}

fn message(id: &str) -> Vec<u8> {
    format!(
        "From: user@example.org\nTo: rcpt@example.net\nMessage-ID: <{id}>\nSubject: {id}\n\nbody\n"
    )
    .into_bytes()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// How often the sink accepted the message with Message-ID `<id>`.
fn accepted(sink: &SinkHandle, id: &str) -> u32 {
    let key = format!("<{id}>");
    sink.message_id_counts().get(&key).copied().unwrap_or(0)
}

/// Waits until the sink has accepted `<id>`; returns how often.
fn wait_accepted(d: &mut Daemon, sink: &SinkHandle, id: &str) -> u32 {
    d.wait_until(&format!("{id} accepted by the sink"), || {
        accepted(sink, id) > 0
    });
    accepted(sink, id)
}

/// Creates the spool as `serve` does, then stops the daemon.
fn create_spool(sb: &Sandbox) {
    let mut d = sb.start_daemon("epoll");
    d.stop();
}

#[test]
fn non_root_sendmail_exits_0_with_a_private_durable_file_delivered_once() {
    if !can_switch_users("non_root_sendmail_exits_0_with_a_private_durable_file_delivered_once") {
        return;
    }
    let sink = sink::start(SinkConfig::default()).expect("start sink");
    let sb = sandbox(&sink, "");
    create_spool(&sb);
    assert_eq!(mode(&sb.maildrop()), 0o1733);

    let out = sendmail_as(
        &sb,
        USER,
        &["-f", "user@example.org", "rcpt@example.net"],
        &message("nonroot-1@example.org"),
    );
    assert_eq!(out.status.code(), Some(0), "sendmail: {}", stderr(&out));

    // The file is in maildrop/, the submitter's, readable by nobody else.
    let names = sb.names_in(&sb.maildrop());
    assert_eq!(names.len(), 1, "{names:?}");
    let file = sb.maildrop().join(&names[0]);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(fs::metadata(&file).expect("stat").uid(), USER);
    let peek = shell_as(OTHER, OTHER, "cat \"$1\"", &file);
    assert!(!peek.status.success(), "another user read the file");
    assert!(peek.stdout.is_empty());
    let own = shell_as(USER, USER, "cat \"$1\" >/dev/null", &file);
    assert!(own.status.success(), "the submitter cannot read its file");

    // Delivered once, as the submitter's message.
    let mut d = sb.start_daemon_nth("epoll", 1);
    assert_eq!(wait_accepted(&mut d, &sink, "nonroot-1@example.org"), 1);
    d.wait_until("maildrop/ empty", || sb.names_in(&sb.maildrop()).is_empty());
    d.stop();
    assert!(
        d.log()
            .contains(&format!("uid={USER} from=<user@example.org>")),
        "{}",
        d.log()
    );
    assert_eq!(accepted(&sink, "nonroot-1@example.org"), 1);
}

#[test]
fn non_root_sendmail_bs_answers_250_only_for_a_durable_file() {
    if !can_switch_users("non_root_sendmail_bs_answers_250_only_for_a_durable_file") {
        return;
    }
    let sink = sink::start(SinkConfig::default()).expect("start sink");
    let sb = sandbox(&sink, "");
    create_spool(&sb);
    let mut dialogue =
        b"EHLO client\r\nMAIL FROM:<user@example.org>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n"
            .to_vec();
    // SMTP lines end in CRLF: after a bare LF, `.` CRLF does not end the
    // data (Postfix's `smtpd_forbid_bare_newline = normalize`).
    let msg = String::from_utf8(message("nonroot-bs@example.org")).expect("ASCII");
    dialogue.extend_from_slice(msg.replace('\n', "\r\n").as_bytes());
    dialogue.extend_from_slice(b".\r\nQUIT\r\n");
    let mut c = as_user(&sb, USER, USER);
    c.arg("sendmail").arg("-C").arg(&sb.config).arg("-bs");
    let out = run_with_stdin(c, &dialogue);
    let replies = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {replies}{}",
        out.status,
        stderr(&out)
    );
    assert!(replies.contains("250 2.0.0 Ok: queued as"), "{replies}");
    // A reply line, not any "451" (a queue ID made of digits may hold it).
    assert!(!replies.lines().any(|l| l.starts_with("451")), "{replies}");
    let names = sb.names_in(&sb.maildrop());
    assert_eq!(names.len(), 1, "{names:?}");
    let file = sb.maildrop().join(&names[0]);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(fs::metadata(&file).expect("stat").uid(), USER);
}

#[test]
fn pickup_gets_its_configured_group_and_mode_at_every_start() {
    if !can_switch_users("pickup_gets_its_configured_group_and_mode_at_every_start") {
        return;
    }
    let sink = sink::start(SinkConfig::default()).expect("start sink");
    let sb = sandbox(&sink, "");
    // A spool from an older version: pickup/ world-writable.
    fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    fs::set_permissions(sb.pickup(), fs::Permissions::from_mode(0o1777)).expect("chmod");

    // Default: 1770, the daemon's own group (root's here).
    let mut d = sb.start_daemon("epoll");
    assert_eq!(mode(&sb.pickup()), 0o1770);
    assert_eq!(fs::metadata(sb.pickup()).expect("stat").gid(), 0);
    let write = "printf 'To: rcpt@example.net\\n\\nx\\n' > \"$1/dropped\"";
    let denied = shell_as(USER, USER, write, &sb.pickup());
    assert!(
        !denied.status.success(),
        "a user outside the group wrote into pickup/"
    );
    d.stop();

    // pickup_group set: the group's members drop files, and they are queued.
    let droppers = DROPPERS.to_string();
    let sb_cfg = Settings {
        extra: format!(
            "pickup_group = \"{droppers}\"\npickup_mode = \"1770\"\nrelayhost = \"[127.0.0.1]:{}\"\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    };
    sb.write_config(&sb_cfg);
    let mut d = sb.start_daemon_nth("epoll", 1);
    assert_eq!(mode(&sb.pickup()), 0o1770);
    assert_eq!(fs::metadata(sb.pickup()).expect("stat").gid(), DROPPERS);
    let denied = shell_as(OTHER, OTHER, write, &sb.pickup());
    assert!(
        !denied.status.success(),
        "a user outside the group wrote into pickup/"
    );
    let drop = "printf 'From: user@example.org\\nTo: rcpt@example.net\\nMessage-ID: <dropped@example.org>\\n\\nx\\n' > \"$1/.tmp\" && mv \"$1/.tmp\" \"$1/dropped\"";
    let ok = shell_as(USER, DROPPERS, drop, &sb.pickup());
    assert!(
        ok.status.success(),
        "a member of pickup_group cannot drop a file: {}",
        stderr(&ok)
    );
    assert_eq!(wait_accepted(&mut d, &sink, "dropped@example.org"), 1);
    d.stop();

    // An unknown group stops the start with a clear message (EX_CONFIG).
    let mut bad = sb_cfg.clone();
    bad.extra = "pickup_group = \"no-such-group-anywhere\"\n".into();
    sb.write_config(&bad);
    let out = sb
        .cmd()
        .args(["serve", "--config"])
        .arg(&sb.config)
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no-such-group-anywhere"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn non_root_queue_commands_say_permission_denied() {
    if !can_switch_users("non_root_queue_commands_say_permission_denied") {
        return;
    }
    let sink = sink::start(SinkConfig::default()).expect("start sink");
    let sb = sandbox(&sink, "");
    let mut d = sb.start_daemon("epoll");
    let socket = sb.spool.join("control.sock");
    assert_eq!(mode(&socket) & 0o777, 0o600);

    let run = |args: &[&str]| {
        let mut c = as_user(&sb, USER, USER);
        c.args(args);
        c.output().expect("run ringmail")
    };
    let config = sb.config.display().to_string();
    let flush = run(&["queue", "flush", "--config", &config]);
    assert_eq!(flush.status.code(), Some(77), "{}", stderr(&flush));
    assert!(
        stderr(&flush).contains("permission denied"),
        "{}",
        stderr(&flush)
    );
    assert!(
        stderr(&flush).contains(&socket.display().to_string()),
        "{}",
        stderr(&flush)
    );
    assert!(
        !stderr(&flush).contains("not running"),
        "{}",
        stderr(&flush)
    );

    let list = run(&["queue", "list", "--config", &config]);
    assert_eq!(list.status.code(), Some(77), "{}", stderr(&list));
    assert!(
        stderr(&list).contains("permission denied"),
        "{}",
        stderr(&list)
    );
    assert!(
        stderr(&list).contains(&sb.queue().display().to_string()),
        "{}",
        stderr(&list)
    );

    let q = run(&["sendmail", "-C", &config, "-q"]);
    assert_eq!(q.status.code(), Some(77), "{}", stderr(&q));
    assert!(stderr(&q).contains("permission denied"), "{}", stderr(&q));
    let bp = run(&["sendmail", "-C", &config, "-bp"]);
    assert_eq!(bp.status.code(), Some(77), "{}", stderr(&bp));
    assert!(stderr(&bp).contains("permission denied"), "{}", stderr(&bp));

    // Root still may; the daemon is running.
    assert_eq!(sb.flush().status.code(), Some(0));
    d.wait_for_log("flush requested");
    d.stop();
}

#[test]
fn a_daemon_run_by_the_spool_owner_reads_only_its_own_users_files() {
    if !can_switch_users("a_daemon_run_by_the_spool_owner_reads_only_its_own_users_files") {
        return;
    }
    let sink = sink::start(SinkConfig::default()).expect("start sink");
    let sb = sandbox(&sink, "");
    fs::create_dir(&sb.spool).expect("mkdir spool");
    std::os::unix::fs::chown(&sb.spool, Some(USER), Some(USER)).expect("chown spool");
    let mut d = sb.start_daemon_from(as_user(&sb, USER, USER), "epoll", 0);
    assert_eq!(fs::metadata(sb.pickup()).expect("stat").gid(), USER);
    d.stop();

    // Another user's submission while no daemon runs: written to
    // maildrop/ (durable, exit 0, mode 0600), which this daemon may not
    // read. It says so once and leaves it. (With the daemon running,
    // sendmail hands the message over submit.sock instead.)
    let theirs = sendmail_as(
        &sb,
        OTHER,
        &["-f", "other@example.org", "rcpt@example.net"],
        &message("theirs@example.org"),
    );
    assert_eq!(theirs.status.code(), Some(0), "{}", stderr(&theirs));
    let mut d = sb.start_daemon_from(as_user(&sb, USER, USER), "epoll", 1);
    d.wait_for_log("permission denied: this daemon runs as uid 64123");

    // Its own user's submissions are delivered meanwhile, pass after pass.
    for i in 0..2 {
        let id = format!("own-{i}@example.org");
        let out = sendmail_as(
            &sb,
            USER,
            &["-f", "user@example.org", "rcpt@example.net"],
            &message(&id),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(wait_accepted(&mut d, &sink, &id), 1);
    }
    d.stop();
    let log = d.log();
    assert_eq!(
        log.matches("permission denied: this daemon runs as uid")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(accepted(&sink, "theirs@example.org"), 0);
    assert_eq!(
        sb.names_in(&sb.maildrop()).len(),
        1,
        "the other user's file stays"
    );
}

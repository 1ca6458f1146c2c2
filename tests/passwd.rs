//! `ringmail passwd add|remove|list` run as the real binary (issue 13,
//! item 4), checked through the library API the SMTP listener uses
//! (`ringmail::inject::smtpd::passwd`): the file holds Argon2 hashes and
//! never a password, is mode 0600 and refused when looser, edits by
//! concurrent commands are all kept, and the exit codes are sysexits.
//! Tests that need another uid run only as root and skip otherwise.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ringmail::inject::smtpd::passwd::{PasswdError, PasswdFile};

const BIN: &str = env!("CARGO_BIN_EXE_ringmail");

/// An unprivileged uid without an /etc/passwd entry.
const USER: u32 = 64133;

/// A temp directory with a configuration naming `passwd` inside it.
struct Sandbox {
    dir: tempfile::TempDir,
    config: PathBuf,
    passwd: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("ringmail.toml");
        let passwd = dir.path().join("passwd");
        fs::write(
            &config,
            format!(
                "spool_dir = {:?}\nsmtpd_passwd_file = {:?}\n",
                dir.path().join("spool"),
                passwd
            ),
        )
        .expect("write config");
        Sandbox {
            dir,
            config,
            passwd,
        }
    }

    /// `ringmail passwd ARGS --config CONFIG`, a clean environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("passwd")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RINGMAIL_CONFIG")
            .env_remove("RINGMAIL_IO");
        c
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(self.cmd(args), stdin)
    }

    fn list(&self) -> String {
        let out = self.run(&["list"], b"");
        assert!(out.status.success(), "list: {}", stderr(&out));
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

fn run_with_stdin(mut c: Command, stdin: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringmail");
    let mut input = child.stdin.take().expect("stdin");
    // A command that fails before reading may close stdin first.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait for ringmail")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn assert_exit(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn add_list_verify_change_and_remove_users() {
    let sb = Sandbox::new();
    assert_eq!(sb.list(), "");
    let out = sb.run(&["add", "newsletter"], b"first secret\n");
    assert_exit(&out, 0, "added newsletter");
    let out = sb.run(&["add", "app@example.com"], b"second secret\r\n");
    assert_exit(&out, 0, "added app@example.com");
    assert_eq!(sb.list(), "newsletter\napp@example.com\n");
    assert_eq!(mode(&sb.passwd), 0o600);
    let text = fs::read_to_string(&sb.passwd).expect("read passwd");
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(text.matches(":$argon2id$v=19$").count(), 2, "{text}");

    let users = PasswdFile::load(&sb.passwd).expect("load");
    assert!(users.verify("newsletter", "first secret"));
    assert!(users.verify("app@example.com", b"second secret"));
    assert!(!users.verify("newsletter", "second secret"));
    assert!(!users.verify("app@example.com", "second secret\r"));
    assert!(!users.verify("nobody", "first secret"));

    // A new password replaces the old one, in place.
    let out = sb.run(&["add", "newsletter"], b"third secret");
    assert_exit(&out, 0, "new password for newsletter");
    assert_eq!(sb.list(), "newsletter\napp@example.com\n");
    let users = PasswdFile::load(&sb.passwd).expect("load");
    assert!(users.verify("newsletter", "third secret"));
    assert!(!users.verify("newsletter", "first secret"));

    let out = sb.run(&["remove", "app@example.com"], b"");
    assert_exit(&out, 0, "removed app@example.com");
    assert_eq!(sb.list(), "newsletter\n");
    let users = PasswdFile::load(&sb.passwd).expect("load");
    assert!(!users.verify("app@example.com", "second secret"));
    assert_eq!(mode(&sb.passwd), 0o600);
    let out = sb.run(&["remove", "app@example.com"], b"");
    assert_exit(&out, 67, "no such user \"app@example.com\"");

    // Only the file is left: no temp files.
    let mut names: Vec<_> = fs::read_dir(sb.dir.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(names, ["passwd", "ringmail.toml"]);
}

#[test]
fn concurrent_adds_are_all_kept() {
    let sb = Sandbox::new();
    let children: Vec<_> = (0..6)
        .map(|i| {
            let mut c = sb.cmd(&["add", &format!("user{i}")]);
            let mut child = c
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(format!("pw{i}\n").as_bytes())
                .expect("write password");
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let users = PasswdFile::load(&sb.passwd).expect("load");
    let mut names: Vec<_> = users.names().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["user0", "user1", "user2", "user3", "user4", "user5"]
    );
    assert!(users.verify("user3", "pw3"));
}

#[test]
fn bad_input_gives_sysexits_and_changes_nothing() {
    let sb = Sandbox::new();
    assert_exit(&sb.run(&["add", "ok"], b"pw\n"), 0, "added ok");
    let before = fs::read(&sb.passwd).expect("read");
    // EX_USAGE: a user name that is not allowed.
    assert_exit(
        &sb.run(&["add", "a:b"], b"pw\n"),
        64,
        "bad user name \"a:b\"",
    );
    assert_exit(
        &sb.run(&["add", &"u".repeat(65)], b"pw\n"),
        64,
        "longer than 64",
    );
    // EX_DATAERR: no or a bad password.
    assert_exit(
        &sb.run(&["add", "x"], b""),
        65,
        "no password on standard input",
    );
    assert_exit(&sb.run(&["add", "x"], b"\n"), 65, "bad password: empty");
    let long = vec![b'p'; 5000];
    assert_exit(&sb.run(&["add", "x"], &long), 65, "longer than 1024 bytes");
    // EX_NOUSER: removing a user that is not there.
    assert_exit(&sb.run(&["remove", "x"], b""), 67, "no such user \"x\"");
    assert_eq!(fs::read(&sb.passwd).expect("read"), before);

    // EX_CONFIG: a bad configuration file.
    fs::write(&sb.config, "smtpd_passwd_file = \"\"\n").expect("write config");
    assert_exit(
        &sb.run(&["list"], b""),
        78,
        "bad value for `smtpd_passwd_file`",
    );
    // EX_CANTCREAT: the file's directory does not exist.
    let missing = sb.dir.path().join("no-such-dir/passwd");
    fs::write(&sb.config, format!("smtpd_passwd_file = {missing:?}\n")).expect("write config");
    assert_exit(&sb.run(&["add", "x"], b"pw\n"), 73, "no-such-dir");
    // A missing file lists no users (and says so on stderr).
    let out = sb.run(&["list"], b"");
    assert_exit(&out, 0, "no such file");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_file_others_may_read_is_refused() {
    let sb = Sandbox::new();
    assert_exit(&sb.run(&["add", "ok"], b"pw\n"), 0, "added ok");
    fs::set_permissions(&sb.passwd, fs::Permissions::from_mode(0o640)).expect("chmod");
    let before = fs::read(&sb.passwd).expect("read");
    for args in [&["list"][..], &["add", "other"], &["remove", "ok"]] {
        let out = sb.run(args, b"pw\n");
        assert_exit(&out, 78, "group or others may access (mode 0640)");
        assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    }
    assert_eq!(fs::read(&sb.passwd).expect("read"), before);
    assert!(matches!(
        PasswdFile::load(&sb.passwd),
        Err(PasswdError::Unsafe { .. })
    ));
}

#[test]
fn a_plaintext_password_in_the_file_is_refused_by_line() {
    let sb = Sandbox::new();
    assert_exit(&sb.run(&["add", "ok"], b"pw\n"), 0, "added ok");
    let mut text = fs::read_to_string(&sb.passwd).expect("read");
    text.push_str("# next is wrong\nmallory:hunter2\n");
    fs::write(&sb.passwd, &text).expect("write");
    let lines = text.lines().count();
    let out = sb.run(&["list"], b"");
    assert_exit(
        &out,
        78,
        &format!("{}:{lines}: expected an Argon2 hash", sb.passwd.display()),
    );
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    let e = PasswdFile::load(&sb.passwd).unwrap_err();
    assert!(
        matches!(e, PasswdError::Parse { line, .. } if line == lines),
        "{e}"
    );
}

/// True when the test can run commands as another uid; else says why not.
fn can_switch_users(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        true
    } else {
        eprintln!("skipping {test}: only root can run commands as another user");
        false
    }
}

#[test]
fn another_users_file_is_permission_denied_and_root_keeps_its_owner() {
    if !can_switch_users("another_users_file_is_permission_denied_and_root_keeps_its_owner") {
        return;
    }
    let sb = Sandbox::new();
    assert_exit(&sb.run(&["add", "ok"], b"pw\n"), 0, "added ok");
    fs::set_permissions(sb.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    fs::set_permissions(&sb.config, fs::Permissions::from_mode(0o644)).expect("chmod config");
    // The binary where USER can run it (the build directory may be closed).
    let bin = sb.dir.path().join("ringmail");
    fs::copy(BIN, &bin).expect("copy binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod binary");
    let as_user = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("passwd")
            .args(args)
            .arg("--config")
            .arg(&sb.config)
            .env_remove("RINGMAIL_CONFIG")
            .uid(USER)
            .gid(USER);
        run_with_stdin(c, b"pw\n")
    };
    // EX_NOPERM: root's private file, for another user.
    assert_exit(&as_user(&["list"]), 77, "permission denied");
    assert_exit(&as_user(&["add", "x"]), 77, "permission denied");

    // The file belongs to the daemon's user: an edit by root keeps it so.
    std::os::unix::fs::chown(&sb.passwd, Some(USER), Some(USER)).expect("chown");
    assert_exit(&sb.run(&["add", "second"], b"pw2\n"), 0, "added second");
    let meta = fs::metadata(&sb.passwd).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (USER, USER));
    assert_eq!(mode(&sb.passwd), 0o600);
    // And that user reads it.
    let out = as_user(&["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\nsecond\n");
    fs::remove_file(&bin).expect("remove the binary copy");
}

//! `ringmail suppress` run as the real binary (issue 14), checked through
//! the library API the daemon uses (`ringmail::queue::suppress`): round
//! trips, imports with bad rows, exports, damaged journals, adds that
//! survive SIGKILL, concurrent writers, compaction, refresh, and a list of
//! 100,000 entries.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ringmail::queue::suppress::{
    Change, Entry, Notice, Reason, ReasonKind, Scope, SharedSuppressions, SuppressionList,
};

const BIN: &str = env!("CARGO_BIN_EXE_ringmail");

/// An unprivileged uid without an /etc/passwd entry.
const USER: u32 = 64134;

/// A temp directory with a configuration naming a spool inside it.
struct Sandbox {
    dir: tempfile::TempDir,
    config: PathBuf,
    spool: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("ringmail-suppress-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("ringmail.toml");
        let spool = dir.path().join("spool");
        fs::write(&config, format!("spool_dir = {spool:?}\n")).expect("write config");
        Sandbox { dir, config, spool }
    }

    fn journal(&self) -> PathBuf {
        self.spool.join("suppress/journal")
    }

    /// `ringmail suppress ARGS --config CONFIG`, a clean environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("suppress")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RINGMAIL_CONFIG")
            .env_remove("RINGMAIL_IO")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run ringmail")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        out
    }

    fn load(&self) -> SuppressionList {
        SuppressionList::open(&self.spool).expect("load the list")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

fn assert_exit(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// One journal line as docs/SUPPRESSION.md describes it, written here
/// independently of the library's codec.
fn journal_line(payload: &str) -> String {
    format!("{:08x} {payload}\n", crc32c::crc32c(payload.as_bytes()))
}

fn addresses(list: &SuppressionList) -> Vec<String> {
    list.list().iter().map(|e| e.address).collect()
}

#[test]
fn add_list_and_remove_round_trip() {
    let sb = Sandbox::new();
    assert_eq!(stdout(&sb.ok(&["list"])), "");
    let out = sb.ok(&["add", "Ann@Example.NET", "bob@example.net"]);
    assert_eq!(
        stderr(&out),
        "ringmail/suppress: ann@example.net: added (global, manual)\n\
         ringmail/suppress: bob@example.net: added (global, manual)\n"
    );
    let out = sb.ok(&[
        "add",
        "cy@example.net",
        "--scope",
        "News.Example.COM",
        "--reason",
        "unsubscribe: clicked the link",
        "--campaign",
        "17",
    ]);
    assert_exit(
        &out,
        0,
        "cy@example.net: added (news.example.com, unsubscribe)",
    );
    let out = sb.ok(&["add", "ANN@example.net", "--reason", "bounce"]);
    assert_exit(
        &out,
        0,
        "ann@example.net: already suppressed (global, manual)",
    );

    let text = stdout(&sb.ok(&["list"]));
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows[0][..2], ["ann@example.net", "global"]);
    assert_eq!(rows[0][3..], ["-", "manual"]);
    assert!(
        rows[0][2].ends_with('Z') && rows[0][2].len() == 20,
        "{text}"
    );
    assert_eq!(
        rows[2],
        [
            "cy@example.net",
            "news.example.com",
            rows[2][2],
            "17",
            "unsubscribe: clicked the link"
        ]
    );
    let json = stdout(&sb.ok(&["list", "--json"]));
    let objects: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[2]["email"], "cy@example.net");
    assert_eq!(objects[2]["scope"], "news.example.com");
    assert_eq!(objects[2]["reason"], "unsubscribe");
    assert_eq!(objects[2]["detail"], "clicked the link");
    assert_eq!(objects[2]["campaign"], 17);
    assert!(objects[0]["campaign"].is_null());
    assert!(objects[0]["added"].as_u64().expect("added") > 1_600_000_000);

    // The library sees what the command wrote, scopes included.
    let list = sb.load();
    assert!(list.is_suppressed("ANN@example.net", "").is_some());
    assert!(list
        .is_suppressed("cy@example.net", "news.example.com")
        .is_some());
    assert!(list
        .is_suppressed("cy@example.net", "shop.example.com")
        .is_none());

    let out = sb.ok(&["remove", "Bob@example.net", "cy@example.net"]);
    assert_eq!(
        stderr(&out),
        "ringmail/suppress: bob@example.net: removed (global)\n\
         ringmail/suppress: cy@example.net: not suppressed (global)\n"
    );
    let out = sb.ok(&["remove", "cy@example.net", "--scope", "news.example.com"]);
    assert_exit(&out, 0, "cy@example.net: removed (news.example.com)");
    assert_eq!(addresses(&sb.load()), ["ann@example.net"]);

    // Bad input: sysexits, nothing changed.
    let before = fs::read(sb.journal()).expect("read journal");
    let out = sb.run(&[
        "add",
        "dee@example.net",
        "not-an-address",
        "e f@example.net",
    ]);
    assert_exit(&out, 65, "nothing changed: 2 bad addresses");
    assert!(stderr(&out).contains("bad address \"not-an-address\": no domain"));
    assert_exit(
        &sb.run(&["add", "dee@example.net", "--scope", "nodot"]),
        64,
        "--scope: bad scope \"nodot\"",
    );
    assert_exit(&sb.run(&["remove", "x"]), 65, "no domain");
    assert_eq!(fs::read(sb.journal()).expect("read journal"), before);
    fs::write(&sb.config, "spool_dir = \"\"\n").expect("write config");
    assert_exit(&sb.run(&["list"]), 78, "spool_dir");
}

#[test]
fn import_reports_bad_rows_and_imports_the_rest() {
    let sb = Sandbox::new();
    sb.ok(&["add", "old@example.net"]);
    let csv = sb.dir.path().join("list.csv");
    fs::write(
        &csv,
        "name,email,reason,scope\n\
         Ann,ann@example.net,unsubscribe,\n\
         Bad,not an address,,\n\
         Old,OLD@example.net,,\n\
         Cy,cy@example.net,asked by phone,news.example.com\n\
         Di,di@example.net,,localhost\n\
         Ed,ed@example.net,,\n",
    )
    .expect("write csv");
    let out = sb.run(&["import", csv.to_str().expect("utf-8")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(
        err.contains("list.csv:3: not an address: bad address"),
        "{err}"
    );
    assert!(
        err.contains("list.csv:6: di@example.net: bad scope \"localhost\""),
        "{err}"
    );
    assert!(
        err.contains("6 rows: 3 added, 1 already suppressed, 2 refused"),
        "{err}"
    );
    let list = sb.load();
    assert_eq!(
        addresses(&list),
        [
            "ann@example.net",
            "cy@example.net",
            "ed@example.net",
            "old@example.net"
        ]
    );
    let ann = list.is_suppressed("ann@example.net", "").expect("ann");
    assert_eq!(ann.reason, Reason::new(ReasonKind::Unsubscribe, ""));
    let cy = list
        .is_suppressed("cy@example.net", "news.example.com")
        .expect("cy");
    assert_eq!(cy.reason, Reason::new(ReasonKind::Import, "asked by phone"));
    let ed = list.is_suppressed("ed@example.net", "").expect("ed");
    assert_eq!(ed.reason.kind, ReasonKind::Import);

    // A plain list from standard input, with a default scope and reason.
    let mut child = sb
        .cmd(&[
            "import",
            "-",
            "--scope",
            "shop.example",
            "--reason",
            "complaint",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"# from the feedback loop\nfay@example.net\n\ngus@example.net\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_exit(&out, 0, "2 rows: 2 added, 0 already suppressed, 0 refused");
    let fay = sb
        .load()
        .is_suppressed("fay@example.net", "shop.example")
        .expect("fay");
    assert_eq!(fay.reason.kind, ReasonKind::Complaint);
    assert!(sb.load().is_suppressed("fay@example.net", "").is_none());

    assert_exit(
        &sb.run(&["import", "/no/such/file.csv"]),
        66,
        "/no/such/file.csv",
    );
}

#[test]
fn export_writes_every_entry_as_csv() {
    let sb = Sandbox::new();
    sb.ok(&[
        "add",
        "b@example.net",
        "--reason",
        "bounce: 550 5.1.1 \"no, such user\"",
    ]);
    sb.ok(&[
        "add",
        "a@example.net",
        "--scope",
        "news.example.com",
        "--campaign",
        "3",
    ]);
    let csv = stdout(&sb.ok(&["export"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(lines[0], "email,scope,reason,detail,added,campaign");
    assert!(
        lines[1].starts_with("a@example.net,news.example.com,manual,,"),
        "{csv}"
    );
    assert!(lines[1].ends_with(",3"), "{csv}");
    assert!(
        lines[2].starts_with("b@example.net,global,bounce,\"550 5.1.1 \"\"no, such user\"\"\","),
        "{csv}"
    );
    assert!(lines[2].ends_with(','), "{csv}");

    let file = sb.dir.path().join("out.csv");
    let out = sb.ok(&["export", file.to_str().expect("utf-8")]);
    assert_exit(&out, 0, "exported 2 entries to");
    assert_eq!(fs::read_to_string(&file).expect("read export"), csv);

    // The export is what an import reads back, field for field.
    let other = Sandbox::new();
    other.ok(&["import", file.to_str().expect("utf-8")]);
    let a: Vec<Entry> = sb.load().list().iter().collect();
    let b: Vec<Entry> = other.load().list().iter().collect();
    assert_eq!(a, b);

    assert_exit(
        &sb.run(&["export", "/no/such/dir/out.csv"]),
        73,
        "/no/such/dir/out.csv",
    );
}

#[test]
fn damaged_journal_lines_are_skipped_and_reported() {
    let sb = Sandbox::new();
    sb.ok(&["add", "a@example.net", "b@example.net", "c@example.net"]);
    let text = fs::read_to_string(sb.journal()).expect("read journal");
    assert_eq!(text.lines().count(), 4, "{text}");
    // Line 3 (b) with a corrupted checksum, and a torn line at the end.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[2].replace_range(0..8, "00000000");
    let torn = &journal_line("+ * torn@example.net 1700000000 manual -")[..30];
    fs::write(sb.journal(), format!("{}\n{torn}", lines.join("\n"))).expect("write journal");

    let out = sb.ok(&["list"]);
    let text = stdout(&out);
    let listed: Vec<&str> = text.lines().map(|l| &l[..13]).collect();
    assert_eq!(listed, ["a@example.net", "c@example.net"]);
    let err = stderr(&out);
    assert!(
        err.contains("journal: line 3: skipped: checksum mismatch"),
        "{err}"
    );
    assert!(
        err.contains("journal: line 5: ignored an incomplete last line of 30 bytes"),
        "{err}"
    );

    let mut list = sb.load();
    assert_eq!(addresses(&list), ["a@example.net", "c@example.net"]);
    assert_eq!(
        list.take_notices(),
        [
            Notice::BadLine {
                line: 3,
                reason: "checksum mismatch"
            },
            Notice::TornTail { line: 5, bytes: 30 }
        ]
    );

    // The next writer cuts the torn line and its line is whole.
    let out = sb.ok(&["add", "d@example.net"]);
    assert!(stderr(&out).contains("line 5: cut an incomplete last line of 30 bytes"));
    list.refresh().expect("refresh");
    assert_eq!(
        addresses(&list),
        ["a@example.net", "c@example.net", "d@example.net"]
    );
    let mut fresh = sb.load();
    assert_eq!(fresh.len(), 3);
    assert_eq!(
        fresh.take_notices(),
        [Notice::BadLine {
            line: 3,
            reason: "checksum mismatch"
        }]
    );
}

#[test]
fn adds_that_returned_survive_sigkill() {
    let sb = Sandbox::new();
    let all: Vec<String> = (0..1000).map(|i| format!("k{i}@example.net")).collect();
    let mut args = vec!["add"];
    args.extend(all.iter().map(String::as_str));
    let mut child = sb.cmd(&args).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut reported = Vec::new();
    let mut partial = None;
    let mut killed = false;
    let err = BufReader::new(child.stderr.take().expect("stderr"));
    for line in err.lines() {
        let line = line.expect("read stderr");
        assert!(partial.is_none(), "a line after {partial:?}");
        let address = line
            .strip_prefix("ringmail/suppress: ")
            .and_then(|l| l.strip_suffix(": added (global, manual)"));
        match address {
            Some(a) => reported.push(a.to_string()),
            // Killed in the middle of printing: only the last line.
            None => partial = Some(line),
        }
        if reported.len() == 20 && !killed {
            child.kill().expect("SIGKILL");
            killed = true;
        }
    }
    let status = child.wait().expect("wait");
    assert!(killed);
    // Killed, unless it was faster than this test (then it exited 0).
    assert!(status.code().is_none() || status.success(), "{status:?}");
    assert!(reported.len() >= 20);

    let mut list = sb.load();
    for a in &reported {
        assert!(
            list.is_suppressed(a, "").is_some(),
            "{a} was reported added"
        );
    }
    // No line is damaged; at most an unfinished last one is ignored.
    let notices = list.take_notices();
    assert!(
        notices.iter().all(|n| matches!(n, Notice::TornTail { .. })),
        "{notices:?}"
    );
    let present = list.len();
    assert!(present >= reported.len() && present <= reported.len() + 1);
    sb.ok(&["add", "after@example.net"]);
    assert_eq!(sb.load().len(), present + 1);
}

#[test]
fn two_processes_adding_at_once_keep_every_entry() {
    let sb = Sandbox::new();
    let children: Vec<_> = ["p", "q"]
        .iter()
        .map(|who| {
            let addresses: Vec<String> =
                (0..200).map(|i| format!("{who}{i}@example.net")).collect();
            let mut args = vec!["add"];
            args.extend(addresses.iter().map(String::as_str));
            sb.cmd(&args).stderr(Stdio::piped()).spawn().expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 200);
    }
    let mut list = sb.load();
    assert_eq!(list.len(), 400);
    for who in ["p", "q"] {
        for i in 0..200 {
            assert!(list
                .is_suppressed(&format!("{who}{i}@example.net"), "")
                .is_some());
        }
    }
    assert_eq!(list.journal_lines(), 401);
    assert!(list.take_notices().is_empty());
}

#[test]
fn compaction_keeps_exactly_the_live_set() {
    let sb = Sandbox::new();
    sb.ok(&["add", "first@example.net", "--scope", "news.example.com"]);
    let mut watcher = sb.load();
    let mut list = sb.load();
    let adds: Vec<Change> = (0..12_000)
        .map(|i| {
            let mut e = Entry::new(
                &format!("c{i}@example.net"),
                Scope::Global,
                Reason::new(ReasonKind::Bounce, &format!("550 mailbox {} full", i % 7)),
            )
            .expect("entry");
            e.campaign = Some(i % 5);
            Change::Add(e)
        })
        .collect();
    list.apply(&adds).expect("add 12,000");
    assert_eq!(list.journal_lines(), 2 + 12_000);
    let removes: Vec<Change> = (0..12_000)
        .filter(|i| i % 12 != 0)
        .map(|i| Change::Remove {
            address: format!("C{i}@example.net"),
            scope: Scope::Global,
        })
        .collect();
    list.apply(&removes).expect("remove 11,000");
    // 23,002 lines > 2 * 1,001 + 10,000: the writer compacted.
    let compacted: Vec<Notice> = list.take_notices();
    assert!(
        matches!(compacted.as_slice(), [Notice::Compacted(c)] if c.lines_before == 23_002 && c.lines_after == 1_002),
        "{compacted:?}"
    );
    let expected: BTreeSet<String> = (0..12_000)
        .filter(|i| i % 12 == 0)
        .map(|i| format!("c{i}@example.net"))
        .chain(["first@example.net".to_string()])
        .collect();
    let fresh = sb.load();
    assert_eq!(fresh.journal_lines(), 1_002);
    assert_eq!(
        addresses(&fresh).into_iter().collect::<BTreeSet<_>>(),
        expected
    );
    let before: Vec<Entry> = list.list().iter().collect();
    let after: Vec<Entry> = fresh.list().iter().collect();
    assert_eq!(before, after);
    assert!(fresh
        .is_suppressed("first@example.net", "news.example.com")
        .is_some());
    let c0 = fresh.is_suppressed("c0@example.net", "").expect("c0");
    assert_eq!(
        (c0.campaign, c0.reason.detail.as_str()),
        (Some(0), "550 mailbox 0 full")
    );
    // A reader that had the old file reloads the new one.
    let r = watcher.refresh().expect("refresh");
    assert!(r.reloaded);
    assert_eq!(addresses(&watcher), addresses(&fresh));
    // Only the journal is left in the directory.
    let names: Vec<_> = fs::read_dir(sb.spool.join("suppress"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["journal"]);
}

#[test]
fn refresh_sees_another_process_change() {
    let sb = Sandbox::new();
    let shared = SharedSuppressions::new(sb.load());
    assert!(shared.check("x@example.net", "news.example.com").is_none());
    sb.ok(&["add", "X@example.net", "--scope", "news.example.com"]);
    assert!(shared.check("x@example.net", "news.example.com").is_none());
    let r = shared.refresh().expect("refresh");
    assert!(r.reloaded, "the journal appeared");
    let e = shared
        .check("x@example.net", "NEWS.example.com")
        .expect("suppressed");
    assert_eq!(e.scope, Scope::SenderDomain("news.example.com".into()));
    assert!(shared.check("x@example.net", "other.example.com").is_none());

    sb.ok(&["remove", "x@example.net", "--scope", "news.example.com"]);
    let r = shared.refresh().expect("refresh");
    assert_eq!((r.reloaded, r.lines, r.entries), (false, 1, 0));
    assert!(shared.check("x@example.net", "news.example.com").is_none());
    // A change through the shared list reaches the command.
    shared
        .add(
            Entry::new(
                "y@example.net",
                Scope::Global,
                Reason::new(ReasonKind::Unsubscribe, ""),
            )
            .expect("entry"),
        )
        .expect("add");
    assert!(stdout(&sb.ok(&["list"])).starts_with("y@example.net\tglobal\t"));
}

#[test]
fn a_hundred_thousand_entries_load() {
    let sb = Sandbox::new();
    let dir = sb.spool.join("suppress");
    fs::create_dir_all(&dir).expect("mkdir");
    let mut text = journal_line("# ringmail-suppress 1");
    for i in 0..100_000u64 {
        let scope = if i % 10 == 0 { "news.example.com" } else { "*" };
        text.push_str(&journal_line(&format!(
            "+ {scope} user{i}@example{}.net {} bounce {} 550 5.1.1 user unknown",
            i % 100,
            1_700_000_000 + i,
            i % 3
        )));
    }
    text.push_str(&journal_line("- * user1@example1.net 1800000000"));
    fs::write(dir.join("journal"), text).expect("write journal");

    let mut list = sb.load();
    assert_eq!(list.len(), 99_999);
    assert!(list.take_notices().is_empty());
    assert!(list.is_suppressed("user1@example1.net", "").is_none());
    let e = list
        .is_suppressed("USER99999@example99.net", "")
        .expect("last");
    assert_eq!((e.added, e.campaign), (1_700_099_999, Some(0)));
    assert_eq!(
        e.reason,
        Reason::new(ReasonKind::Bounce, "550 5.1.1 user unknown")
    );
    assert!(list.is_suppressed("user10@example10.net", "").is_none());
    assert!(list
        .is_suppressed("user10@example10.net", "news.example.com")
        .is_some());
    let per_entry = list.approx_heap_bytes() / list.len();
    assert!(per_entry < 200, "{per_entry} bytes an entry");
    assert_eq!(list.list().len(), 99_999);
}

#[test]
fn permissions_and_owners_with_another_user() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: only root can run commands as another user");
        return;
    }
    let sb = Sandbox::new();
    fs::set_permissions(sb.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&sb.config, fs::Permissions::from_mode(0o644)).expect("chmod");
    let bin = sb.dir.path().join("ringmail");
    fs::copy(BIN, &bin).expect("copy binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    let as_user = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("suppress")
            .args(args)
            .arg("--config")
            .arg(&sb.config)
            .env_remove("RINGMAIL_CONFIG")
            .uid(USER)
            .gid(USER);
        c.output().expect("run as user")
    };
    // Root's list: another user may not read it.
    sb.ok(&["add", "root@example.net"]);
    fs::set_permissions(&sb.spool, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(mode(&sb.journal()), 0o600);
    assert_eq!(mode(&sb.spool.join("suppress")), 0o700);
    assert_exit(&as_user(&["list"]), 77, "Permission denied");

    // A spool owned by the daemon's user: root's first write gives it the
    // files, and that user reads and writes them.
    fs::remove_dir_all(sb.spool.join("suppress")).expect("rm");
    std::os::unix::fs::chown(&sb.spool, Some(USER), Some(USER)).expect("chown");
    sb.ok(&["add", "root@example.net"]);
    let meta = fs::metadata(sb.journal()).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (USER, USER));
    let out = as_user(&["add", "user@example.net"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A compaction by root keeps the owner.
    sb.load().compact().expect("compact");
    let meta = fs::metadata(sb.journal()).expect("stat");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (USER, USER, 0o600)
    );
    assert_eq!(stdout(&as_user(&["list"])).lines().count(), 2);
    fs::remove_file(&bin).expect("remove the binary copy");
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

//! The `sendmail` command as a program: its flags, its exit codes, what it
//! writes to `maildrop/`, how it behaves under the names `sendmail`,
//! `mailq` and `newaliases`, and what the daemon queues from it.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A maildrop file, read back: the envelope lines and the message.
#[derive(Debug)]
struct Dropped {
    sender: String,
    fullname: Option<String>,
    rcpts: Vec<String>,
    message: Vec<u8>,
}

/// Reads the only file in `maildrop/`, removing it so the next case starts
/// from an empty directory.
fn take_dropped(sb: &Sandbox) -> Dropped {
    let names = names_in(&sb.maildrop());
    assert_eq!(names.len(), 1, "expected one maildrop file, got {names:?}");
    let path = sb.maildrop().join(&names[0]);
    let data = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("maildrop envelope ends with an empty line");
    let envelope = std::str::from_utf8(&data[..split]).unwrap();
    let mut lines = envelope.lines();
    assert_eq!(lines.next(), Some("RINGMAIL-MAILDROP 1"));
    let mut d = Dropped {
        sender: String::new(),
        fullname: None,
        rcpts: Vec::new(),
        message: data[split + 2..].to_vec(),
    };
    for line in lines {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "sender" => d.sender = v.to_string(),
            "fullname" => d.fullname = Some(v.to_string()),
            "rcpt" => d.rcpts.push(v.to_string()),
            _ => {}
        }
    }
    d
}

/// Asserts the exit code and that nothing was left in `maildrop/`.
fn assert_refused(sb: &Sandbox, out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.stderr.is_empty(),
        "{what}: a refusal must say why on stderr"
    );
    let left: Vec<String> = std::fs::read_dir(sb.maildrop())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "{what}: refused message left files in maildrop: {left:?}"
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SIMPLE: &[u8] = b"Subject: hello\n\nhello world\n";

#[test]
fn t_takes_recipients_from_headers() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let msg = b"From: me@example.com\n\
                To: To One <to1@example.net>, to2@example.net\n\
                Cc: cc@example.net\n\
                Bcc: hidden@example.net\n\
                Subject: t\n\nbody\n";

    // -t alone: To, Cc and Bcc recipients.
    sb.sendmail_ok(&["-t"], msg);
    let d = take_dropped(&sb);
    let mut got = d.rcpts.clone();
    got.sort();
    assert_eq!(
        got,
        [
            "cc@example.net",
            "hidden@example.net",
            "to1@example.net",
            "to2@example.net"
        ]
    );

    // -t plus command-line recipients: both, each once.
    sb.sendmail_ok(&["-t", "extra@example.net", "cc@example.net"], msg);
    let d = take_dropped(&sb);
    let mut got = d.rcpts.clone();
    got.sort();
    assert_eq!(
        got,
        [
            "cc@example.net",
            "extra@example.net",
            "hidden@example.net",
            "to1@example.net",
            "to2@example.net"
        ],
        "command-line recipients are added to the header ones, without duplicates"
    );

    // Without -t the headers give no recipients.
    sb.sendmail_ok(&["only@example.net"], msg);
    assert_eq!(take_dropped(&sb).rcpts, ["only@example.net"]);

    // Resent-* headers, when present, replace To/Cc/Bcc.
    let resent = b"Resent-To: resent@example.net\nTo: orig@example.net\nSubject: r\n\nx\n";
    sb.sendmail_ok(&["-t"], resent);
    assert_eq!(take_dropped(&sb).rcpts, ["resent@example.net"]);

    // -t with no recipient header at all: usage error, nothing written.
    let out = sb.sendmail(&["-t"], SIMPLE);
    assert_refused(&sb, &out, 64, "-t without recipient headers");
}

#[test]
fn lone_dot_ends_input_unless_i() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let input = b"Subject: dots\n\nbefore the dot\n.\nafter the dot\n";

    sb.sendmail_ok(&["r@example.net"], input);
    let d = take_dropped(&sb);
    assert!(contains(&d.message, b"before the dot"));
    assert!(
        !contains(&d.message, b"after the dot"),
        "without -i a lone dot ends the message: {:?}",
        String::from_utf8_lossy(&d.message)
    );

    for flag in [&["-i"][..], &["-oi"], &["-o", "i"], &["-ti"]] {
        let mut args = flag.to_vec();
        args.push("r@example.net");
        sb.sendmail_ok(&args, input);
        let d = take_dropped(&sb);
        assert_eq!(
            d.message, input,
            "{flag:?}: the whole input is the message, lone dot included"
        );
    }

    // CRLF lone dot ends the input too.
    sb.sendmail_ok(
        &["r@example.net"],
        b"Subject: x\r\n\r\nline\r\n.\r\nrest\r\n",
    );
    assert!(!contains(&take_dropped(&sb).message, b"rest"));
}

#[test]
fn f_sets_the_envelope_sender() {
    let sb = Sandbox::new();
    sb.make_maildrop();

    sb.sendmail_ok(&["-f", "bounces@example.com", "r@example.net"], SIMPLE);
    assert_eq!(take_dropped(&sb).sender, "bounces@example.com");

    sb.sendmail_ok(&["-fattached@example.com", "r@example.net"], SIMPLE);
    assert_eq!(take_dropped(&sb).sender, "attached@example.com");

    // -r is -f; the last one wins; options after operands still count.
    sb.sendmail_ok(
        &[
            "-f",
            "first@example.com",
            "r@example.net",
            "-r",
            "last@example.com",
        ],
        SIMPLE,
    );
    assert_eq!(take_dropped(&sb).sender, "last@example.com");

    // Unqualified: @myorigin appended.
    sb.sendmail_ok(&["-f", "www-data", "r@example.net"], SIMPLE);
    assert_eq!(take_dropped(&sb).sender, "www-data@example.org");

    // Null sender.
    for null in ["", "<>"] {
        sb.sendmail_ok(&["-f", null, "r@example.net"], SIMPLE);
        assert_eq!(take_dropped(&sb).sender, "", "-f {null:?}");
    }

    // Without -f: the invoking user at myorigin.
    sb.sendmail_ok(&["r@example.net"], SIMPLE);
    let sender = take_dropped(&sb).sender;
    assert!(sender.ends_with("@example.org"), "{sender}");

    // Unqualified recipients get @myorigin too.
    sb.sendmail_ok(&["root"], SIMPLE);
    assert_eq!(take_dropped(&sb).rcpts, ["root@example.org"]);
}

#[test]
fn double_dash_ends_options() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let input = b"Subject: dd\n\nbefore\n.\nafter\n";
    // After "--", "-i" is a recipient, not the -i flag: the lone dot still
    // ends the message.
    sb.sendmail_ok(&["--", "r@example.net", "-i"], input);
    let d = take_dropped(&sb);
    assert_eq!(d.rcpts, ["r@example.net", "-i@example.org"]);
    assert!(!contains(&d.message, b"after"));

    sb.sendmail_ok(&["-f", "s@example.com", "--", "-dash@example.net"], SIMPLE);
    let d = take_dropped(&sb);
    assert_eq!(d.rcpts, ["-dash@example.net"]);
    assert_eq!(d.sender, "s@example.com");

    // Without "--" the same word is an option.
    let out = sb.sendmail(&["-dash@example.net"], SIMPLE);
    assert_refused(&sb, &out, 64, "-d is not an option");
}

#[test]
fn usage_errors_exit_64() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let cases: &[(&[&str], &str)] = &[
        (&["-Z", "r@example.net"], "illegal option -- Z"),
        (&["--help"], "--help"),
        (&[], "no recipients"),
        (&["-f"], "requires an argument"),
        (&["-bt", "r@example.net"], "-bt"),
        (&["-bp", "r@example.net"], "takes no recipients"),
        (&["-B", "9BIT", "r@example.net"], "-B"),
        (&["-N", "sometimes", "r@example.net"], "-N"),
        (&["-F", "two\nlines", "r@example.net"], "-F"),
        (&["-bd"], "ringmail serve"),
    ];
    for (args, needle) in cases {
        let out = sb.sendmail(args, SIMPLE);
        assert_refused(&sb, &out, 64, &format!("{args:?}"));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: stderr should mention {needle:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn bad_addresses_exit_67() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let cases: &[(&[&str], &[u8])] = &[
        (&["bad address@@example.net"], SIMPLE),
        (&["ok@example.net", "x@"], SIMPLE),
        (&["<unbalanced@example.net"], SIMPLE),
        (&["-f", "a@@b.example", "r@example.net"], SIMPLE),
        (&["-t"], b"To: not@@valid\nSubject: x\n\nbody\n"),
    ];
    for (args, input) in cases {
        let out = sb.sendmail(args, input);
        assert_refused(&sb, &out, 67, &format!("{args:?}"));
    }
    let out = sb.sendmail(&["bad address@@example.net"], SIMPLE);
    assert!(
        stderr(&out).contains("bad address@@example.net"),
        "the error names the address: {}",
        stderr(&out)
    );
}

#[test]
fn malformed_messages_exit_65() {
    let sb = Sandbox::with(Settings {
        message_size_limit: 2048,
        ..Settings::default()
    });
    sb.make_maildrop();

    // Size limit: 2048 bytes pass, 2049 do not, with or without -i.
    let sized = |n: usize| {
        let mut m = b"Subject: big\n\n".to_vec();
        while m.len() < n - 1 {
            m.push(b'x');
        }
        m.push(b'\n');
        assert_eq!(m.len(), n);
        m
    };
    sb.sendmail_ok(&["r@example.net"], &sized(2048));
    take_dropped(&sb);
    sb.sendmail_ok(&["-i", "r@example.net"], &sized(2048));
    take_dropped(&sb);
    for args in [&["r@example.net"][..], &["-i", "r@example.net"]] {
        let out = sb.sendmail(args, &sized(2049));
        assert_refused(&sb, &out, 65, "one byte over message_size_limit");
        assert!(stderr(&out).contains("too large"), "{}", stderr(&out));
        let out = sb.sendmail(args, &vec![b'y'; 100_000]);
        assert_refused(&sb, &out, 65, "far over message_size_limit");
    }

    // Header lines: 998 octets pass, 999 do not.
    let header_line = |n: usize| {
        let mut m = b"Subject: ".to_vec();
        while m.len() < n {
            m.push(b'h');
        }
        m.extend_from_slice(b"\nTo: r@example.net\n\nbody\n");
        m
    };
    sb.sendmail_ok(&["r@example.net"], &header_line(998));
    take_dropped(&sb);
    let out = sb.sendmail(&["r@example.net"], &header_line(999));
    assert_refused(&sb, &out, 65, "999-octet header line");
    assert!(stderr(&out).contains("998"), "{}", stderr(&out));
    // Also with -t, where the headers are read for recipients.
    let out = sb.sendmail(&["-t"], &header_line(1500));
    assert_refused(&sb, &out, 65, "1500-octet header line with -t");

    // NUL bytes, in the body or in a header.
    for input in [
        &b"Subject: nul\n\nbo\0dy\n"[..],
        b"Subj\0ect: nul\n\nbody\n",
    ] {
        let out = sb.sendmail(&["r@example.net"], input);
        assert_refused(&sb, &out, 65, "NUL byte");
        assert!(stderr(&out).contains("NUL"), "{}", stderr(&out));
    }
}

#[test]
fn missing_spool_exits_75() {
    let sb = Sandbox::new();
    // The spool directory does not exist at all.
    assert!(!sb.spool.exists());
    let out = sb.sendmail(&["r@example.net"], SIMPLE);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("maildrop"), "{}", stderr(&out));
    assert!(!sb.spool.exists(), "sendmail must not create the spool");

    // The spool exists but has no maildrop/.
    std::fs::create_dir_all(sb.spool.join("pickup")).unwrap();
    let out = sb.sendmail(&["r@example.net"], SIMPLE);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
}

#[test]
fn bad_config_exits_78() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    std::fs::write(&sb.config, "spool_dri = \"/nowhere\"\n").unwrap();
    let out = sb.sendmail(&["r@example.net"], SIMPLE);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("spool_dri"), "{}", stderr(&out));
}

/// A directory of symlinks named like the classic commands.
fn command_links(sb: &Sandbox) -> PathBuf {
    let bin = sb.root().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["sendmail", "mailq", "newaliases"] {
        let link = bin.join(name);
        if !link.exists() {
            symlink(BIN, &link).unwrap();
        }
    }
    bin
}

fn linked(bin: &Path, name: &str) -> Command {
    let mut c = Command::new(bin.join(name));
    c.env_remove("RINGMAIL_CONFIG").env_remove("RINGMAIL_IO");
    c
}

fn stdout_ok(out: Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn invoked_as_sendmail_mailq_newaliases() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let bin = command_links(&sb);
    let cfg = sb.config.to_str().unwrap();

    let empty = "Mail queue is empty\n";
    let out = linked(&bin, "mailq").args(["-C", cfg]).output().unwrap();
    assert_eq!(stdout_ok(out, "mailq -C"), empty);
    let out = linked(&bin, "sendmail")
        .args(["-bp", "-C", cfg])
        .output()
        .unwrap();
    assert_eq!(stdout_ok(out, "sendmail -bp"), empty);
    // The configuration through $RINGMAIL_CONFIG.
    let out = linked(&bin, "mailq")
        .env("RINGMAIL_CONFIG", &sb.config)
        .output()
        .unwrap();
    assert_eq!(stdout_ok(out, "RINGMAIL_CONFIG=... mailq"), empty);
    let out = linked(&bin, "newaliases")
        .args(["-C", cfg])
        .output()
        .unwrap();
    stdout_ok(out, "newaliases");
    // mailq takes no recipients.
    let out = linked(&bin, "mailq")
        .args(["-C", cfg, "r@example.net"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));

    // Invoked as sendmail, the default mode delivers.
    let mut c = linked(&bin, "sendmail");
    c.args(["-C", cfg, "-oi", "r@example.net"]);
    let out = run_with_stdin(c, SIMPLE);
    stdout_ok(out, "sendmail via symlink");
    let d = take_dropped(&sb);
    assert_eq!(d.rcpts, ["r@example.net"]);
    assert_eq!(d.message, SIMPLE);
    // ... and mailq -bm delivers too: options override the name.
    let mut c = linked(&bin, "mailq");
    c.env("RINGMAIL_CONFIG", &sb.config)
        .args(["-bm", "q@example.net"]);
    stdout_ok(run_with_stdin(c, SIMPLE), "mailq -bm");
    assert_eq!(take_dropped(&sb).rcpts, ["q@example.net"]);
}

#[test]
fn flush_without_daemon_exits_69() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let out = sb.sendmail(&["-q"], b"");
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let out = sb.sendmail(&["-q30m"], b"");
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let out = sb
        .cmd()
        .args(["queue", "flush", "--config"])
        .arg(&sb.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
}

/// `sendmail -q` and `queue flush` reach a running daemon (exit 0), and
/// exit 69 again once it has stopped.
fn flush_with_daemon(io: &str) {
    let sb = Sandbox::new();
    let mut d = sb.start_daemon(io);
    let out = sb.sendmail(&["-q"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    d.wait_for_log("flush requested");
    let out = sb
        .cmd()
        .args(["queue", "flush", "--config"])
        .arg(&sb.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    d.stop();
    let out = sb.sendmail(&["-q"], b"");
    assert_eq!(out.status.code(), Some(69), "after stop: {}", stderr(&out));
}
daemon_test!(flush_with_daemon);

/// What the daemon queues from sendmail: -f sender, -t recipients with Bcc
/// removed from the message, -F full name in an added From:, and the
/// listing through `mailq` under its own name.
fn queued_wire_form(io: &str) {
    let sb = Sandbox::new();
    sb.make_maildrop();
    // Submitted while the daemon is down.
    sb.sendmail_ok(
        &["-t", "-i", "-f", "list@example.com"],
        b"From: List <list@example.com>\n\
          To: a@example.net\n\
          Cc: b@example.net\n\
          Bcc: secret@example.net\n\
          Subject: with bcc\n\nbody one\n.\nstill body\n",
    );
    sb.sendmail_ok(
        &["-F", "Jane Doe", "-f", "jane@example.com", "c@example.net"],
        b"Subject: no from\n\nbody two\n",
    );
    sb.sendmail_ok(
        &["-F", "Ignored Name", "-f", "x@example.com", "d@example.net"],
        b"From: Real Name <x@example.com>\nSubject: has from\n\nbody three\n",
    );

    let mut d = sb.start_daemon(io);
    d.wait_until("maildrop/ empty", || count_in(&sb.maildrop()) == 0);
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let by_first: std::collections::HashMap<&str, &Listed> = listed
        .iter()
        .map(|l| (l.recipients[0].address.as_str(), l))
        .collect();

    let bcc = by_first
        .values()
        .find(|l| l.sender == "list@example.com")
        .expect("the -t message is queued with the -f sender");
    let mut rcpts = bcc.addresses();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["a@example.net", "b@example.net", "secret@example.net"]
    );
    // No relay host in this sandbox: once the queue manager has looked at
    // the message it is deferred (the sandbox's DNS server does not answer),
    // never lost.
    assert!(
        bcc.recipients.iter().all(|r| r.status == "pending"
            || (r.status == "deferred"
                && r.reason
                    .as_deref()
                    .is_some_and(|x| x.contains("Name service error")))),
        "{:?}",
        bcc.recipients
    );
    assert_eq!(by_first["c@example.net"].sender, "jane@example.com");
    assert_eq!(by_first["d@example.net"].sender, "x@example.com");

    let records = sb.segment_messages();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert!(r.crc_ok);
        let l = listed
            .iter()
            .find(|l| l.queue_id == r.queue_id)
            .expect("every record is listed");
        assert_eq!(l.size, r.wire.len() as u64);
        assert_eq!(l.message_id, r.message_id);
    }
    let wire_of = |rcpt: &str| -> Vec<u8> {
        records
            .iter()
            .find(|r| r.recipients.iter().any(|a| a == rcpt))
            .unwrap_or_else(|| panic!("no record for {rcpt}"))
            .wire
            .clone()
    };

    let w = wire_of("secret@example.net");
    let headers = String::from_utf8_lossy(header_section(&w)).to_ascii_lowercase();
    assert!(
        !headers.contains("\nbcc:") && !headers.starts_with("bcc:"),
        "Bcc: must be removed from the queued message:\n{}",
        String::from_utf8_lossy(&w)
    );
    assert!(
        !contains(&w, b"secret@example.net"),
        "the Bcc address leaks"
    );
    assert!(contains(&w, b"To: a@example.net\r\n"));
    assert!(contains(&w, b"Cc: b@example.net\r\n"));
    assert!(
        contains(&w, b"body one\r\n..\r\nstill body\r\n"),
        "-i keeps the lone dot, stored dot-stuffed with CRLF:\n{}",
        String::from_utf8_lossy(&w)
    );

    let w = wire_of("c@example.net");
    assert!(
        contains(header_section(&w), b"From: Jane Doe <jane@example.com>\r\n"),
        "-F names the added From:\n{}",
        String::from_utf8_lossy(&w)
    );
    let w = wire_of("d@example.net");
    assert!(contains(&w, b"From: Real Name <x@example.com>\r\n"));
    assert!(
        !contains(&w, b"Ignored Name"),
        "-F must not touch an existing From:\n{}",
        String::from_utf8_lossy(&w)
    );

    // mailq through a symlink lists the same queue as `queue list`.
    let bin = command_links(&sb);
    let out = linked(&bin, "mailq")
        .args(["-C", sb.config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = stdout_ok(out, "mailq");
    for l in &listed {
        assert!(text.contains(&l.queue_id), "{text}");
    }
    for a in ["a@example.net", "secret@example.net", "c@example.net"] {
        assert!(text.contains(a), "{text}");
    }
    assert!(text.contains("in 3 Requests."), "{text}");
    let out = sb
        .cmd()
        .args(["queue", "list", "--config"])
        .arg(&sb.config)
        .output()
        .unwrap();
    assert_eq!(stdout_ok(out, "queue list"), text);
    d.stop();
}
daemon_test!(queued_wire_form);

/// Exit status 0 means ringmail has the message (docs/SENDMAIL.md): a
/// message that `sendmail` accepted as within `message_size_limit` must be
/// queued by the daemon, not moved to `corrupt/` later. Refusing it up front
/// (65) would also keep that promise.
fn accepted_within_size_limit_is_queued(io: &str) {
    let sb = Sandbox::with(Settings {
        message_size_limit: 2048,
        ..Settings::default()
    });
    sb.make_maildrop();
    // 2000 bytes as submitted, in short LF-terminated lines.
    let mut msg = b"Subject: near the limit\n\n".to_vec();
    while msg.len() < 2000 {
        msg.extend_from_slice(b"x\n");
    }
    let out = sb.sendmail(&["r@example.net"], &msg);
    match out.status.code() {
        Some(65) => return, // refused up front: the submitter knows
        Some(0) => {}
        other => panic!("unexpected exit {other:?}: {}", stderr(&out)),
    }
    let mut d = sb.start_daemon(io);
    d.wait_until("maildrop/ empty", || count_in(&sb.maildrop()) == 0);
    let reasons: Vec<String> = names_in(&sb.corrupt())
        .iter()
        .filter(|n| n.ends_with(".reason"))
        .map(|n| std::fs::read_to_string(sb.corrupt().join(n)).unwrap())
        .collect();
    assert!(
        reasons.is_empty(),
        "sendmail exited 0 for a {}-byte message (limit 2048), but the daemon quarantined it: {reasons:?}",
        msg.len()
    );
    assert_eq!(sb.queue_list().len(), 1);
    d.stop();
}
daemon_test!(accepted_within_size_limit_is_queued);

/// `sendmail -bs`: a pipelined SMTP dialogue on stdin, two messages. Each
/// `250 ... queued as` comes after its maildrop file is written; the
/// daemon then queues both with the SMTP envelope (not the headers).
#[test]
fn bs_speaks_smtp_on_stdin() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let dialogue = b"EHLO client.example\r\n\
MAIL FROM:<app@example.com> BODY=8BITMIME\r\nRCPT TO:<one@example.net>\r\nRCPT TO:<two@example.net>\r\nDATA\r\n\
Subject: first\r\nTo: someone-else@example.net\r\n\r\n..dot line\r\nbody one\r\n.\r\n\
MAIL FROM:<>\r\nRCPT TO:<three@example.net>\r\nDATA\r\nSubject: second\r\n\r\nbody two\r\n.\r\n\
RCPT TO:<nomail@example.net>\r\nQUIT\r\n";
    let out = sb.sendmail(&["-bs"], dialogue);
    assert!(out.status.success(), "{out:?}");
    let replies = String::from_utf8_lossy(&out.stdout).to_string();
    let codes: Vec<&str> = replies
        .lines()
        .filter(|l| !l.starts_with("250-"))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        [
            "220", "250", "250", "250", "250", "354", "250", "250", "250", "354", "250", "503",
            "221"
        ],
        "{replies}"
    );
    assert_eq!(replies.matches("Ok: queued as ").count(), 2, "{replies}");
    assert_eq!(count_in(&sb.maildrop()), 2);
    let mut d = sb.start_daemon("auto");
    d.wait_recovered(2);
    d.wait_until("both queued", || sb.queue_list().len() == 2);
    d.stop();
    let listed = sb.queue_list();
    let first = listed
        .iter()
        .find(|l| l.sender == "app@example.com")
        .expect("first message");
    assert_eq!(first.addresses(), ["one@example.net", "two@example.net"]);
    let second = listed
        .iter()
        .find(|l| l.sender.is_empty())
        .expect("null sender");
    assert_eq!(second.addresses(), ["three@example.net"]);
    let segments = sb.segment_messages();
    let wire = segments
        .iter()
        .find(|r| r.sender == "app@example.com")
        .map(|r| r.wire.clone())
        .expect("record");
    assert!(
        contains(&wire, b"\r\n..dot line\r\n"),
        "stuffed once on the wire"
    );
}

/// A real SMTP client, swaks, talking to `sendmail -bs` through a pipe.
#[test]
fn bs_with_swaks() {
    if std::process::Command::new("swaks")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: swaks is not installed");
        return;
    }
    let sb = Sandbox::new();
    sb.make_maildrop();
    let pipe = format!("{BIN} sendmail -bs -C {}", sb.config.display());
    let out = std::process::Command::new("swaks")
        .args([
            "--pipe",
            &pipe,
            "--from",
            "swaks@example.com",
            "--to",
            "r@example.net",
        ])
        .args([
            "--header",
            "Subject: via swaks",
            "--body",
            "hello from swaks",
        ])
        .env_remove("RINGMAIL_CONFIG")
        .output()
        .expect("run swaks");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("<-  250 2.0.0 Ok: queued as "), "{text}");
    assert_eq!(count_in(&sb.maildrop()), 1);
}

//! `ringmail-sendmail`: the sendmail command alone, for installing as
//! `/usr/sbin/sendmail`. It is what PHP's `mail()`, cron and every script
//! run once per message, so it is kept small: it links only the parts of
//! the library that queue one message (the flag parser, the
//! configuration, the `submit.sock` client and the maildrop writer), not
//! the daemon's runtime, TLS or DNS, and starts in about half the time of
//! the full `ringmail` binary (docs/BENCHMARKS.md, "sendmail path").
//!
//! It queues a message itself (the default mode, `-bm`, `-t`, `-i`, ...);
//! every other mode (`-bp`, `-q`, `-bs`, `-bv`, ...) is handed to the full
//! `ringmail` binary found beside it, started under the same name
//! (`sendmail`, or `mailq` and `newaliases` when linked as those), so both
//! behave identically. The steps both share are `inject::sendmail_cmd`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use ringmail::inject::sendmail_args::SendmailMode;
use ringmail::inject::sendmail_cmd;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let rest = args.split_off(1.min(args.len()));
    // The name it was started under picks the default mode, as for the
    // full binary (`mailq` lists the queue).
    let program = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n == "mailq" || n == "newaliases")
        .unwrap_or_else(|| "sendmail".to_string());
    let (parsed, config) = match sendmail_cmd::start(&program, rest.clone()) {
        Ok(started) => started,
        Err(code) => return ExitCode::from(code),
    };
    if parsed.mode != SendmailMode::Deliver {
        return hand_to_ringmail(&program, rest);
    }
    ExitCode::from(sendmail_cmd::deliver(&parsed, &config))
}

/// Runs the full `ringmail` binary beside this one under the name
/// `program` with the same arguments (it replaces this process).
fn hand_to_ringmail(program: &str, args: Vec<OsString>) -> ExitCode {
    let full = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ringmail")))
        .unwrap_or_else(|| PathBuf::from("ringmail"));
    let e = Command::new(&full).arg0(program).args(args).exec();
    eprintln!(
        "sendmail: fatal: this mode needs the ringmail binary at {}: {e}",
        full.display()
    );
    ExitCode::from(69) // EX_UNAVAILABLE
}

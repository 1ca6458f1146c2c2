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
//! `ringmail` binary found beside it, invoked as `sendmail`, so both
//! behave identically.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use ringmail::config::Config;
use ringmail::inject::sendmail::submit;
use ringmail::inject::sendmail_args::{parse_sendmail_args, usage_text, SendmailMode};

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let rest = args.split_off(1.min(args.len()));
    let parsed = match parse_sendmail_args("sendmail", rest.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}\n{}", usage_text());
            return ExitCode::from(e.exit_code());
        }
    };
    if parsed.mode != SendmailMode::Deliver {
        return hand_to_ringmail(rest);
    }
    let config = match Config::load(parsed.config.as_deref()) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    if parsed.verbose > 0 && !parsed.ignored.is_empty() {
        eprintln!("sendmail: ignoring options: {}", parsed.ignored.join(" "));
    }
    let stdin = std::io::stdin();
    match submit(&parsed, &config, &mut stdin.lock()) {
        Ok(name) => {
            if parsed.verbose > 0 {
                eprintln!("sendmail: queued as {name}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs the full `ringmail` binary beside this one as `sendmail` with the
/// same arguments (it replaces this process).
fn hand_to_ringmail(args: Vec<OsString>) -> ExitCode {
    let full = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ringmail")))
        .unwrap_or_else(|| PathBuf::from("ringmail"));
    let e = Command::new(&full).arg0("sendmail").args(args).exec();
    eprintln!(
        "sendmail: fatal: this mode needs the ringmail binary at {}: {e}",
        full.display()
    );
    ExitCode::from(69) // EX_UNAVAILABLE
}

//! The sendmail command: parse the flags, then deliver (write to
//! maildrop/), list the queue (-bp), flush (-q) or refuse what is not
//! supported, with sysexits codes.

use std::ffi::OsString;
use std::process::ExitCode;

use ringmail::config::Config;
use ringmail::inject::sendmail::submit;
use ringmail::inject::sendmail_args::{parse_sendmail_args, usage_text, SendmailMode};

/// Runs sendmail mode; `program` is the name it was invoked as.
pub fn run(program: &str, args: Vec<OsString>) -> ExitCode {
    let args = match parse_sendmail_args(program, args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}\n{}", usage_text());
            return ExitCode::from(e.exit_code());
        }
    };
    let loaded = match Config::load(args.config.as_deref()) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    if args.verbose > 0 && !args.ignored.is_empty() {
        eprintln!("sendmail: ignoring options: {}", args.ignored.join(" "));
    }
    match args.mode {
        SendmailMode::Deliver => {
            let stdin = std::io::stdin();
            match submit(&args, &loaded, &mut stdin.lock()) {
                Ok(path) => {
                    if args.verbose > 0 {
                        eprintln!("sendmail: queued as {}", path.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sendmail: fatal: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        SendmailMode::ListQueue => match super::mailq::print(&loaded, false) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sendmail: fatal: {e:#}");
                ExitCode::from(75)
            }
        },
        SendmailMode::Flush => super::flush_exit(Ok(loaded)),
        SendmailMode::NewAliases => ExitCode::SUCCESS,
        SendmailMode::Daemon => {
            eprintln!("sendmail: fatal: -bd is not supported: run `ringmail serve`");
            ExitCode::from(64)
        }
        SendmailMode::SmtpStdin => {
            eprintln!("sendmail: fatal: -bs (SMTP on standard input) is not implemented yet");
            ExitCode::from(64)
        }
        SendmailMode::Verify => {
            // Addresses were parsed by the flag parser; check them for real.
            for r in &args.recipients {
                if let Err(e) = ringmail::mail::parse_envelope_address(r, loaded.origin(), false) {
                    eprintln!("sendmail: {r}: undeliverable: {e}");
                    return ExitCode::from(67);
                }
                println!("{r}: deliverable (address syntax ok; no delivery attempted)");
            }
            ExitCode::SUCCESS
        }
    }
}

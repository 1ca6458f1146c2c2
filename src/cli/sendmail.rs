//! The sendmail command: parse the flags, then deliver (write to
//! maildrop/), list the queue (-bp), flush (-q) or refuse what is not
//! supported, with sysexits codes.

use std::ffi::OsString;
use std::process::ExitCode;

use ringmail::config::Config;
use ringmail::inject::sendmail_args::SendmailMode;
use ringmail::inject::sendmail_cmd;
use ringmail::inject::smtp_stdin::{serve, Ended};

/// Runs sendmail mode; `program` is the name it was invoked as.
pub fn run(program: &str, args: Vec<OsString>) -> ExitCode {
    let (args, loaded) = match sendmail_cmd::start(program, args) {
        Ok(started) => started,
        Err(code) => return ExitCode::from(code),
    };
    match args.mode {
        SendmailMode::Deliver => ExitCode::from(sendmail_cmd::deliver(&args, &loaded)),
        SendmailMode::ListQueue => match super::mailq::print(&loaded, false) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sendmail: fatal: {e:#}");
                ExitCode::from(super::exit_code(&e))
            }
        },
        SendmailMode::Flush => super::flush_exit(Ok(loaded)),
        SendmailMode::NewAliases => ExitCode::SUCCESS,
        SendmailMode::Daemon => {
            eprintln!("sendmail: fatal: -bd is not supported: run `ringmail serve`");
            ExitCode::from(64)
        }
        SendmailMode::SmtpStdin => smtp_stdin(&loaded, args.full_name.as_deref()),
        SendmailMode::Verify => {
            // Addresses were parsed by the flag parser; check them for real.
            for r in &args.recipients {
                let addresses = match ringmail::mail::argument_addresses(r, loaded.origin()) {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("sendmail: {r:?}: undeliverable: {e}");
                        return ExitCode::from(67);
                    }
                };
                for a in addresses {
                    println!("{a}: deliverable (address syntax ok; no delivery attempted)");
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// `sendmail -bs`: SMTP on standard input and output. Each message is in
/// `maildrop/` before its `250`. Exits 0 after QUIT or end of input, 74 when
/// standard input or output fails.
fn smtp_stdin(config: &Config, full_name: Option<&str>) -> ExitCode {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match serve(config, full_name, &mut stdin.lock(), &mut stdout.lock()) {
        Ok(Ended::EndOfInputInData) => {
            eprintln!("sendmail: warning: end of input inside DATA: that message was not queued");
            ExitCode::SUCCESS
        }
        Ok(Ended::Closed | Ended::EndOfInput) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

//! The sendmail command: parse the flags, then deliver (write to
//! maildrop/), list the queue (-bp), flush (-q) or refuse what is not
//! supported, with sysexits codes.

use std::ffi::OsString;
use std::process::ExitCode;

use ringmail::config::Config;
use ringmail::inject::sendmail::{queue_envelope, submit};
use ringmail::inject::sendmail_args::{parse_sendmail_args, usage_text, SendmailMode};
use ringmail::inject::smtp_stdin::{StdinSession, Step};

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
/// standard output fails.
fn smtp_stdin(config: &Config, full_name: Option<&str>) -> ExitCode {
    use std::io::{BufRead, Write};
    let mut session = StdinSession::new(
        &config.myhostname,
        config.origin(),
        config.message_size_limit,
    );
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(64 * 1024, stdin.lock());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let send = |out: &mut std::io::StdoutLock<'_>, text: &str, more_input: bool| {
        out.write_all(text.as_bytes())?;
        // With PIPELINING the client may have sent more: answer it all in
        // one go, but never sit on a reply the client is waiting for.
        if !more_input {
            out.flush()?;
        }
        Ok::<(), std::io::Error>(())
    };
    if send(&mut out, &session.greeting(), false).is_err() {
        return ExitCode::from(74);
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(e) => {
                eprintln!("sendmail: fatal: cannot read standard input: {e}");
                return ExitCode::from(74);
            }
        }
        let more = !input.buffer().is_empty();
        let reply = match session.on_line(&line) {
            Step::Nothing => continue,
            Step::Reply(r) => r,
            Step::Quit(r) => {
                let _ = send(&mut out, &r, false);
                return ExitCode::SUCCESS;
            }
            Step::Message {
                envelope,
                dsn,
                message,
            } => match queue_envelope(config, &envelope, full_name, &dsn, &message) {
                Ok(path) => {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    session.queued(&name)
                }
                Err(e) => session.queue_failed(&e.to_string()),
            },
        };
        if send(&mut out, &reply, more).is_err() {
            return ExitCode::from(74);
        }
    }
}

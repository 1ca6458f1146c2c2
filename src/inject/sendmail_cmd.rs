//! The sendmail command's steps that both of its binaries run (the full
//! `ringmail` as `sendmail`, and the lean `ringmail-sendmail`): parse the
//! flags and load the configuration, then, in the default mode, queue the
//! message read from standard input. Errors are printed as Postfix's
//! sendmail prints them and come back as sysexits codes.

use std::ffi::OsString;

use crate::config::Config;

use super::sendmail::submit;
use super::sendmail_args::{parse_sendmail_args, usage_text, SendmailArgs};

/// The flags and the configuration they name, or the exit code after an
/// error was printed (64 for bad flags, 78 for the configuration).
pub fn start(program: &str, args: Vec<OsString>) -> Result<(SendmailArgs, Config), u8> {
    let args = match parse_sendmail_args(program, args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}\n{}", usage_text());
            return Err(e.exit_code());
        }
    };
    let config = match Config::load(args.config.as_deref()) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            return Err(78); // EX_CONFIG
        }
    };
    if args.verbose > 0 && !args.ignored.is_empty() {
        eprintln!("sendmail: ignoring options: {}", args.ignored.join(" "));
    }
    Ok((args, config))
}

/// The default mode: queues the message on standard input; 0 once it is
/// durable, else the sysexits code (the error printed).
pub fn deliver(args: &SendmailArgs, config: &Config) -> u8 {
    let stdin = std::io::stdin();
    match submit(args, config, &mut stdin.lock()) {
        Ok(name) => {
            if args.verbose > 0 {
                eprintln!("sendmail: queued as {name}");
            }
            0
        }
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            e.exit_code()
        }
    }
}

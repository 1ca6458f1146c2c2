//! The `ringmail` binary. Invoked as `sendmail` it is the sendmail command,
//! as `mailq` it lists the queue, as `newaliases` it does nothing and
//! succeeds; otherwise subcommands select the job.

mod cli;

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    match argv0.as_str() {
        "sendmail" | "mailq" | "newaliases" => {
            let rest = args.split_off(1.min(args.len()));
            cli::sendmail::run(&argv0, rest)
        }
        _ => cli::run(args),
    }
}

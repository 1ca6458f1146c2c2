//! `ringmail passwd add|remove|list`: the submission users in
//! `smtpd_passwd_file`. The password is read from standard input: one line,
//! or typed twice without echo when standard input is a terminal.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use ringmail::inject::smtpd::passwd::{self, PasswdError, PasswdFile, MAX_PASSWORD_LEN};

/// What to do with the password file.
#[derive(Debug, clap::Subcommand)]
pub enum PasswdAction {
    /// Add a user, or set a user's new password (read from standard input).
    Add {
        /// The user name: letters, digits and . _ - @ +, at most 64.
        user: String,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Remove a user (exit 67 when there is no such user).
    Remove {
        /// The user name.
        user: String,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// List the user names, one a line.
    List {
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

/// Runs the action. Exit codes (sysexits): 64 a bad user name, 65 a bad
/// password, 67 no such user, 73 the file cannot be written, 74 it cannot
/// be read, 75 try again, 77 permission denied, 78 a bad configuration or
/// password file.
pub fn run(action: PasswdAction) -> ExitCode {
    match run_action(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run_action(action: PasswdAction) -> anyhow::Result<()> {
    match action {
        PasswdAction::Add { user, config } => {
            let config = super::load(config)?;
            passwd::check_user_name(&user)?;
            let password = read_password(&user)?;
            let hash = passwd::hash_password(&password)?;
            let mut file = PasswdFile::open(&config.smtpd_passwd_file)?;
            let replaced = file.set(&user, &hash)?;
            file.save()?;
            let what = if replaced {
                "new password for"
            } else {
                "added"
            };
            eprintln!("ringmail: {}: {what} {user}", file.path().display());
        }
        PasswdAction::Remove { user, config } => {
            let config = super::load(config)?;
            let mut file = match PasswdFile::open(&config.smtpd_passwd_file)? {
                f if f.existed() => f,
                f => {
                    return Err(PasswdError::UnknownUser {
                        path: f.path().to_path_buf(),
                        user,
                    }
                    .into())
                }
            };
            file.remove(&user)?;
            file.save()?;
            eprintln!("ringmail: {}: removed {user}", file.path().display());
        }
        PasswdAction::List { config } => {
            let config = super::load(config)?;
            let users = match PasswdFile::load(&config.smtpd_passwd_file) {
                Ok(users) => users,
                // No file yet: no users. Say so on stderr, in case the
                // path is not the one meant.
                Err(e @ PasswdError::NotFound { .. }) => {
                    eprintln!("ringmail: {e}");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for name in users.names() {
                writeln!(out, "{name}")?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

/// The sysexits code for a failed `passwd` command.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ringmail::config::ConfigError>().is_some() {
        return 78;
    }
    if e.downcast_ref::<PasswordInput>().is_some() {
        return 65;
    }
    match e.downcast_ref::<PasswdError>() {
        Some(PasswdError::BadUser { .. }) => 64,
        Some(PasswdError::BadPassword(_)) => 65,
        Some(PasswdError::UnknownUser { .. }) => 67,
        Some(PasswdError::Write { .. }) => 73,
        Some(PasswdError::Read { .. }) => 74,
        Some(PasswdError::PermissionDenied { .. }) => 77,
        Some(
            PasswdError::NotFound { .. } | PasswdError::Unsafe { .. } | PasswdError::Parse { .. },
        ) => 78,
        Some(PasswdError::Hash(_)) | None => 75,
    }
}

/// The password could not be read from standard input (EX_DATAERR, 65).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PasswordInput(&'static str);

/// Reads the password: typed twice without echo on a terminal, else the
/// first line of standard input (its line end removed).
fn read_password(user: &str) -> anyhow::Result<Vec<u8>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = prompt(&format!("Password for {user}: "))?;
        passwd::check_password(&first)?;
        let again = prompt("Again: ")?;
        if first != again {
            return Err(PasswordInput("the passwords do not match").into());
        }
        return Ok(first);
    }
    let mut line = Vec::new();
    // One more than a line can hold, to tell "too long" from "just fits".
    let limit = MAX_PASSWORD_LEN as u64 + 3;
    stdin.lock().take(limit).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(PasswordInput("no password on standard input").into());
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    passwd::check_password(&line)?;
    Ok(line)
}

/// Prints `text` on stderr and reads one line from the terminal on stdin
/// with echo off; echo is restored even when reading fails.
fn prompt(text: &str) -> anyhow::Result<Vec<u8>> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let stdin = std::io::stdin();
    eprint!("{text}");
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let mut line = Vec::new();
    let read = stdin
        .lock()
        .take(MAX_PASSWORD_LEN as u64 + 2)
        .read_until(b'\n', &mut line);
    tcsetattr(&stdin, OptionalActions::Now, &saved)?;
    read?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else {
        // End of input (Ctrl-D) or too long: end the prompt's line.
        eprintln!();
    }
    Ok(line)
}

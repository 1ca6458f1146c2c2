//! The `sendmail` command line: a hand-written, sans-IO parser compatible
//! with Postfix's `sendmail` (glibc `getopt` semantics).
//!
//! It works in three steps, as ripgrep does with its "low" and "high"
//! arguments:
//!
//! 1. `getopt` splits the raw arguments into options and operands using the
//!    one option table, `FLAGS`: clustered letters (`-ti`), values attached
//!    or in the next argument (`-fme@x`, `-f me@x`), `--`, and operands
//!    interleaved with options (`sendmail you@x -f me@x`).
//! 2. `LowArgs` records what each option asked for, unvalidated; the last
//!    of a repeated option wins, as with Postfix.
//! 3. `LowArgs::resolve` picks the mode (program name, then flags),
//!    validates the values (`-B`, `-N`, `-R`, `-V`, `-F`) and rejects
//!    combinations that make no sense, giving a [`SendmailArgs`].
//!
//! Nothing here reads standard input, the environment or a file. Every
//! error is a usage error ([`ArgsError::exit_code`] is 64, `EX_USAGE`); the
//! caller prints it followed by [`usage_text`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::model::dsn::valid_envid;
use crate::model::{BodyType, DsnRet, Notify};

/// `EX_USAGE` from sysexits.h.
const EX_USAGE: u8 = 64;

/// What the command was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendmailMode {
    /// Read a message from standard input and queue it (`-bm`, the default).
    #[default]
    Deliver,
    /// List the queue (`-bp`, or invoked as `mailq`).
    ListQueue,
    /// Ask the daemon to retry deferred mail now (`-q`, with or without an
    /// interval, `-qR...`, `-qI...`).
    Flush,
    /// Speak SMTP on standard input and output (`-bs`).
    SmtpStdin,
    /// Rebuild the alias database (`-bi`, `-I`, or invoked as `newaliases`):
    /// ringmail has no aliases, so this is a no-op that succeeds.
    NewAliases,
    /// Run as a daemon (`-bd`): the caller says to use `ringmail serve`.
    Daemon,
    /// Verify the recipient addresses without sending mail (`-bv`).
    Verify,
}

impl SendmailMode {
    /// The canonical option selecting this mode, for messages
    /// (`"-bd is not supported"`).
    pub fn flag(self) -> &'static str {
        match self {
            SendmailMode::Deliver => "-bm",
            SendmailMode::ListQueue => "-bp",
            SendmailMode::Flush => "-q",
            SendmailMode::SmtpStdin => "-bs",
            SendmailMode::NewAliases => "-bi",
            SendmailMode::Daemon => "-bd",
            SendmailMode::Verify => "-bv",
        }
    }
}

/// The resolved `sendmail` request: the "high" arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendmailArgs {
    /// What to do.
    pub mode: SendmailMode,
    /// `-C file`: the ringmail configuration file to use.
    pub config: Option<PathBuf>,
    /// `-f` / `-r`: the envelope sender exactly as given; `""` or `"<>"` is
    /// the null sender (see [`SendmailArgs::has_null_sender`]).
    pub sender: Option<String>,
    /// `-F`: the sender's full name, for a From: header the message lacks.
    /// Never contains control characters.
    pub full_name: Option<String>,
    /// `-t`: also take recipients from the message headers.
    pub extract_recipients: bool,
    /// `-i` / `-oi`: a line consisting of a single `.` does not end the input.
    pub ignore_dots: bool,
    /// How many times `-v` was given (saturating).
    pub verbose: u8,
    /// `-B`: the declared body type, `7BIT` or `8BITMIME`.
    pub body_type: Option<BodyType>,
    /// `-N`: `never`, or a non-empty list of `success`, `delay`, `failure`
    /// (case-insensitive), for every recipient.
    pub dsn_notify: Option<Notify>,
    /// `-R`: `full` or `hdrs`.
    pub dsn_ret: Option<DsnRet>,
    /// `-V`: the DSN envelope ID, 1 to 100 printable ASCII characters.
    pub envid: Option<String>,
    /// The operands, as given, in order.
    pub recipients: Vec<String>,
    /// Options accepted for compatibility but ignored, as given (`"-oem"`,
    /// `"-h 5"`, `"-q30m"`), for a `-v` log line.
    pub ignored: Vec<String>,
}

impl SendmailArgs {
    /// True when `-f` / `-r` named the null sender (`""` or `"<>"`), the
    /// sender of bounces, which must not be bounced back.
    pub fn has_null_sender(&self) -> bool {
        matches!(self.sender.as_deref(), Some("" | "<>"))
    }
}

/// A command line that cannot be obeyed. All are usage errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// An argument is not valid UTF-8.
    #[error("argument {position} is not valid UTF-8: {lossy:?}")]
    NotUtf8 {
        /// 1-based position among the arguments after the program name.
        position: usize,
        /// The argument with invalid bytes replaced by U+FFFD.
        lossy: String,
    },
    /// An option letter that is not in the option table.
    #[error("illegal option -- {0}")]
    IllegalOption(char),
    /// A `--name` long option (sendmail has none).
    #[error("unrecognized option '{0}'")]
    LongOption(String),
    /// An option that needs a value came last.
    #[error("option requires an argument -- {0}")]
    MissingArgument(char),
    /// `-b` with a mode ringmail does not know (`-bt`, `-bD`, ...).
    #[error("unsupported: -b{0} (ringmail knows -bm, -bp, -bs, -bd, -bi and -bv)")]
    UnsupportedMode(String),
    /// An option value that fails validation.
    #[error("bad value for -{option}: {value:?}: {expected}")]
    BadValue {
        /// The option letter.
        option: char,
        /// The value as given.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// Two options (or the program name and an option) that exclude each other.
    #[error("{option} cannot be used with {mode}")]
    Conflict {
        /// The option that does not fit (`"-t"`, `"-N"`, `"-R"`, `"-V"`, `"-B"`).
        option: &'static str,
        /// What selected the mode, as given (`"-bp"`, `"mailq"`, `"-q30m"`).
        mode: String,
    },
    /// Recipients given in a mode that takes none.
    #[error("{mode} takes no recipients (got {first:?})")]
    RecipientsNotAllowed {
        /// What selected the mode, as given.
        mode: String,
        /// The first operand.
        first: String,
    },
    /// Delivery mode without `-t` and without recipients.
    #[error("no recipients: name them on the command line or use -t")]
    NoRecipients,
    /// `-bv` without recipients.
    #[error("-bv needs at least one recipient to verify")]
    NothingToVerify,
}

impl ArgsError {
    /// A bad command line stays bad: never transient.
    pub fn is_transient(&self) -> bool {
        false
    }

    /// The process exit status: 64, `EX_USAGE`.
    pub fn exit_code(&self) -> u8 {
        EX_USAGE
    }
}

/// Parses a `sendmail` command line.
///
/// `program_name` is the name the command was invoked as (argv\[0\]; only
/// its last path component counts): `mailq` defaults to
/// [`SendmailMode::ListQueue`], `newaliases` to [`SendmailMode::NewAliases`],
/// anything else to [`SendmailMode::Deliver`]; options override it. `args`
/// are the arguments after argv\[0\].
pub fn parse_sendmail_args<I, S>(program_name: &str, args: I) -> Result<SendmailArgs, ArgsError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args = to_utf8(args)?;
    let tokens = getopt(args)?;
    LowArgs::from_tokens(tokens)?.resolve(program_name)
}

/// A short usage summary listing every option, built from the option table.
pub fn usage_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(build_usage)
}

// ---------------------------------------------------------------------------
// The option table: the one place the options are defined.

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takes {
    /// A flag: `-t`.
    Nothing,
    /// The rest of the cluster, or else the next argument: `-fme@x`, `-f me@x`.
    Value,
    /// Only the rest of the cluster, if any: `-q`, `-q30m`.
    AttachedOnly,
}

/// One option letter.
struct Flag {
    letter: char,
    takes: Takes,
    /// Placeholder for the value in the usage text.
    value_name: &'static str,
    /// One line of usage text.
    help: &'static str,
}

const fn flag(letter: char, help: &'static str) -> Flag {
    Flag {
        letter,
        takes: Takes::Nothing,
        value_name: "",
        help,
    }
}

const fn valued(letter: char, value_name: &'static str, help: &'static str) -> Flag {
    Flag {
        letter,
        takes: Takes::Value,
        value_name,
        help,
    }
}

/// Postfix's option string "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx",
/// except that `-q` takes only an attached value (Postfix special-cases a
/// lone `-q` the same way).
const FLAGS: &[Flag] = &[
    valued('A', "x", "ignored (-Am, -Ac)"),
    valued('B', "type", "body type: 7BIT or 8BITMIME"),
    valued('C', "file", "ringmail configuration file"),
    valued('F', "name", "sender full name, for a missing From: header"),
    flag('G', "ignored (gateway submission)"),
    flag('I', "same as -bi"),
    valued('L', "label", "ignored (log label)"),
    valued(
        'N',
        "dsn",
        "DSN notify: never, or a list of success,delay,failure",
    ),
    valued('O', "opt=val", "ignored (sendmail.cf option)"),
    valued('R', "ret", "DSN return: full or hdrs"),
    flag('U', "ignored (initial user submission)"),
    valued('V', "envid", "DSN envelope ID"),
    valued('X', "x", "ignored (traffic log, -XV)"),
    valued(
        'b',
        "mode",
        "m deliver (default), p list queue, s SMTP on stdin, d daemon, i aliases, v verify",
    ),
    flag('c', "ignored"),
    valued('e', "x", "ignored (error mode)"),
    valued(
        'f',
        "sender",
        "envelope sender; \"\" or \"<>\" is the null sender",
    ),
    valued('h', "hops", "ignored (hop count)"),
    flag('i', "a line with a single \".\" does not end the message"),
    flag('m', "ignored"),
    flag('n', "ignored"),
    valued('o', "x", "-oi: same as -i; other -o options are ignored"),
    valued('p', "proto", "ignored (protocol)"),
    Flag {
        letter: 'q',
        takes: Takes::AttachedOnly,
        value_name: "[x]",
        help: "flush the queue (-q30m, -qR..., -qI... flush too)",
    },
    valued('r', "sender", "same as -f"),
    flag(
        't',
        "also take recipients from To:, Cc:, Bcc: (Bcc: is removed)",
    ),
    flag('v', "verbose; repeat for more"),
    flag('x', "ignored"),
];

fn lookup(letter: char) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.letter == letter)
}

fn build_usage() -> String {
    let mut text = String::from(
        "usage: sendmail [options] [--] [recipient ...]\n\
         \x20      mailq       (same as sendmail -bp)\n\
         \x20      newaliases  (same as sendmail -bi; does nothing)\n\
         options:\n",
    );
    for f in FLAGS {
        let name = match f.takes {
            Takes::Nothing => format!("-{}", f.letter),
            Takes::Value => format!("-{} {}", f.letter, f.value_name),
            Takes::AttachedOnly => format!("-{}{}", f.letter, f.value_name),
        };
        text.push_str(&format!("  {name:<12} {}\n", f.help));
    }
    text
}

// ---------------------------------------------------------------------------
// Step 1: getopt.

/// One parsed command-line item.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// An option with its value, if it takes one.
    Opt {
        letter: char,
        value: Option<String>,
        /// The value was in the same argument as the letter (`-fme@x`).
        attached: bool,
    },
    /// A recipient (or a stray word in a mode that takes none).
    Operand(String),
}

fn to_utf8<I, S>(args: I) -> Result<Vec<String>, ArgsError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            arg.into().into_string().map_err(|bad| ArgsError::NotUtf8 {
                position: i + 1,
                lossy: bad.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

/// Splits arguments like glibc `getopt` with argument permutation: options
/// and operands may be interleaved until `--`; a lone `-` is an operand.
fn getopt(args: Vec<String>) -> Result<Vec<Token>, ArgsError> {
    let mut tokens = Vec::with_capacity(args.len());
    let mut rest = args.into_iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            tokens.extend(rest.by_ref().map(Token::Operand));
            break;
        }
        let cluster = match arg.strip_prefix('-') {
            Some(c) if !c.is_empty() => c,
            _ => {
                tokens.push(Token::Operand(arg));
                continue;
            }
        };
        if cluster.starts_with('-') {
            return Err(ArgsError::LongOption(arg));
        }
        for (i, letter) in cluster.char_indices() {
            let spec = lookup(letter).ok_or(ArgsError::IllegalOption(letter))?;
            let tail = &cluster[i + letter.len_utf8()..];
            let (value, attached) = match spec.takes {
                Takes::Nothing => {
                    tokens.push(Token::Opt {
                        letter,
                        value: None,
                        attached: false,
                    });
                    continue;
                }
                Takes::AttachedOnly if tail.is_empty() => (None, false),
                Takes::AttachedOnly => (Some(tail.to_owned()), true),
                Takes::Value if !tail.is_empty() => (Some(tail.to_owned()), true),
                Takes::Value => {
                    let next = rest.next().ok_or(ArgsError::MissingArgument(letter))?;
                    (Some(next), false)
                }
            };
            tokens.push(Token::Opt {
                letter,
                value,
                attached,
            });
            // A value (or -q) ends the cluster.
            break;
        }
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------
// Step 2: low arguments.

/// A mode together with what selected it, as given (`"-bp"`, `"-q30m"`,
/// `"mailq"`), for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ModeChoice {
    mode: SendmailMode,
    source: String,
}

/// What the options asked for, unvalidated.
#[derive(Debug, Default)]
struct LowArgs {
    mode: Option<ModeChoice>,
    config: Option<String>,
    sender: Option<String>,
    full_name: Option<String>,
    extract_recipients: bool,
    ignore_dots: bool,
    verbose: u8,
    body_type: Option<String>,
    dsn_notify: Option<String>,
    dsn_ret: Option<String>,
    envid: Option<String>,
    operands: Vec<String>,
    ignored: Vec<String>,
}

impl LowArgs {
    fn from_tokens(tokens: Vec<Token>) -> Result<LowArgs, ArgsError> {
        let mut low = LowArgs::default();
        for token in tokens {
            match token {
                Token::Operand(op) => low.operands.push(op),
                Token::Opt {
                    letter,
                    value,
                    attached,
                } => low.apply(letter, value, attached)?,
            }
        }
        Ok(low)
    }

    fn apply(
        &mut self,
        letter: char,
        value: Option<String>,
        attached: bool,
    ) -> Result<(), ArgsError> {
        let as_given = match (&value, attached) {
            (None, _) => format!("-{letter}"),
            (Some(v), true) => format!("-{letter}{v}"),
            (Some(v), false) => format!("-{letter} {v}"),
        };
        // Every option but -q has its value when the table says it takes one.
        let value = value.unwrap_or_default();
        match letter {
            'B' => self.body_type = Some(value),
            'C' => self.config = Some(value),
            'F' => self.full_name = Some(value),
            'I' => self.set_mode(SendmailMode::NewAliases, as_given),
            'N' => self.dsn_notify = Some(value),
            'R' => self.dsn_ret = Some(value),
            'V' => self.envid = Some(value),
            'b' => {
                let mode = match value.as_str() {
                    "m" => SendmailMode::Deliver,
                    "p" => SendmailMode::ListQueue,
                    "s" => SendmailMode::SmtpStdin,
                    "d" => SendmailMode::Daemon,
                    "i" => SendmailMode::NewAliases,
                    "v" => SendmailMode::Verify,
                    _ => return Err(ArgsError::UnsupportedMode(value)),
                };
                self.set_mode(mode, format!("-b{value}"));
            }
            'f' | 'r' => self.sender = Some(value),
            'i' => self.ignore_dots = true,
            'o' if value == "i" => self.ignore_dots = true,
            'q' => {
                if attached {
                    // An interval or a selection: flushed all the same.
                    self.ignored.push(as_given.clone());
                }
                self.set_mode(SendmailMode::Flush, as_given);
            }
            't' => self.extract_recipients = true,
            'v' => self.verbose = self.verbose.saturating_add(1),
            // A, G, L, O, U, X, c, e, h, m, n, o (but -oi), p, x.
            _ => self.ignored.push(as_given),
        }
        Ok(())
    }

    /// The last mode option wins, except that `-q` does not undo `-bd`
    /// (Postfix: "ignoring -q option in daemon mode").
    fn set_mode(&mut self, mode: SendmailMode, source: String) {
        let daemon = matches!(&self.mode, Some(c) if c.mode == SendmailMode::Daemon);
        if daemon && mode == SendmailMode::Flush {
            if !self.ignored.contains(&source) {
                self.ignored.push(source);
            }
            return;
        }
        self.mode = Some(ModeChoice { mode, source });
    }

    // -----------------------------------------------------------------------
    // Step 3: resolve into high arguments.

    fn resolve(self, program_name: &str) -> Result<SendmailArgs, ArgsError> {
        let base = program_name.rsplit('/').next().unwrap_or(program_name);
        let choice = self.mode.unwrap_or_else(|| ModeChoice {
            mode: match base {
                "mailq" => SendmailMode::ListQueue,
                "newaliases" => SendmailMode::NewAliases,
                _ => SendmailMode::Deliver,
            },
            source: base.to_owned(),
        });
        let mode = choice.mode;

        let body_type = self.body_type.map(check_body_type).transpose()?;
        let dsn_notify = self.dsn_notify.map(check_dsn_notify).transpose()?;
        let dsn_ret = self.dsn_ret.map(check_dsn_ret).transpose()?;
        let envid = self.envid.map(check_envid).transpose()?;
        let full_name = self.full_name.map(check_full_name).transpose()?;
        let config = self.config.map(check_config).transpose()?;

        let conflict = |option: &'static str| ArgsError::Conflict {
            option,
            mode: choice.source.clone(),
        };
        if self.extract_recipients && mode != SendmailMode::Deliver {
            return Err(conflict("-t"));
        }
        match mode {
            SendmailMode::Deliver => {
                if self.operands.is_empty() && !self.extract_recipients {
                    return Err(ArgsError::NoRecipients);
                }
            }
            SendmailMode::Verify => {
                if dsn_notify.is_some() {
                    return Err(conflict("-N"));
                }
                if dsn_ret.is_some() {
                    return Err(conflict("-R"));
                }
                if self.operands.is_empty() {
                    return Err(ArgsError::NothingToVerify);
                }
            }
            SendmailMode::SmtpStdin
                if dsn_notify.is_some()
                    || dsn_ret.is_some()
                    || envid.is_some()
                    || body_type.is_some() =>
            {
                // The SMTP client says it with MAIL FROM / RCPT TO.
                let option = if dsn_notify.is_some() {
                    "-N"
                } else if dsn_ret.is_some() {
                    "-R"
                } else if envid.is_some() {
                    "-V"
                } else {
                    "-B"
                };
                return Err(conflict(option));
            }
            SendmailMode::ListQueue
            | SendmailMode::Flush
            | SendmailMode::SmtpStdin
            | SendmailMode::NewAliases
            | SendmailMode::Daemon => {
                if let Some(first) = self.operands.first() {
                    return Err(ArgsError::RecipientsNotAllowed {
                        mode: choice.source.clone(),
                        first: first.clone(),
                    });
                }
            }
        }

        Ok(SendmailArgs {
            mode,
            config,
            sender: self.sender,
            full_name,
            extract_recipients: self.extract_recipients,
            ignore_dots: self.ignore_dots,
            verbose: self.verbose,
            body_type,
            dsn_notify,
            dsn_ret,
            envid,
            recipients: self.operands,
            ignored: self.ignored,
        })
    }
}

fn check_body_type(value: String) -> Result<BodyType, ArgsError> {
    BodyType::parse(&value).ok_or(ArgsError::BadValue {
        option: 'B',
        value,
        expected: "7BIT or 8BITMIME",
    })
}

/// RFC 3461 NOTIFY: `never`, or a list of `success`, `delay`, `failure`.
fn check_dsn_notify(value: String) -> Result<Notify, ArgsError> {
    Notify::parse(&value).ok_or(ArgsError::BadValue {
        option: 'N',
        value,
        expected: "never, or a comma-separated list of success, delay, failure",
    })
}

/// RFC 3461 RET: `full` or `hdrs`.
fn check_dsn_ret(value: String) -> Result<DsnRet, ArgsError> {
    DsnRet::parse(&value).ok_or(ArgsError::BadValue {
        option: 'R',
        value,
        expected: "full or hdrs",
    })
}

/// RFC 3461 ENVID: at most 100 printable US-ASCII characters.
fn check_envid(value: String) -> Result<String, ArgsError> {
    if valid_envid(&value) {
        Ok(value)
    } else {
        Err(ArgsError::BadValue {
            option: 'V',
            value,
            expected: "1 to 100 printable ASCII characters",
        })
    }
}

/// The full name goes into a From: header: no line breaks or other control
/// characters that would end the header early.
fn check_full_name(value: String) -> Result<String, ArgsError> {
    if value.chars().any(char::is_control) {
        Err(ArgsError::BadValue {
            option: 'F',
            value,
            expected: "a name without control characters",
        })
    } else {
        Ok(value)
    }
}

fn check_config(value: String) -> Result<PathBuf, ArgsError> {
    if value.is_empty() {
        Err(ArgsError::BadValue {
            option: 'C',
            value,
            expected: "a file name",
        })
    } else {
        Ok(PathBuf::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SendmailArgs, ArgsError> {
        parse_sendmail_args("sendmail", args.iter().copied())
    }

    fn ok(args: &[&str]) -> SendmailArgs {
        match parse(args) {
            Ok(a) => a,
            Err(e) => panic!("{args:?}: unexpected error: {e}"),
        }
    }

    fn err(args: &[&str]) -> ArgsError {
        match parse(args) {
            Ok(a) => panic!("{args:?}: expected an error, got {a:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_recipients_deliver() {
        let a = ok(&["you@example.com", "them@example.org"]);
        assert_eq!(a.mode, SendmailMode::Deliver);
        assert_eq!(a.recipients, ["you@example.com", "them@example.org"]);
        assert!(!a.ignore_dots);
        assert!(!a.extract_recipients);
        assert_eq!(a.sender, None);
        assert!(a.ignored.is_empty());
    }

    #[test]
    fn clustered_flags() {
        let a = ok(&["-ti"]);
        assert!(a.extract_recipients);
        assert!(a.ignore_dots);
        let a = ok(&["-vvtv"]);
        assert_eq!(a.verbose, 3);
        assert!(a.extract_recipients);
    }

    #[test]
    fn value_attached_or_next_argument() {
        assert_eq!(ok(&["-fme@x", "you@x"]).sender.as_deref(), Some("me@x"));
        assert_eq!(ok(&["-f", "me@x", "you@x"]).sender.as_deref(), Some("me@x"));
        // The value ends the cluster: "-tfme@x" is -t then -f me@x.
        let a = ok(&["-tfme@x"]);
        assert!(a.extract_recipients);
        assert_eq!(a.sender.as_deref(), Some("me@x"));
        // -i inside the value is not an option.
        assert!(!ok(&["-fi@x", "you@x"]).ignore_dots);
        // A separate value may look like an option, as with getopt.
        let a = ok(&["-f", "-t", "you@x"]);
        assert_eq!(a.sender.as_deref(), Some("-t"));
        assert!(!a.extract_recipients);
        let a = ok(&["-f", "--", "you@x"]);
        assert_eq!(a.sender.as_deref(), Some("--"));
    }

    #[test]
    fn r_is_f_and_last_wins() {
        assert_eq!(ok(&["-r", "me@x", "y@x"]).sender.as_deref(), Some("me@x"));
        assert_eq!(
            ok(&["-fa@x", "-rb@x", "y@x"]).sender.as_deref(),
            Some("b@x")
        );
    }

    #[test]
    fn null_sender() {
        assert!(ok(&["-f", "", "y@x"]).has_null_sender());
        assert!(ok(&["-f<>", "y@x"]).has_null_sender());
        let a = ok(&["-f", "me@x", "y@x"]);
        assert!(!a.has_null_sender());
        assert!(!ok(&["y@x"]).has_null_sender());
        // As given, not rewritten.
        assert_eq!(ok(&["-f<>", "y@x"]).sender.as_deref(), Some("<>"));
    }

    #[test]
    fn missing_argument() {
        assert_eq!(err(&["-f"]), ArgsError::MissingArgument('f'));
        assert_eq!(err(&["you@x", "-tf"]), ArgsError::MissingArgument('f'));
        assert_eq!(err(&["-t", "-b"]), ArgsError::MissingArgument('b'));
        assert_eq!(
            err(&["-t", "-o"]).to_string(),
            "option requires an argument -- o"
        );
    }

    #[test]
    fn illegal_option() {
        let e = err(&["-Z", "you@x"]);
        assert_eq!(e, ArgsError::IllegalOption('Z'));
        assert_eq!(e.to_string(), "illegal option -- Z");
        assert_eq!(err(&["-tiZ"]), ArgsError::IllegalOption('Z'));
        assert_eq!(err(&["-é"]), ArgsError::IllegalOption('é'));
        assert_eq!(err(&["--help"]), ArgsError::LongOption("--help".into()));
    }

    #[test]
    fn interleaved_operands() {
        let a = ok(&["you@x", "-f", "me@x", "them@x", "-i"]);
        assert_eq!(a.recipients, ["you@x", "them@x"]);
        assert_eq!(a.sender.as_deref(), Some("me@x"));
        assert!(a.ignore_dots);
    }

    #[test]
    fn double_dash_ends_options() {
        let a = ok(&["-i", "--", "-t", "--", "-fme@x"]);
        assert_eq!(a.recipients, ["-t", "--", "-fme@x"]);
        assert!(!a.extract_recipients);
        assert_eq!(a.sender, None);
        assert!(a.ignore_dots);
    }

    #[test]
    fn lone_dash_is_an_operand() {
        assert_eq!(ok(&["-", "-i"]).recipients, ["-"]);
    }

    #[test]
    fn b_modes() {
        let cases = [
            ("-bm", SendmailMode::Deliver),
            ("-bp", SendmailMode::ListQueue),
            ("-bs", SendmailMode::SmtpStdin),
            ("-bd", SendmailMode::Daemon),
            ("-bi", SendmailMode::NewAliases),
        ];
        for (arg, mode) in cases {
            // -bm needs a recipient; the others take none.
            let a = if mode == SendmailMode::Deliver {
                ok(&[arg, "x@y"])
            } else {
                ok(&[arg])
            };
            assert_eq!(a.mode, mode, "{arg}");
        }
        assert_eq!(ok(&["-b", "p"]).mode, SendmailMode::ListQueue);
        assert_eq!(ok(&["-bv", "x@y"]).mode, SendmailMode::Verify);
        assert_eq!(ok(&["-I"]).mode, SendmailMode::NewAliases);
    }

    #[test]
    fn unsupported_b_modes() {
        let e = err(&["-bt"]);
        assert_eq!(e, ArgsError::UnsupportedMode("t".into()));
        assert!(e.to_string().starts_with("unsupported: -bt "), "{e}");
        assert_eq!(err(&["-bD"]), ArgsError::UnsupportedMode("D".into()));
        assert_eq!(
            err(&["-bmx", "y@x"]),
            ArgsError::UnsupportedMode("mx".into())
        );
        assert_eq!(err(&["-b", ""]), ArgsError::UnsupportedMode(String::new()));
    }

    #[test]
    fn last_mode_wins() {
        assert_eq!(ok(&["-bp", "-bi"]).mode, SendmailMode::NewAliases);
        assert_eq!(ok(&["-bp", "-bm", "x@y"]).mode, SendmailMode::Deliver);
        assert_eq!(ok(&["-q", "-bp"]).mode, SendmailMode::ListQueue);
        assert_eq!(ok(&["-q", "-bd"]).mode, SendmailMode::Daemon);
        // -q does not undo -bd.
        let a = ok(&["-bd", "-q"]);
        assert_eq!(a.mode, SendmailMode::Daemon);
        assert_eq!(a.ignored, ["-q"]);
    }

    #[test]
    fn program_name_sets_default_mode() {
        let p = |name: &str, args: &[&str]| parse_sendmail_args(name, args.iter().copied());
        assert_eq!(p("mailq", &[]).map(|a| a.mode), Ok(SendmailMode::ListQueue));
        assert_eq!(
            p("/usr/bin/mailq", &[]).map(|a| a.mode),
            Ok(SendmailMode::ListQueue)
        );
        assert_eq!(
            p("newaliases", &[]).map(|a| a.mode),
            Ok(SendmailMode::NewAliases)
        );
        assert_eq!(
            p("ringmail", &["a@x"]).map(|a| a.mode),
            Ok(SendmailMode::Deliver)
        );
        assert_eq!(
            p("sendmail", &["-bp"]).map(|a| a.mode),
            Ok(SendmailMode::ListQueue)
        );
        // Flags override the name.
        assert_eq!(
            p("newaliases", &["-bp"]).map(|a| a.mode),
            Ok(SendmailMode::ListQueue)
        );
        assert_eq!(
            p("mailq", &["-bm", "a@x"]).map(|a| a.mode),
            Ok(SendmailMode::Deliver)
        );
        // The name shows up in conflicts.
        assert_eq!(
            p("mailq", &["a@x"]),
            Err(ArgsError::RecipientsNotAllowed {
                mode: "mailq".into(),
                first: "a@x".into()
            })
        );
    }

    #[test]
    fn o_options() {
        assert!(ok(&["-oi", "a@x"]).ignore_dots);
        assert!(ok(&["-o", "i", "a@x"]).ignore_dots);
        let a = ok(&[
            "-oem",
            "-odb",
            "-oQ/var/spool/x",
            "-om",
            "-o7",
            "-oitrue",
            "a@x",
        ]);
        assert!(!a.ignore_dots);
        assert_eq!(
            a.ignored,
            ["-oem", "-odb", "-oQ/var/spool/x", "-om", "-o7", "-oitrue"]
        );
    }

    #[test]
    fn q_forms() {
        let a = ok(&["-q"]);
        assert_eq!(a.mode, SendmailMode::Flush);
        assert!(a.ignored.is_empty());
        for arg in ["-q30m", "-qRexample.com", "-qSexample.com", "-qIABC123"] {
            let a = ok(&[arg]);
            assert_eq!(a.mode, SendmailMode::Flush, "{arg}");
            assert_eq!(a.ignored, [arg]);
        }
        // -q takes no separate value: the next argument is an operand.
        assert_eq!(
            err(&["-q", "30m"]),
            ArgsError::RecipientsNotAllowed {
                mode: "-q".into(),
                first: "30m".into()
            }
        );
        // At the end of a cluster it is a plain -q.
        let a = ok(&["-vq"]);
        assert_eq!((a.mode, a.verbose), (SendmailMode::Flush, 1));
    }

    #[test]
    fn ignored_options_are_reported_as_given() {
        let a = ok(&[
            "-G",
            "-U",
            "-c",
            "-m",
            "-n",
            "-x",
            "-em",
            "-h",
            "5",
            "-Llabel",
            "-O",
            "Timeout=1",
            "-p",
            "smtp",
            "-XV",
            "-Am",
            "a@x",
        ]);
        assert_eq!(
            a.ignored,
            [
                "-G",
                "-U",
                "-c",
                "-m",
                "-n",
                "-x",
                "-em",
                "-h 5",
                "-Llabel",
                "-O Timeout=1",
                "-p smtp",
                "-XV",
                "-Am"
            ]
        );
        assert_eq!(a.recipients, ["a@x"]);
        // Ignored options with a value still consume it.
        assert_eq!(err(&["-h"]), ArgsError::MissingArgument('h'));
    }

    #[test]
    fn body_type() {
        assert_eq!(
            ok(&["-B8BITMIME", "a@x"]).body_type,
            Some(BodyType::EightBitMime)
        );
        assert_eq!(
            ok(&["-B", "7bit", "a@x"]).body_type,
            Some(BodyType::SevenBit)
        );
        assert_eq!(
            ok(&["-B8bitMime", "a@x"]).body_type,
            Some(BodyType::EightBitMime)
        );
        let e = err(&["-B", "binarymime", "a@x"]);
        assert_eq!(
            e,
            ArgsError::BadValue {
                option: 'B',
                value: "binarymime".into(),
                expected: "7BIT or 8BITMIME"
            }
        );
        assert!(e.to_string().contains("-B"), "{e}");
    }

    #[test]
    fn dsn_notify() {
        let n = |v: &str| parse(&["-N", v, "a@x"]).map(|a| a.dsn_notify.map(|n| n.to_string()));
        assert_eq!(n("never"), Ok(Some("NEVER".into())));
        assert_eq!(n("NEVER"), Ok(Some("NEVER".into())));
        assert_eq!(n("failure,delay"), Ok(Some("FAILURE,DELAY".into())));
        assert_eq!(
            n("Success, FAILURE,success"),
            Ok(Some("SUCCESS,FAILURE".into()))
        );
        assert_eq!(n("delay"), Ok(Some("DELAY".into())));
        for bad in [
            "",
            "never,success",
            "failure,",
            "sometimes",
            ",delay",
            "never\r\n",
            "failure\r\nRCPT TO:<evil@x.test>",
        ] {
            assert!(
                matches!(n(bad), Err(ArgsError::BadValue { option: 'N', .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn dsn_ret() {
        assert_eq!(ok(&["-R", "HDRS", "a@x"]).dsn_ret, Some(DsnRet::Headers));
        assert_eq!(ok(&["-Rfull", "a@x"]).dsn_ret, Some(DsnRet::Full));
        assert!(matches!(
            err(&["-R", "all", "a@x"]),
            ArgsError::BadValue { option: 'R', .. }
        ));
    }

    #[test]
    fn envid() {
        assert_eq!(
            ok(&["-V", "abc 123", "a@x"]).envid.as_deref(),
            Some("abc 123")
        );
        let long = "x".repeat(101);
        for bad in [
            "",
            "a\tb",
            "é",
            "id\r\nRCPT TO:<evil@x.test>",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    err(&["-V", bad, "a@x"]),
                    ArgsError::BadValue { option: 'V', .. }
                ),
                "{bad:?} accepted"
            );
        }
        assert!(ok(&["-V", &"x".repeat(100), "a@x"]).envid.is_some());
    }

    #[test]
    fn full_name_and_config() {
        let a = ok(&["-F", "Cron Daemon", "-C", "/etc/rm.toml", "a@x"]);
        assert_eq!(a.full_name.as_deref(), Some("Cron Daemon"));
        assert_eq!(a.config, Some(PathBuf::from("/etc/rm.toml")));
        assert!(matches!(
            err(&["-F", "Evil\r\nBcc: victim@x", "a@x"]),
            ArgsError::BadValue { option: 'F', .. }
        ));
        assert!(matches!(
            err(&["-C", "", "a@x"]),
            ArgsError::BadValue { option: 'C', .. }
        ));
    }

    #[test]
    fn recipients_required_for_delivery() {
        let e = err(&["-i"]);
        assert_eq!(e, ArgsError::NoRecipients);
        assert_eq!(err(&[]), ArgsError::NoRecipients);
        // -t alone is enough; recipients add to the header ones.
        assert!(ok(&["-t"]).recipients.is_empty());
        assert_eq!(ok(&["-t", "extra@x"]).recipients, ["extra@x"]);
    }

    #[test]
    fn modes_without_recipients() {
        for mode in ["-bp", "-q", "-bs", "-bi", "-bd", "-I", "-q30m"] {
            assert_eq!(
                err(&[mode, "a@x"]),
                ArgsError::RecipientsNotAllowed {
                    mode: mode.into(),
                    first: "a@x".into()
                },
                "{mode}"
            );
        }
    }

    #[test]
    fn t_only_in_delivery_mode() {
        assert_eq!(
            err(&["-t", "-bp"]),
            ArgsError::Conflict {
                option: "-t",
                mode: "-bp".into()
            }
        );
        assert_eq!(
            err(&["-t", "-bv", "a@x"]).to_string(),
            "-t cannot be used with -bv"
        );
        let p = parse_sendmail_args("mailq", ["-t"]);
        assert_eq!(
            p,
            Err(ArgsError::Conflict {
                option: "-t",
                mode: "mailq".into()
            })
        );
    }

    #[test]
    fn verify_rules() {
        let a = ok(&["-bv", "a@x", "b@y"]);
        assert_eq!(a.recipients, ["a@x", "b@y"]);
        assert_eq!(err(&["-bv"]), ArgsError::NothingToVerify);
        assert_eq!(
            err(&["-bv", "-N", "never", "a@x"]),
            ArgsError::Conflict {
                option: "-N",
                mode: "-bv".into()
            }
        );
        assert_eq!(
            err(&["-bv", "-Rfull", "a@x"]),
            ArgsError::Conflict {
                option: "-R",
                mode: "-bv".into()
            }
        );
    }

    #[test]
    fn non_utf8_argument() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'c', b'a', b'f', 0xe9]);
        let e = match parse_sendmail_args("sendmail", [OsString::from("-i"), bad]) {
            Ok(a) => panic!("accepted: {a:?}"),
            Err(e) => e,
        };
        assert_eq!(
            e,
            ArgsError::NotUtf8 {
                position: 2,
                lossy: "caf\u{fffd}".into()
            }
        );
    }

    #[test]
    fn errors_are_usage_errors() {
        let errors = [
            err(&["-Z"]),
            err(&["-f"]),
            err(&["-bt"]),
            err(&["-i"]),
            err(&["-bv"]),
            err(&["-bp", "a@x"]),
        ];
        for e in errors {
            assert_eq!(e.exit_code(), 64, "{e}");
            assert!(!e.is_transient(), "{e}");
        }
    }

    // Command lines real programs use.

    #[test]
    fn php_mail() {
        let a = ok(&["-t", "-i", "-fwww@example.com"]);
        assert!(a.extract_recipients && a.ignore_dots);
        assert_eq!(a.sender.as_deref(), Some("www@example.com"));
        assert!(a.recipients.is_empty());
    }

    #[test]
    fn cron() {
        // cronie: "-FCronDaemon -i -B8BITMIME -oem user".
        let a = ok(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]);
        assert_eq!(a.full_name.as_deref(), Some("CronDaemon"));
        assert!(a.ignore_dots);
        assert_eq!(a.body_type, Some(BodyType::EightBitMime));
        assert_eq!(a.ignored, ["-oem"]);
        assert_eq!(a.recipients, ["root"]);
    }

    #[test]
    fn git_send_email() {
        let a = ok(&["-i", "-f", "dev@example.com", "a@x", "b@y"]);
        assert!(a.ignore_dots);
        assert_eq!(a.recipients, ["a@x", "b@y"]);
    }

    #[test]
    fn mutt() {
        let a = ok(&[
            "-oem",
            "-oi",
            "-N",
            "failure,delay",
            "-R",
            "hdrs",
            "-B8BITMIME",
            "--",
            "a@x",
            "b@y",
        ]);
        assert!(a.ignore_dots);
        assert_eq!(a.dsn_notify, Notify::parse("failure,delay"));
        assert_eq!(a.dsn_ret, Some(DsnRet::Headers));
        assert_eq!(a.recipients, ["a@x", "b@y"]);
        assert_eq!(a.ignored, ["-oem"]);
    }

    #[test]
    fn usage_lists_every_option() {
        let text = usage_text();
        for f in FLAGS {
            let needle = format!("  -{}", f.letter);
            assert!(text.contains(&needle), "-{} missing from usage", f.letter);
        }
        assert!(text.starts_with("usage: sendmail"));
        assert!(text.contains("mailq"));
    }

    #[test]
    fn flag_table_has_unique_letters() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(
                FLAGS[i + 1..].iter().all(|g| g.letter != f.letter),
                "-{} twice",
                f.letter
            );
        }
        // Postfix's option string, letter for letter.
        let postfix = "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx";
        let mut letters: Vec<char> = postfix.chars().filter(|c| *c != ':').collect();
        letters.sort_unstable();
        let mut ours: Vec<char> = FLAGS.iter().map(|f| f.letter).collect();
        ours.sort_unstable();
        assert_eq!(ours, letters);
        for (i, c) in postfix.char_indices().filter(|(_, c)| *c != ':') {
            let takes_value = postfix[i + 1..].starts_with(':');
            let spec = lookup(c).map(|f| f.takes);
            let expected = if c == 'q' {
                Takes::AttachedOnly
            } else if takes_value {
                Takes::Value
            } else {
                Takes::Nothing
            };
            assert_eq!(spec, Some(expected), "-{c}");
        }
    }
}

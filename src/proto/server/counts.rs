//! Commands counted per verb, successes and all, for Postfix's
//! `disconnect from HOST[IP] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4`.

use std::fmt;

/// The commands the server knows, in the order Postfix's smtpd prints
/// them, then `unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// HELO.
    Helo,
    /// EHLO.
    Ehlo,
    /// STARTTLS.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL.
    Mail,
    /// RCPT.
    Rcpt,
    /// DATA.
    Data,
    /// BDAT.
    Bdat,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// VRFY.
    Vrfy,
    /// HELP.
    Help,
    /// QUIT.
    Quit,
    /// Anything else (including the forbidden ones).
    Unknown,
}

const VERBS: [Verb; 14] = [
    Verb::Helo,
    Verb::Ehlo,
    Verb::StartTls,
    Verb::Auth,
    Verb::Mail,
    Verb::Rcpt,
    Verb::Data,
    Verb::Bdat,
    Verb::Rset,
    Verb::Noop,
    Verb::Vrfy,
    Verb::Help,
    Verb::Quit,
    Verb::Unknown,
];

impl Verb {
    /// The lower-case name used in the disconnect line.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Helo => "helo",
            Verb::Ehlo => "ehlo",
            Verb::StartTls => "starttls",
            Verb::Auth => "auth",
            Verb::Mail => "mail",
            Verb::Rcpt => "rcpt",
            Verb::Data => "data",
            Verb::Bdat => "bdat",
            Verb::Rset => "rset",
            Verb::Noop => "noop",
            Verb::Vrfy => "vrfy",
            Verb::Help => "help",
            Verb::Quit => "quit",
            Verb::Unknown => "unknown",
        }
    }

    /// True for the commands Postfix counts as junk (they move no mail).
    pub fn is_junk(self) -> bool {
        matches!(self, Verb::Noop | Verb::Vrfy | Verb::Rset | Verb::Help)
    }

    /// The upper-case command name, as Postfix's `timeout after X` line
    /// and `lost connection after X` lines name the last command.
    pub fn command(self) -> &'static str {
        match self {
            Verb::Helo => "HELO",
            Verb::Ehlo => "EHLO",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT",
            Verb::Rset => "RSET",
            Verb::Noop => "NOOP",
            Verb::Vrfy => "VRFY",
            Verb::Help => "HELP",
            Verb::Quit => "QUIT",
            Verb::Unknown => "UNKNOWN",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per verb: how many were given and how many succeeded (their final
/// reply was 2xx: for DATA and the last BDAT, the reply after the message).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandCounts {
    ok: [u32; 14],
    total: [u32; 14],
    last: Option<Verb>,
}

impl CommandCounts {
    /// `(succeeded, given)` for `verb`.
    pub fn get(&self, verb: Verb) -> (u32, u32) {
        (self.ok[verb.index()], self.total[verb.index()])
    }

    /// `(succeeded, given)` over all commands.
    pub fn commands(&self) -> (u32, u32) {
        (self.ok.iter().sum(), self.total.iter().sum())
    }

    /// The command given last, if any.
    pub fn last(&self) -> Option<Verb> {
        self.last
    }

    pub(crate) fn given(&mut self, verb: Verb) {
        self.last = Some(verb);
        self.total[verb.index()] = self.total[verb.index()].saturating_add(1);
    }

    pub(crate) fn succeeded(&mut self, verb: Verb) {
        self.ok[verb.index()] = self.ok[verb.index()].saturating_add(1);
    }
}

impl fmt::Display for CommandCounts {
    /// `ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4`: each verb given at
    /// least once as `name=total`, or `name=ok/total` when some failed,
    /// then the sum as `commands=`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pair = |f: &mut fmt::Formatter<'_>, name: &str, ok: u32, total: u32| {
            if ok == total {
                write!(f, "{name}={total}")
            } else {
                write!(f, "{name}={ok}/{total}")
            }
        };
        for verb in VERBS {
            let (ok, total) = self.get(verb);
            if total > 0 {
                pair(f, verb.name(), ok, total)?;
                f.write_str(" ")?;
            }
        }
        let (ok, total) = self.commands();
        pair(f, "commands", ok, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_disconnect_text() {
        let mut c = CommandCounts::default();
        assert_eq!(c.to_string(), "commands=0");
        for v in [Verb::Ehlo, Verb::Mail, Verb::Rcpt, Verb::Data, Verb::Quit] {
            c.given(v);
            c.succeeded(v);
        }
        assert_eq!(
            c.to_string(),
            "ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
        );
        c.given(Verb::Rcpt);
        c.given(Verb::Unknown);
        assert_eq!(
            c.to_string(),
            "ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 unknown=0/1 commands=5/7"
        );
        assert_eq!(c.get(Verb::Rcpt), (1, 2));
        assert!(Verb::Noop.is_junk() && !Verb::Mail.is_junk());
        assert_eq!(c.last(), Some(Verb::Unknown));
        assert_eq!(Verb::StartTls.command(), "STARTTLS");
    }
}

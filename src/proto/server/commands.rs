//! The commands outside the mail transaction: dispatch, the session
//! limits checked before each command, HELO/EHLO, STARTTLS, RSET, NOOP,
//! VRFY, HELP, QUIT and the unknown ones.

use std::sync::Arc;

use super::command::{self, Command};
use super::counts::Verb;
use super::policy::{Decision, ServerPolicy};
use super::reply::Reply;
use super::session::{Phase, Session};

pub(super) const OK: Reply = Reply::fixed(250, "2.0.0", "Ok");
const BYE: Reply = Reply::fixed(221, "2.0.0", "Bye");
const VRFY: Reply = Reply::fixed(
    252,
    "2.0.0",
    "Cannot VRFY user, but will accept message and attempt delivery",
);
const HELP: Reply = Reply::fixed(
    214,
    "2.0.0",
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
);
pub(super) const UNKNOWN: Reply = Reply::fixed(502, "5.5.2", "Error: command not recognized");
const NO_EHLO: Reply = Reply::fixed(502, "5.5.1", "Error: command not implemented");
const FORBIDDEN: Reply = Reply::fixed(221, "2.7.0", "Error: I can break rules, too. Goodbye.");
const BAD_HELO: Reply = Reply::fixed(501, "5.5.4", "Syntax: EHLO hostname");
pub(super) const NEED_HELO: Reply = Reply::fixed(503, "5.5.1", "Error: send HELO/EHLO first");
pub(super) const IN_TRANSACTION: Reply =
    Reply::fixed(503, "5.5.1", "Error: MAIL transaction in progress");
const READY_FOR_TLS: Reply = Reply::fixed(220, "2.0.0", "Ready to start TLS");
const TLS_ACTIVE: Reply = Reply::fixed(554, "5.5.1", "Error: TLS already active");

impl Session {
    /// Checks the session limits, then carries out one command line.
    pub(super) fn command<P: ServerPolicy + ?Sized>(
        &mut self,
        line: &[u8],
        out: &mut Vec<u8>,
        policy: &mut P,
    ) {
        let limits = self.params.config.limits;
        if limits
            .hard_error_limit
            .is_some_and(|max| self.counters.errors >= max)
        {
            let reply = self.params.too_many_errors.clone();
            return self.close_with(out, &reply);
        }
        if limits
            .max_commands
            .is_some_and(|max| self.counts.commands().1 >= max)
        {
            let reply = self.params.too_many_commands.clone();
            return self.close_with(out, &reply);
        }
        let command = command::parse(line);
        let verb = command.verb();
        self.counts.given(verb);
        self.current = Some(verb);
        if verb.is_junk() {
            self.junk = self.junk.saturating_add(1);
            if limits.junk_command_limit.is_some_and(|max| self.junk > max) {
                self.counters.errors = self.counters.errors.saturating_add(1);
            }
        }
        let esmtp = self.params.config.esmtp;
        match command {
            Command::Helo(name) => self.hello(name, false, out, policy),
            Command::Ehlo(name) if esmtp => self.hello(name, true, out, policy),
            Command::Ehlo(_) => self.send(out, &NO_EHLO),
            Command::Mail { path, params } => self.mail(path, params, out, policy),
            Command::Rcpt { path, params } => self.rcpt(path, params, out, policy),
            Command::Data => self.data_command(out),
            Command::Bdat { size, last } if self.chunking() => self.bdat(size, last),
            Command::Rset => {
                self.reset_transaction();
                self.send(out, &OK);
            }
            Command::Noop => self.send(out, &OK),
            Command::Quit => self.close_with(out, &BYE),
            Command::Vrfy => self.send(out, &VRFY),
            Command::Help => self.send(out, &HELP),
            Command::StartTls if self.params.config.starttls && esmtp => self.starttls(out),
            Command::Auth { mechanism, initial } if self.params.config.auth.is_some() && esmtp => {
                self.auth(mechanism, initial, out)
            }
            Command::Bad(Verb::Bdat, reply) if self.chunking() => {
                // The chunk's length is unknown, so what follows cannot be
                // told from commands: hang up.
                self.close_with(out, &reply)
            }
            Command::Bad(Verb::StartTls, reply) if self.params.config.starttls && esmtp => {
                self.send(out, &reply)
            }
            Command::Bad(Verb::Auth, reply) if self.params.config.auth.is_some() && esmtp => {
                self.send(out, &reply)
            }
            Command::Forbidden if self.params.config.forbid_non_smtp => {
                self.close_with(out, &FORBIDDEN)
            }
            Command::Bad(Verb::Bdat | Verb::StartTls | Verb::Auth, _)
            | Command::Bdat { .. }
            | Command::StartTls
            | Command::Auth { .. }
            | Command::Forbidden
            | Command::Unknown => self.send(out, &UNKNOWN),
            Command::Bad(_, reply) => self.send(out, &reply),
        }
    }

    /// BDAT is offered.
    fn chunking(&self) -> bool {
        self.params.config.esmtp && self.params.config.extensions.chunking
    }

    fn hello<P: ServerPolicy + ?Sized>(
        &mut self,
        name: &[u8],
        ehlo: bool,
        out: &mut Vec<u8>,
        policy: &mut P,
    ) {
        let Ok(name) = std::str::from_utf8(name) else {
            return self.send(out, &BAD_HELO);
        };
        match policy.helo(&self.context(), name) {
            Decision::Accept => {}
            Decision::Reject(reply) => return self.send(out, &reply),
            Decision::Disconnect(reply) => return self.close_with(out, &reply),
        }
        self.reset_transaction();
        self.helo = Some(name.to_string());
        self.ehlo = ehlo;
        let params = Arc::clone(&self.params);
        self.send_raw(
            out,
            match (ehlo, self.tls) {
                (false, _) => &params.helo,
                (true, false) => &params.ehlo_plain,
                (true, true) => &params.ehlo_tls,
            },
        );
    }

    fn starttls(&mut self, out: &mut Vec<u8>) {
        if self.tls {
            return self.send(out, &TLS_ACTIVE);
        }
        if self.helo.is_none() {
            return self.send(out, &NEED_HELO);
        }
        if self.tx.sender.is_some() {
            return self.send(out, &IN_TRANSACTION);
        }
        self.send(out, &READY_FOR_TLS);
        self.phase = Phase::StartTls;
    }
}

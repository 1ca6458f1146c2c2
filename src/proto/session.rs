//! The connection-level exchanges around transactions: the greeting and
//! EHLO (with the HELO fallback), and single commands (RSET, STARTTLS,
//! QUIT).

use super::action::Action;
use super::caps::Capabilities;
use super::command::{self, Stage};
use super::error::ProtoError;
use super::reply::Reply;

/// The result of connection setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupOutcome {
    /// What the server offers (all off after HELO).
    pub caps: Capabilities,
    /// True when EHLO was accepted, false after the HELO fallback.
    pub esmtp: bool,
}

/// Where setup stands.
#[derive(Debug)]
enum SetupStep {
    AwaitGreeting,
    SendEhlo,
    AwaitEhlo,
    SendHelo,
    AwaitHelo,
    Finished(Result<SetupOutcome, ProtoError>),
}

/// Connection setup: read the greeting, send EHLO, and fall back to HELO
/// when EHLO is refused. Finishes with `Ok(SetupOutcome)` or the error that
/// makes the connection unusable:
///
/// - Greeting: 2xx goes on; 4xx/5xx is [`ProtoError::Rejected`], transient
///   or permanent by its class (554 means "do not talk to me").
/// - EHLO: 2xx gives the [`Capabilities`]; 421 is a rejection; any other
///   refusal (500, 502, 550, ...) falls back to HELO, as Postfix does.
/// - HELO: 2xx finishes without capabilities; a refusal is a rejection.
/// - A 3xx anywhere is [`ProtoError::Unexpected`].
#[derive(Debug)]
pub struct SessionSetup {
    ehlo: Vec<u8>,
    helo: Vec<u8>,
    step: SetupStep,
}

impl SessionSetup {
    /// Setup on a new connection: the greeting comes first. `name` is our
    /// host name for EHLO/HELO.
    pub fn new(name: &str) -> Result<SessionSetup, ProtoError> {
        SessionSetup::starting(name, SetupStep::AwaitGreeting)
    }

    /// Setup after a STARTTLS handshake: EHLO again, no greeting (RFC 3207
    /// section 4.2: capabilities from before TLS are forgotten).
    pub fn after_starttls(name: &str) -> Result<SessionSetup, ProtoError> {
        SessionSetup::starting(name, SetupStep::SendEhlo)
    }

    fn starting(name: &str, step: SetupStep) -> Result<SessionSetup, ProtoError> {
        let mut ehlo = Vec::new();
        command::ehlo(&mut ehlo, name)?;
        let mut helo = Vec::new();
        command::helo(&mut helo, name)?;
        Ok(SessionSetup { ehlo, helo, step })
    }

    /// What to do next; see [`Action`].
    pub fn next_action(&mut self) -> Action<Result<SetupOutcome, ProtoError>> {
        match &self.step {
            SetupStep::SendEhlo => {
                self.step = SetupStep::AwaitEhlo;
                Action::Send(self.ehlo.clone())
            }
            SetupStep::SendHelo => {
                self.step = SetupStep::AwaitHelo;
                Action::Send(self.helo.clone())
            }
            SetupStep::AwaitGreeting | SetupStep::AwaitEhlo | SetupStep::AwaitHelo => {
                Action::AwaitReply
            }
            SetupStep::Finished(outcome) => Action::Done(outcome.clone()),
        }
    }

    /// Takes the reply that the last [`Action::AwaitReply`] asked for.
    /// Fails only when no reply was awaited.
    pub fn on_reply(&mut self, reply: Reply) -> Result<(), ProtoError> {
        self.step = match &self.step {
            SetupStep::AwaitGreeting => match expect_positive(Stage::Greeting, reply) {
                Ok(_) => SetupStep::SendEhlo,
                Err(e) => SetupStep::Finished(Err(e)),
            },
            SetupStep::AwaitEhlo if reply.is_positive() => SetupStep::Finished(Ok(SetupOutcome {
                caps: Capabilities::from_ehlo(&reply),
                esmtp: true,
            })),
            SetupStep::AwaitEhlo if reply.code == 421 || reply.is_intermediate() => {
                SetupStep::Finished(Err(refusal(Stage::Ehlo, reply)))
            }
            SetupStep::AwaitEhlo => SetupStep::SendHelo,
            SetupStep::AwaitHelo => {
                SetupStep::Finished(expect_positive(Stage::Helo, reply).map(|_| SetupOutcome {
                    caps: Capabilities::default(),
                    esmtp: false,
                }))
            }
            _ => return Err(ProtoError::Misuse("reply given when none was awaited")),
        };
        Ok(())
    }
}

/// `reply` if it is 2xx, otherwise its [`refusal`].
fn expect_positive(stage: Stage, reply: Reply) -> Result<Reply, ProtoError> {
    if reply.is_positive() {
        Ok(reply)
    } else {
        Err(refusal(stage, reply))
    }
}

/// The error for a reply that is not the 2xx `stage` needed:
/// [`ProtoError::Unexpected`] for a 2xx or 3xx, [`ProtoError::Rejected`] for
/// a 4xx or 5xx.
fn refusal(stage: Stage, reply: Reply) -> ProtoError {
    if reply.is_transient() || reply.is_permanent() {
        ProtoError::Rejected { stage, reply }
    } else {
        ProtoError::Unexpected { stage, reply }
    }
}

/// Where a single command stands.
#[derive(Debug)]
enum SimpleStep {
    Send(Vec<u8>),
    Await,
    Finished(Result<Reply, ProtoError>),
}

/// One command and its reply: RSET, STARTTLS or QUIT. Finishes with the
/// reply, or with the error for a reply that refuses: RSET and STARTTLS need
/// a 2xx (a 3xx is [`ProtoError::Unexpected`], a 4xx/5xx
/// [`ProtoError::Rejected`]); QUIT takes any reply, since the connection
/// closes anyway.
///
/// After STARTTLS's 220 the caller checks that the reply parser holds
/// nothing more ([`ReplyParser::has_pending`](super::ReplyParser::has_pending)),
/// starts TLS, and runs [`SessionSetup::after_starttls`].
#[derive(Debug)]
pub struct SimpleCommand {
    stage: Stage,
    step: SimpleStep,
}

impl SimpleCommand {
    /// RSET: abandons a transaction so the connection can take another.
    pub fn rset() -> SimpleCommand {
        SimpleCommand::with(Stage::Rset, command::rset)
    }

    /// STARTTLS (RFC 3207).
    pub fn starttls() -> SimpleCommand {
        SimpleCommand::with(Stage::StartTls, command::starttls)
    }

    /// QUIT.
    pub fn quit() -> SimpleCommand {
        SimpleCommand::with(Stage::Quit, command::quit)
    }

    fn with(stage: Stage, encode: fn(&mut Vec<u8>)) -> SimpleCommand {
        let mut bytes = Vec::new();
        encode(&mut bytes);
        SimpleCommand {
            stage,
            step: SimpleStep::Send(bytes),
        }
    }

    /// What to do next; see [`Action`].
    pub fn next_action(&mut self) -> Action<Result<Reply, ProtoError>> {
        match &mut self.step {
            SimpleStep::Send(bytes) => {
                let bytes = std::mem::take(bytes);
                self.step = SimpleStep::Await;
                Action::Send(bytes)
            }
            SimpleStep::Await => Action::AwaitReply,
            SimpleStep::Finished(result) => Action::Done(result.clone()),
        }
    }

    /// Takes the reply that the last [`Action::AwaitReply`] asked for.
    /// Fails only when no reply was awaited.
    pub fn on_reply(&mut self, reply: Reply) -> Result<(), ProtoError> {
        if !matches!(self.step, SimpleStep::Await) {
            return Err(ProtoError::Misuse("reply given when none was awaited"));
        }
        self.step = SimpleStep::Finished(match self.stage {
            Stage::Quit => Ok(reply),
            stage => expect_positive(stage, reply),
        });
        Ok(())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

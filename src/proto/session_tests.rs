use super::*;
use crate::proto::test_support::{drive, reply};

fn setup() -> SessionSetup {
    SessionSetup::new("client.example").unwrap()
}

#[test]
fn greeting_then_ehlo() {
    let run = drive(
        setup(),
        &[
            "220 mx.example.net ESMTP",
            "250-mx.example.net\n250-PIPELINING\n250-SIZE 1000\n250 8BITMIME",
        ],
    );
    assert_eq!(run.actions, ["await", "send", "await"]);
    assert_eq!(run.writes, ["EHLO client.example\r\n"]);
    let o = run.outcome.unwrap();
    assert!(o.esmtp);
    assert!(o.caps.pipelining && o.caps.eightbitmime);
    assert_eq!(o.caps.size, Some(1000));
}

#[test]
fn helo_fallback_when_ehlo_refused() {
    for refusal in [
        "500 5.5.1 command unrecognized",
        "502 not implemented",
        "451 odd",
    ] {
        let run = drive(setup(), &["220 old.example", refusal, "250 old.example"]);
        assert_eq!(
            run.writes,
            ["EHLO client.example\r\n", "HELO client.example\r\n"]
        );
        let o = run.outcome.unwrap();
        assert!(!o.esmtp, "{refusal}");
        assert_eq!(o.caps, Capabilities::default());
    }
}

#[test]
fn helo_refused_is_a_rejection() {
    let run = drive(setup(), &["220 x", "502 no", "550 5.7.1 go away"]);
    let e = run.outcome.unwrap_err();
    assert!(matches!(
        e,
        ProtoError::Rejected {
            stage: Stage::Helo,
            ..
        }
    ));
    assert!(!e.is_transient());
    assert_eq!(e.dsn(), "5.7.1");
}

#[test]
fn greeting_refusals() {
    let run = drive(setup(), &["554 5.7.1 do not talk to me"]);
    let e = run.outcome.unwrap_err();
    assert!(matches!(
        e,
        ProtoError::Rejected {
            stage: Stage::Greeting,
            ..
        }
    ));
    assert!(!e.is_transient());
    assert_eq!(e.rejected_by().map(|r| r.code), Some(554));
    assert!(run.writes.is_empty(), "nothing sent to a refusing server");

    let e = drive(setup(), &["421 4.3.2 too busy"]).outcome.unwrap_err();
    assert!(e.is_transient());

    let e = drive(setup(), &["354 what"]).outcome.unwrap_err();
    assert!(matches!(
        e,
        ProtoError::Unexpected {
            stage: Stage::Greeting,
            ..
        }
    ));
    assert!(e.is_transient());
}

#[test]
fn ehlo_421_is_not_a_fallback() {
    let run = drive(setup(), &["220 x", "421 4.3.2 closing"]);
    assert_eq!(run.writes, ["EHLO client.example\r\n"]);
    let e = run.outcome.unwrap_err();
    assert!(matches!(
        e,
        ProtoError::Rejected {
            stage: Stage::Ehlo,
            ..
        }
    ));
    assert!(e.is_transient());
}

#[test]
fn failure_is_the_outcome_and_sticks() {
    let mut s = setup();
    assert_eq!(s.next_action(), Action::AwaitReply);
    s.on_reply(reply("554 no")).unwrap();
    let Action::Done(Err(e)) = s.next_action() else {
        panic!("finished with an error")
    };
    assert_eq!(s.next_action(), Action::Done(Err(e)));
    assert!(matches!(
        s.on_reply(reply("220 changed my mind")),
        Err(ProtoError::Misuse(_))
    ));
}

#[test]
fn after_starttls_starts_with_ehlo() {
    let run = drive(
        SessionSetup::after_starttls("client.example").unwrap(),
        &["250-mx\n250 PIPELINING"],
    );
    assert_eq!(run.actions, ["send", "await"]);
    assert!(run.outcome.unwrap().caps.pipelining);
}

#[test]
fn bad_hostname_is_refused() {
    assert!(matches!(
        SessionSetup::new("bad name"),
        Err(ProtoError::InvalidHostname(_))
    ));
    assert!(SessionSetup::after_starttls("a\r\nQUIT").is_err());
}

#[test]
fn setup_misuse() {
    let mut s = SessionSetup::after_starttls("c").unwrap();
    assert!(matches!(
        s.on_reply(reply("250 early")),
        Err(ProtoError::Misuse(_))
    ));
}

#[test]
fn simple_commands() {
    let run = drive(SimpleCommand::rset(), &["250 2.0.0 Ok"]);
    assert_eq!(run.writes, ["RSET\r\n"]);
    assert_eq!(run.outcome.unwrap().code, 250);

    let run = drive(SimpleCommand::rset(), &["421 closing"]);
    let e = run.outcome.unwrap_err();
    assert!(matches!(
        e,
        ProtoError::Rejected {
            stage: Stage::Rset,
            ..
        }
    ));
    assert!(e.is_transient());

    let run = drive(SimpleCommand::starttls(), &["220 2.0.0 Ready to start TLS"]);
    assert_eq!(run.writes, ["STARTTLS\r\n"]);
    assert!(run.outcome.is_ok());

    let e = drive(SimpleCommand::starttls(), &["454 4.7.0 TLS not available"])
        .outcome
        .unwrap_err();
    assert!(matches!(
        e,
        ProtoError::Rejected {
            stage: Stage::StartTls,
            ..
        }
    ));

    let run = drive(SimpleCommand::quit(), &["500 whatever"]);
    assert_eq!(run.writes, ["QUIT\r\n"]);
    assert_eq!(run.outcome.unwrap().code, 500, "QUIT takes any reply");
}

#[test]
fn simple_command_misuse() {
    let mut c = SimpleCommand::quit();
    assert!(matches!(
        c.on_reply(reply("221 bye")),
        Err(ProtoError::Misuse(_))
    ));
}

use super::*;
use crate::proto::test_support::{drive, reply, Run};

const MAIL: &str = "MAIL FROM:<s@a.example> SIZE=100\r\n";
const RCPT1: &str = "RCPT TO:<r1@b.example>\r\n";
const RCPT2: &str = "RCPT TO:<r2@b.example>\r\n";
const DATA: &str = "DATA\r\n";

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn tx(pipelining: bool) -> Transaction {
    let recipients = strings(&["r1@b.example", "r2@b.example"]);
    let envelope = Envelope {
        sender: "s@a.example",
        recipients: &recipients,
        params: MailParams {
            size: Some(100),
            ..MailParams::default()
        },
        dsn: Default::default(),
    };
    Transaction::new(&envelope, pipelining).unwrap()
}

fn new_tx(
    sender: &str,
    recipients: &[&str],
    params: MailParams,
) -> Result<Transaction, ProtoError> {
    let recipients = strings(recipients);
    let envelope = Envelope {
        sender,
        recipients: &recipients,
        params,
        dsn: Default::default(),
    };
    Transaction::new(&envelope, true)
}

fn exchange(pipelining: bool, replies: &[&str]) -> (Run<TxOutcome>, TxOutcome) {
    let run = drive(tx(pipelining), replies);
    let outcome = run.outcome.clone();
    (run, outcome)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Delivered,
    Deferred,
    Bounced,
}

/// (verdict, reply code, stage) per recipient.
fn verdicts(o: &TxOutcome) -> Vec<(Verdict, u16, Stage)> {
    assert_eq!(o.rcpts.len(), o.rcpt_stages.len());
    o.rcpts
        .iter()
        .zip(&o.rcpt_stages)
        .map(|(r, &stage)| {
            let verdict = match r {
                RcptOutcome::Delivered(_) => Verdict::Delivered,
                RcptOutcome::Deferred(_) => Verdict::Deferred,
                RcptOutcome::Bounced(_) => Verdict::Bounced,
            };
            (verdict, r.reply().code, stage)
        })
        .collect()
}

fn pipelined_commands() -> String {
    [MAIL, RCPT1, RCPT2, DATA].concat()
}

use Stage::{Data, EndOfData, Mail, Rcpt};
use Verdict::{Bounced, Deferred, Delivered};

#[test]
fn all_accepted_pipelined() {
    let (run, o) = exchange(
        true,
        &[
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as 4Xy",
        ],
    );
    assert_eq!(run.writes, [pipelined_commands(), "<body>".to_string()]);
    assert_eq!(
        run.actions,
        ["send", "await", "await", "await", "await", "body", "await"]
    );
    assert_eq!(
        verdicts(&o),
        [(Delivered, 250, EndOfData), (Delivered, 250, EndOfData)]
    );
    assert_eq!(
        o.rcpts[0].reply().to_string(),
        "250 2.0.0 Ok: queued as 4Xy"
    );
    assert_eq!(o.rcpts[0].dsn(), "2.0.0");
    assert_eq!(o.mail.code, 250);
    assert_eq!(o.data.as_ref().map(|r| r.code), Some(354));
    assert_eq!(o.final_reply.as_ref().map(|r| r.code), Some(250));
    assert!(!o.needs_rset);
    assert!(!o.closing);
}

#[test]
fn all_accepted_one_by_one() {
    let (run, o) = exchange(
        false,
        &["250 Ok", "250 Ok", "251 forwarded", "354 go", "250 Ok"],
    );
    assert_eq!(run.writes, [MAIL, RCPT1, RCPT2, DATA, "<body>"]);
    assert_eq!(
        run.actions,
        ["send", "await", "send", "await", "send", "await", "send", "await", "body", "await"]
    );
    assert_eq!(
        verdicts(&o),
        [(Delivered, 250, EndOfData), (Delivered, 250, EndOfData)]
    );
    assert!(!o.needs_rset);
}

#[test]
fn one_rcpt_rejected() {
    for pipelining in [true, false] {
        let (run, o) = exchange(
            pipelining,
            &[
                "250 Ok",
                "550 5.1.1 <r1@b.example>: Recipient address rejected",
                "250 Ok",
                "354 go",
                "250 2.0.0 Ok",
            ],
        );
        assert_eq!(run.writes.last().map(String::as_str), Some("<body>"));
        assert_eq!(
            verdicts(&o),
            [(Bounced, 550, Rcpt), (Delivered, 250, EndOfData)],
            "pipelining {pipelining}"
        );
        assert_eq!(o.rcpts[0].dsn(), "5.1.1");
        assert!(!o.needs_rset);
    }
}

#[test]
fn all_rcpts_rejected_one_by_one_skips_data() {
    let (run, o) = exchange(false, &["250 Ok", "550 5.1.1 no", "450 4.2.0 later"]);
    assert_eq!(run.writes, [MAIL, RCPT1, RCPT2]);
    assert_eq!(verdicts(&o), [(Bounced, 550, Rcpt), (Deferred, 450, Rcpt)]);
    assert_eq!(o.data, None);
    assert_eq!(o.final_reply, None);
    assert!(o.needs_rset);
}

#[test]
fn all_rcpts_rejected_pipelined_data_refused() {
    let (run, o) = exchange(
        true,
        &[
            "250 Ok",
            "550 5.1.1 no",
            "450 4.2.0 later",
            "554 5.5.1 Error: no valid recipients",
        ],
    );
    assert_eq!(run.writes, [pipelined_commands()]);
    assert_eq!(verdicts(&o), [(Bounced, 550, Rcpt), (Deferred, 450, Rcpt)]);
    assert_eq!(o.data.as_ref().map(|r| r.code), Some(554));
    assert!(o.needs_rset);
}

#[test]
fn all_rcpts_rejected_pipelined_data_accepted_sends_terminator_only() {
    let (run, o) = exchange(
        true,
        &[
            "250 Ok",
            "550 no",
            "550 no",
            "354 go",
            "554 no valid recipients",
        ],
    );
    assert_eq!(run.writes, [pipelined_commands(), ".\r\n".to_string()]);
    assert!(!run.actions.contains(&"body"));
    assert_eq!(verdicts(&o), [(Bounced, 550, Rcpt), (Bounced, 550, Rcpt)]);
    assert_eq!(o.final_reply.as_ref().map(|r| r.code), Some(554));
    assert!(o.needs_rset);
}

#[test]
fn mail_refused_one_by_one() {
    let (run, o) = exchange(false, &["451 4.3.0 try later"]);
    assert_eq!(run.writes, [MAIL]);
    assert_eq!(verdicts(&o), [(Deferred, 451, Mail), (Deferred, 451, Mail)]);
    assert_eq!(o.rcpts[1].dsn(), "4.3.0");
    assert!(o.needs_rset);

    let (_, o) = exchange(false, &["553 5.1.8 sender rejected"]);
    assert_eq!(verdicts(&o), [(Bounced, 553, Mail), (Bounced, 553, Mail)]);
}

/// A refusal that blames the conversation (ours) defers; one that blames
/// the address or the message bounces.
#[test]
fn protocol_errors_defer_and_address_errors_bounce() {
    let (_, o) = exchange(
        false,
        &["503 5.5.1 Bad sequence of commands - pipelined after end of DATA"],
    );
    assert_eq!(verdicts(&o), [(Deferred, 503, Mail), (Deferred, 503, Mail)]);
    assert_eq!(o.rcpts[0].dsn(), "4.5.1");
    for (reply, bounced) in [
        ("500 5.5.2 line too long", false),
        ("502 5.5.2 not recognised", false),
        ("504 5.5.4 parameter not implemented", false),
        ("555 5.5.4 unsupported parameter", false),
        ("501 5.5.4 bad SIZE parameter", false),
        ("501 5.1.3 bad recipient address syntax", true),
        (
            "550 5.5.0 Requested action not taken: mailbox unavailable",
            true,
        ),
        ("553 5.1.8 sender rejected", true),
    ] {
        let (_, o) = exchange(false, &[reply]);
        let bounce = matches!(o.rcpts[0], RcptOutcome::Bounced(_));
        assert_eq!(bounce, bounced, "{reply}");
    }
}

#[test]
fn mail_refused_pipelined_reads_every_reply() {
    let (run, o) = exchange(
        true,
        &[
            "451 4.3.0 try later",
            "503 5.5.1 need MAIL",
            "250 odd but ignored",
            "503 5.5.1 need RCPT",
        ],
    );
    assert_eq!(run.writes, [pipelined_commands()]);
    assert_eq!(run.actions, ["send", "await", "await", "await", "await"]);
    assert_eq!(verdicts(&o), [(Deferred, 451, Mail), (Deferred, 451, Mail)]);
    assert_eq!(o.mail.code, 451);
    assert!(o.needs_rset);

    // Even a 354 after a refused MAIL gets only the terminator.
    let (run, o) = exchange(
        true,
        &["451 later", "250 ok", "250 ok", "354 go", "554 empty"],
    );
    assert_eq!(run.writes.last().map(String::as_str), Some(".\r\n"));
    assert_eq!(verdicts(&o), [(Deferred, 451, Mail), (Deferred, 451, Mail)]);
    assert!(o.needs_rset);
}

#[test]
fn data_refused() {
    for pipelining in [true, false] {
        let (run, o) = exchange(
            pipelining,
            &["250 Ok", "250 Ok", "550 no", "554 5.7.1 go away"],
        );
        assert!(!run.actions.contains(&"body"));
        assert_eq!(verdicts(&o), [(Bounced, 554, Data), (Bounced, 550, Rcpt)]);
        assert_eq!(o.rcpts[0].dsn(), "5.7.1");
        assert!(o.needs_rset);
    }
    let (_, o) = exchange(true, &["250 Ok", "250 Ok", "250 Ok", "451 later"]);
    assert_eq!(verdicts(&o), [(Deferred, 451, Data), (Deferred, 451, Data)]);
}

#[test]
fn data_answered_with_success_is_deferred_not_delivered() {
    let (_, o) = exchange(true, &["250 Ok", "250 Ok", "250 Ok", "250 2.0.0 what"]);
    assert_eq!(verdicts(&o), [(Deferred, 250, Data), (Deferred, 250, Data)]);
    assert_eq!(o.rcpts[0].dsn(), "4.0.0", "class follows the verdict");
    assert!(o.needs_rset);
}

#[test]
fn final_reply_decides() {
    for pipelining in [true, false] {
        let (_, o) = exchange(
            pipelining,
            &[
                "250 Ok",
                "250 Ok",
                "250 Ok",
                "354 go",
                "452 4.3.1 Insufficient system storage",
            ],
        );
        assert_eq!(
            verdicts(&o),
            [(Deferred, 452, EndOfData), (Deferred, 452, EndOfData)]
        );
        assert_eq!(o.rcpts[0].dsn(), "4.3.1");
        assert!(!o.needs_rset, "the transaction ended normally");

        let (_, o) = exchange(
            pipelining,
            &["250 Ok", "250 Ok", "250 Ok", "354 go", "554 5.7.1 spam"],
        );
        assert_eq!(
            verdicts(&o),
            [(Bounced, 554, EndOfData), (Bounced, 554, EndOfData)]
        );
    }
}

#[test]
fn service_closing_stops_reading() {
    let (run, o) = exchange(true, &["250 Ok", "421 4.3.2 shutting down"]);
    assert_eq!(run.actions, ["send", "await", "await"]);
    assert_eq!(verdicts(&o), [(Deferred, 421, Rcpt), (Deferred, 421, Rcpt)]);
    assert!(o.closing);

    let (_, o) = exchange(false, &["421 busy"]);
    assert_eq!(verdicts(&o), [(Deferred, 421, Mail), (Deferred, 421, Mail)]);
    assert_eq!(o.mail.code, 421);
    assert!(o.closing);

    let (_, o) = exchange(true, &["250 Ok", "550 no", "250 Ok", "354 go", "421 bye"]);
    assert_eq!(
        verdicts(&o),
        [(Bounced, 550, Rcpt), (Deferred, 421, EndOfData)]
    );
    assert!(o.closing);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut t = tx(true);
    assert_eq!(
        t.on_reply(reply("250 early")),
        Err(ProtoError::Misuse("reply given when none was awaited"))
    );
    // The machine still works afterwards.
    let run = drive(t, &["250 a", "250 b", "250 c", "354 d", "250 e"]);
    assert!(matches!(run.outcome.rcpts[0], RcptOutcome::Delivered(_)));

    let mut t = tx(false);
    assert!(matches!(t.next_action(), Action::Send(_)));
    assert_eq!(t.next_action(), Action::AwaitReply);
    assert_eq!(
        t.next_action(),
        Action::AwaitReply,
        "asking again is harmless"
    );
    t.on_reply(reply("250 ok")).unwrap();
    assert!(matches!(t.next_action(), Action::Send(_)));

    assert!(matches!(
        new_tx("s@a", &[], MailParams::default()),
        Err(ProtoError::Misuse(_))
    ));
}

#[test]
fn bad_addresses_are_refused_up_front() {
    let p = MailParams::default();
    let e = new_tx("s@a", &["ok@b", "x@y>\r\nDATA"], p).unwrap_err();
    assert!(matches!(
        e,
        ProtoError::InvalidAddress {
            what: "recipient",
            ..
        }
    ));
    let e = new_tx("s\n@a", &["ok@b"], p).unwrap_err();
    assert!(matches!(
        e,
        ProtoError::InvalidAddress { what: "sender", .. }
    ));
    assert!(command::check_recipient("x@y>").is_err());
    assert!(command::check_recipient("ok@b").is_ok());
}

#[test]
fn null_sender_and_params_reach_the_wire() {
    let p = MailParams {
        size: Some(7),
        body_8bit: true,
        smtputf8: true,
    };
    let run = drive(
        new_tx("", &["ü@b"], p).unwrap(),
        &["250 a", "250 b", "354 c", "250 d"],
    );
    assert_eq!(
        run.writes[0],
        "MAIL FROM:<> SIZE=7 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@b>\r\nDATA\r\n"
    );
}

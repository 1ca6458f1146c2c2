//! Sessions against scripted servers on an in-memory pipe: pipelining,
//! chaining, and chained transactions refused as Haraka refuses them.

use super::*;
use crate::deliver::{ResultClass, Timeouts};
use crate::rt::IoBackend;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn cfg() -> DeliveryConfig {
    let s = Duration::from_secs(5);
    DeliveryConfig {
        helo_name: "client.test".into(),
        timeouts: Timeouts {
            connect: s,
            helo: s,
            mail: s,
            rcpt: s,
            data_init: s,
            data_xfer: s,
            data_done: s,
            quit: s,
        },
        reuse_count_limit: 0,
        reuse_time_limit: Duration::from_secs(300),
        idle_time_limit: Duration::from_secs(2),
        backend: IoBackend::Epoll,
        dns: crate::config::DnsConfig::default(),
        inet_protocols: crate::config::InetProtocols::All,
        dns_support_level: crate::config::DnsSupportLevel::Enabled,
        dane_insecure_mx: Default::default(),
        tls_ca_file: None,
        verify_cert_match: vec![crate::config::CertMatch::Hostname],
        secure_cert_match: vec![
            crate::config::CertMatch::Nexthop,
            crate::config::CertMatch::DotNexthop,
        ],
        sasl_plaintext: false,
        chaining: crate::config::TransactionChaining::Auto,
        mta_sts: crate::deliver::mta_sts::MtaStsConfig::default(),
    }
}

/// A current-thread runtime for one test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads `n` lines the client sent (3 s each at most: a client that waits
/// instead of pipelining fails the test).
async fn lines(r: &mut BufReader<tokio::io::DuplexStream>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(3), r.read_line(&mut line))
            .await
            .expect("a line from the client")
            .unwrap();
        out.push(line);
    }
    out
}

/// A one-recipient message with `Subject: n` and an empty body.
fn msg(n: u8, rcpt: &str) -> Outgoing {
    Outgoing {
        sender: "s@x.test".into(),
        recipients: vec![rcpt.to_string()],
        wire: format!("Subject: {n}\r\n\r\n").into_bytes(),
        flags: MessageFlags::default(),
        dsn: DsnParams::default(),
    }
}

/// A session over `client` with the test configuration.
async fn open(client: tokio::io::DuplexStream, host: &str, c: &DeliveryConfig) -> Session {
    let peer = Peer {
        host: host.into(),
        addr: "127.0.0.1:25".parse().unwrap(),
    };
    Session::over(Conn::Pipe(client), peer, c, &Security::default())
        .await
        .unwrap()
}

/// A scripted server on the other end of an in-memory pipe: pipelined
/// MAIL/RCPT/RCPT/DATA, one recipient refused, the body checked byte
/// for byte, then QUIT.
#[test]
fn pipelined_transaction_over_an_in_memory_pipe() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let wire = b"Subject: t\r\n\r\n..dot\r\nbody\r\n".to_vec();
        let expect_body = [wire.as_slice(), b".\r\n"].concat();
        let srv = tokio::spawn(async move {
            let mut r = BufReader::new(server);
            r.get_mut()
                .write_all(b"220 pipe.test ESMTP\r\n")
                .await
                .unwrap();
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            assert_eq!(line, "EHLO client.test\r\n");
            r.get_mut()
                .write_all(b"250-pipe.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                .await
                .unwrap();
            let mut cmds = Vec::new();
            for _ in 0..4 {
                line.clear();
                r.read_line(&mut line).await.unwrap();
                cmds.push(line.clone());
            }
            assert_eq!(
                cmds,
                [
                    "MAIL FROM:<s@x.test>\r\n",
                    "RCPT TO:<a@y.test>\r\n",
                    "RCPT TO:<b@y.test>\r\n",
                    "DATA\r\n"
                ]
            );
            r.get_mut()
                .write_all(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n")
                .await
                .unwrap();
            let mut body = vec![0u8; expect_body.len()];
            r.read_exact(&mut body).await.unwrap();
            assert_eq!(body, expect_body);
            r.get_mut()
                .write_all(b"250 2.0.0 queued\r\n")
                .await
                .unwrap();
            line.clear();
            r.read_line(&mut line).await.unwrap();
            assert_eq!(line, "QUIT\r\n");
            r.get_mut().write_all(b"221 bye\r\n").await.unwrap();
        });
        let peer = Peer {
            host: "pipe.test".into(),
            addr: "127.0.0.1:25".parse().unwrap(),
        };
        let c = cfg();
        let mut s = Session::over(Conn::Pipe(client), peer, &c, &Security::default())
            .await
            .unwrap();
        assert!(s.capabilities().pipelining);
        let msg = Outgoing {
            sender: "s@x.test".into(),
            recipients: vec!["a@y.test".into(), "b@y.test".into()],
            wire,
            flags: MessageFlags::default(),
            dsn: DsnParams::default(),
        };
        let results = s.send(&msg, &c).await.unwrap();
        assert!(results[0].is_sent(), "{results:?}");
        assert!(
            results[1].class == ResultClass::Bounced && results[1].dsn() == "5.1.1",
            "{results:?}"
        );
        assert!(s.reusable(&c));
        s.quit(&c).await;
        srv.await.unwrap();
    });
}

/// Three messages chained: the second's MAIL, RCPT and DATA reach the
/// server before it answers the first body (the server reads them
/// before replying, and would time out if the client waited), replies
/// come back in order, and each message gets its own results. The
/// server then closes with 421 after the third message's MAIL FROM
/// (pipelined behind the second body): that one is not attempted.
#[test]
fn chained_transactions_overlap_and_unanswered_ones_are_not_attempted() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let mut r = BufReader::new(server);
            let mut line = String::new();
            async fn read_line(r: &mut BufReader<tokio::io::DuplexStream>, line: &mut String) {
                line.clear();
                tokio::time::timeout(Duration::from_secs(3), r.read_line(line))
                    .await
                    .expect("the client pipelined the next transaction")
                    .unwrap();
            }
            r.get_mut().write_all(b"220 pipe.test ESMTP\r\n").await.unwrap();
            read_line(&mut r, &mut line).await;
            r.get_mut()
                .write_all(b"250-pipe.test\r\n250 PIPELINING\r\n")
                .await
                .unwrap();
            // Message 1: envelope group.
            for _ in 0..3 {
                read_line(&mut r, &mut line).await;
            }
            r.get_mut()
                .write_all(b"250 ok\r\n250 ok\r\n354 go\r\n")
                .await
                .unwrap();
            // Body 1, its dot, then message 2's envelope, all before
            // any reply.
            let mut seen = Vec::new();
            for _ in 0..6 {
                read_line(&mut r, &mut line).await;
                seen.push(line.clone());
            }
            assert_eq!(
                seen,
                [
                    "Subject: 1\r\n",
                    "\r\n",
                    ".\r\n",
                    "MAIL FROM:<s@x.test>\r\n",
                    "RCPT TO:<b@y.test>\r\n",
                    "DATA\r\n"
                ]
            );
            r.get_mut()
                .write_all(b"250 2.0.0 one\r\n250 ok\r\n550 5.1.1 no\r\n554 no valid recipients\r\n")
                .await
                .unwrap();
            // Message 2 had no recipient left: no body, RSET next.
            read_line(&mut r, &mut line).await;
            assert_eq!(line, "RSET\r\n");
            r.get_mut().write_all(b"250 ok\r\n").await.unwrap();
            // Message 3: envelope, then the server goes away.
            read_line(&mut r, &mut line).await;
            assert_eq!(line, "MAIL FROM:<s@x.test>\r\n");
            r.get_mut()
                .write_all(b"421 4.3.2 shutting down\r\n")
                .await
                .unwrap();
        });
        let peer = Peer {
            host: "pipe.test".into(),
            addr: "127.0.0.1:25".parse().unwrap(),
        };
        let c = cfg();
        let mut s = Session::over(Conn::Pipe(client), peer, &c, &Security::default())
            .await
            .unwrap();
        let msg = |n: u8, rcpt: &str| Outgoing {
            sender: "s@x.test".into(),
            recipients: vec![rcpt.to_string()],
            wire: format!("Subject: {n}\r\n\r\n").into_bytes(),
            flags: MessageFlags::default(),
        dsn: DsnParams::default(),
        };
        let mut queue = vec![(3u8, msg(3, "c@y.test")), (2u8, msg(2, "b@y.test"))];
        let mut got = Vec::new();
        s.send_chain((1u8, msg(1, "a@y.test")), &c, true, || queue.pop(), |n, r| got.push((n, r)))
            .await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            matches!(&got[0], (1, ChainResult::Done(r)) if r[0].is_sent()),
            "{got:?}"
        );
        assert!(
            matches!(&got[1], (2, ChainResult::Done(r)) if r[0].class == ResultClass::Bounced && r[0].dsn() == "5.1.1"),
            "{got:?}"
        );
        assert!(matches!(&got[2], (3, ChainResult::NotAttempted)), "{got:?}");
        assert!(!s.reusable(&c));
        srv.await.unwrap();
    });
}

/// A server that refuses anything pipelined after the end of DATA, as
/// Haraka does: the chained message is sent again unchained on the same
/// connection (after RSET) and delivered, nothing is bounced, the
/// refusal is reported once, and the session chains no more.
#[test]
fn a_refused_chained_transaction_is_sent_again_unchained() {
    runtime().block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let mut r = BufReader::new(server);
            r.get_mut()
                .write_all(b"220 strict.test ESMTP Haraka\r\n")
                .await
                .unwrap();
            lines(&mut r, 1).await;
            r.get_mut()
                .write_all(b"250-strict.test\r\n250 PIPELINING\r\n")
                .await
                .unwrap();
            assert_eq!(lines(&mut r, 3).await[0], "MAIL FROM:<s@x.test>\r\n");
            r.get_mut()
                .write_all(b"250 ok\r\n250 ok\r\n354 go\r\n")
                .await
                .unwrap();
            // Body 1, its dot and message 2's chained envelope.
            let seen = lines(&mut r, 6).await;
            assert_eq!(seen[2], ".\r\n");
            assert_eq!(seen[3], "MAIL FROM:<s@x.test>\r\n");
            let refusal = "503 5.5.1 Bad sequence of commands - pipelined after end of DATA\r\n";
            let replies = format!("250 2.0.0 one\r\n{refusal}{refusal}{refusal}");
            r.get_mut().write_all(replies.as_bytes()).await.unwrap();
            // Message 2 again, unchained: RSET first (nothing was begun).
            assert_eq!(lines(&mut r, 1).await, ["RSET\r\n"]);
            r.get_mut().write_all(b"250 ok\r\n").await.unwrap();
            assert_eq!(lines(&mut r, 3).await[1], "RCPT TO:<b@y.test>\r\n");
            r.get_mut()
                .write_all(b"250 ok\r\n250 ok\r\n354 go\r\n")
                .await
                .unwrap();
            assert_eq!(lines(&mut r, 3).await, ["Subject: 2\r\n", "\r\n", ".\r\n"]);
            r.get_mut().write_all(b"250 2.0.0 two\r\n").await.unwrap();
            // Message 3 (a new call): not chained either; then QUIT.
            assert_eq!(lines(&mut r, 3).await[1], "RCPT TO:<c@y.test>\r\n");
            r.get_mut()
                .write_all(b"250 ok\r\n250 ok\r\n354 go\r\n")
                .await
                .unwrap();
            assert_eq!(lines(&mut r, 3).await[2], ".\r\n");
            r.get_mut().write_all(b"250 2.0.0 three\r\n").await.unwrap();
            assert_eq!(lines(&mut r, 1).await, ["QUIT\r\n"]);
            r.get_mut().write_all(b"221 bye\r\n").await.unwrap();
        });
        let c = cfg();
        let mut s = open(client, "strict.test", &c).await;
        let mut queue = vec![(2u8, msg(2, "b@y.test"))];
        let mut got = Vec::new();
        s.send_chain(
            (1u8, msg(1, "a@y.test")),
            &c,
            true,
            || queue.pop(),
            |n, r| got.push((n, r)),
        )
        .await;
        assert_eq!(got.len(), 2, "{got:?}");
        for (i, (n, r)) in got.iter().enumerate() {
            assert_eq!(usize::from(*n), i + 1);
            assert!(
                matches!(r, ChainResult::Done(r) if r[0].is_sent()),
                "{got:?}"
            );
        }
        let refusal = s.take_chain_refusal().expect("the refusal is reported");
        assert_eq!(refusal.code, 503);
        assert!(s.take_chain_refusal().is_none(), "reported once");
        let mut more = vec![(4u8, msg(4, "d@y.test"))];
        let mut got = Vec::new();
        s.send_chain(
            (3u8, msg(3, "c@y.test")),
            &c,
            true,
            || more.pop(),
            |n, r| got.push((n, r)),
        )
        .await;
        assert_eq!(got.len(), 1, "message 4 is not chained: {got:?}");
        assert!(matches!(&got[0], (3, ChainResult::Done(r)) if r[0].is_sent()));
        assert_eq!(more.len(), 1);
        s.quit(&c).await;
        srv.await.unwrap();
    });
}

/// A chained MAIL refused again when sent unchained was refused for its
/// own sake: the second answer counts, and chaining goes on.
#[test]
fn a_chained_refusal_repeated_unchained_is_the_real_answer() {
    runtime().block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let mut r = BufReader::new(server);
            r.get_mut().write_all(b"220 t ESMTP\r\n").await.unwrap();
            lines(&mut r, 1).await;
            r.get_mut().write_all(b"250-t\r\n250 PIPELINING\r\n").await.unwrap();
            lines(&mut r, 3).await;
            r.get_mut().write_all(b"250 ok\r\n250 ok\r\n354 go\r\n").await.unwrap();
            lines(&mut r, 6).await;
            let refused: &[u8] =
                b"550 5.7.1 sender blocked\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n";
            r.get_mut().write_all(b"250 one\r\n").await.unwrap();
            r.get_mut().write_all(refused).await.unwrap();
            assert_eq!(lines(&mut r, 1).await, ["RSET\r\n"]);
            r.get_mut().write_all(b"250 ok\r\n").await.unwrap();
            lines(&mut r, 3).await;
            r.get_mut().write_all(refused).await.unwrap();
        });
        let c = cfg();
        let mut s = open(client, "t", &c).await;
        let mut queue = vec![(2u8, msg(2, "a@y.test"))];
        let mut got = Vec::new();
        s.send_chain((1u8, msg(1, "a@y.test")), &c, true, || queue.pop(), |n, r| got.push((n, r)))
            .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            matches!(&got[1], (2, ChainResult::Done(r)) if r[0].class == ResultClass::Bounced && r[0].dsn() == "5.7.1"),
            "{got:?}"
        );
        assert!(s.take_chain_refusal().is_none());
        srv.await.unwrap();
    });
}

//! Self-tests of the test DNS server (`tests/common/dns.rs`): queried by
//! `hickory-resolver` configured with only that server (UDP and TCP), the
//! same way the delivery code builds its resolver, plus a few raw queries
//! over UDP for what the resolver does not show (AA, authority and
//! additional sections, truncation without EDNS).

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::dns::{DnsServer, Zone};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::ProtoErrorKind;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, Resolver, TokioResolver};

/// A resolver that asks only `server`, over UDP (TCP after truncation), with
/// no cache, no hosts file and short timeouts: the construction the
/// delivery code uses with hickory-resolver 0.25.
fn resolver(server: SocketAddr, edns: bool) -> TokioResolver {
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
    config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
    let mut builder = Resolver::builder_with_config(config, TokioConnectionProvider::default());
    let opts = builder.options_mut();
    opts.attempts = 1;
    opts.timeout = Duration::from_secs(2);
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.edns0 = edns;
    builder.build()
}

/// Runs `f` on a current-thread tokio runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// (preference, exchange without the final dot), sorted.
async fn mx_of(r: &TokioResolver, name: &str) -> Result<Vec<(u16, String)>, ResolveError> {
    let lookup = r.mx_lookup(name).await?;
    let mut mx: Vec<(u16, String)> = lookup
        .iter()
        .map(|mx| {
            (
                mx.preference(),
                mx.exchange().to_ascii().trim_end_matches('.').to_string(),
            )
        })
        .collect();
    mx.sort();
    Ok(mx)
}

/// The response code of a "no records found" error, and whether it came
/// with an SOA.
fn no_records(err: &ResolveError) -> (ResponseCode, bool) {
    match err.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound {
            response_code, soa, ..
        }) => (*response_code, soa.is_some()),
        _ => panic!("expected a no-records error, got {err:?}"),
    }
}

/// One raw query over UDP, with or without EDNS.
fn raw_udp(server: &DnsServer, name: &str, rtype: RecordType, edns: bool) -> Message {
    let mut req = Message::new();
    req.set_id(4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    req.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        req.set_edns(e);
    }
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.send_to(&req.to_vec().unwrap(), server.addr).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer over UDP");
    let resp = Message::from_vec(&buf[..n]).expect("a decodable answer");
    assert_eq!(resp.id(), 4242);
    assert_eq!(resp.message_type(), MessageType::Response);
    resp
}

#[test]
fn mx_at_two_preferences() {
    let server = DnsServer::start(
        Zone::new()
            .mx("two.test", 10, "mx1.two.test")
            .mx("two.test", 20, "mx2.two.test")
            .a("mx1.two.test", Ipv4Addr::new(127, 0, 0, 1))
            .a("mx2.two.test", Ipv4Addr::new(127, 0, 0, 2)),
    );
    block_on(async {
        let r = resolver(server.addr, false);
        let mx = mx_of(&r, "two.test.").await.unwrap();
        assert_eq!(
            mx,
            vec![(10, "mx1.two.test".into()), (20, "mx2.two.test".into())]
        );
        // Case-insensitive, absolute or not.
        let mx2 = mx_of(&r, "TWO.Test").await.unwrap();
        assert_eq!(mx2, mx);
        let ips: Vec<Ipv4Addr> = r
            .ipv4_lookup("mx2.two.test.")
            .await
            .unwrap()
            .iter()
            .map(|a| a.0)
            .collect();
        assert_eq!(ips, vec![Ipv4Addr::new(127, 0, 0, 2)]);
    });
    let queries = server.queries();
    assert!(
        queries.contains(&("two.test".to_string(), RecordType::MX)),
        "{queries:?}"
    );
    assert!(
        queries.contains(&("mx2.two.test".to_string(), RecordType::A)),
        "{queries:?}"
    );
}

#[test]
fn mx_at_equal_preferences() {
    let server = DnsServer::start(
        Zone::new()
            .mx("equal.test", 5, "a.mx.equal.test")
            .mx("equal.test", 5, "b.mx.equal.test")
            .mx("equal.test", 5, "c.mx.equal.test"),
    );
    block_on(async {
        let r = resolver(server.addr, false);
        let mx = mx_of(&r, "equal.test.").await.unwrap();
        assert_eq!(
            mx,
            vec![
                (5, "a.mx.equal.test".into()),
                (5, "b.mx.equal.test".into()),
                (5, "c.mx.equal.test".into())
            ]
        );
    });
}

#[test]
fn no_mx_but_a() {
    let server = DnsServer::start(
        Zone::new()
            .a("plain.test", Ipv4Addr::new(127, 0, 0, 7))
            .ttl(60),
    );
    block_on(async {
        let r = resolver(server.addr, false);
        let err = r.mx_lookup("plain.test.").await.unwrap_err();
        assert!(err.is_no_records_found(), "{err:?}");
        assert!(!err.is_nx_domain(), "{err:?}");
        assert_eq!(no_records(&err), (ResponseCode::NoError, true));
        let ips: Vec<Ipv4Addr> = r
            .ipv4_lookup("plain.test.")
            .await
            .unwrap()
            .iter()
            .map(|a| a.0)
            .collect();
        assert_eq!(ips, vec![Ipv4Addr::new(127, 0, 0, 7)]);
    });
    // On the wire: NOERROR, authoritative, no answer, the SOA with the TTL.
    let resp = raw_udp(&server, "plain.test.", RecordType::MX, true);
    assert_eq!(resp.response_code(), ResponseCode::NoError);
    assert!(resp.authoritative());
    assert!(resp.answers().is_empty());
    let soa = &resp.name_servers()[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.ttl(), 60);
    match soa.data() {
        RData::SOA(soa) => assert_eq!(soa.minimum(), 60),
        other => panic!("not an SOA: {other:?}"),
    }
    assert!(resp.extensions().is_some(), "EDNS answered with EDNS");
}

#[test]
fn null_mx() {
    let server = DnsServer::start(
        Zone::new()
            .null_mx("nullmx.test")
            .a("nullmx.test", Ipv4Addr::LOCALHOST),
    );
    block_on(async {
        let r = resolver(server.addr, false);
        let lookup = r.mx_lookup("nullmx.test.").await.unwrap();
        let mx: Vec<_> = lookup.iter().collect();
        assert_eq!(mx.len(), 1);
        assert_eq!(mx[0].preference(), 0);
        assert!(mx[0].exchange().is_root(), "exchange {}", mx[0].exchange());
    });
}

#[test]
fn nxdomain() {
    let server = DnsServer::start(Zone::new().mx("exists.test", 10, "mx.exists.test").ttl(30));
    block_on(async {
        let r = resolver(server.addr, false);
        for name in ["nope.test.", "below.exists.test.", "mx.exists.test"] {
            let err = r.mx_lookup(name).await.unwrap_err();
            assert!(err.is_nx_domain(), "{name}: {err:?}");
            assert!(err.is_no_records_found(), "{name}: {err:?}");
            assert_eq!(no_records(&err), (ResponseCode::NXDomain, true), "{name}");
            let text = err.to_string();
            assert!(
                text.contains("NXDomain") || text.contains("no records found"),
                "{text}"
            );
        }
    });
    let resp = raw_udp(&server, "nope.test.", RecordType::A, false);
    assert_eq!(resp.response_code(), ResponseCode::NXDomain);
    assert!(resp.authoritative());
    assert_eq!(resp.name_servers()[0].record_type(), RecordType::SOA);
    assert_eq!(resp.name_servers()[0].ttl(), 30);
    assert!(resp.extensions().is_none(), "no EDNS asked, none answered");
}

#[test]
fn empty_non_terminal_is_nodata() {
    let server = DnsServer::start(Zone::new().a("host.sub.ent.test", Ipv4Addr::LOCALHOST));
    block_on(async {
        let r = resolver(server.addr, false);
        let err = r.ipv4_lookup("sub.ent.test.").await.unwrap_err();
        assert_eq!(no_records(&err), (ResponseCode::NoError, true));
    });
}

#[test]
fn servfail() {
    let server = DnsServer::start(
        Zone::new()
            .mx("broken.test", 10, "mx.broken.test")
            .servfail("broken.test")
            .a("half.test", Ipv4Addr::LOCALHOST)
            .servfail_type("half.test", RecordType::MX),
    );
    block_on(async {
        let r = resolver(server.addr, false);
        let err = r.mx_lookup("broken.test.").await.unwrap_err();
        assert!(!err.is_nx_domain(), "{err:?}");
        assert_eq!(no_records(&err), (ResponseCode::ServFail, false));
        let err = r.mx_lookup("half.test.").await.unwrap_err();
        assert_eq!(no_records(&err), (ResponseCode::ServFail, false));
        let ips: Vec<Ipv4Addr> = r
            .ipv4_lookup("half.test.")
            .await
            .unwrap()
            .iter()
            .map(|a| a.0)
            .collect();
        assert_eq!(ips, vec![Ipv4Addr::LOCALHOST]);
    });
}

#[test]
fn timeout_is_never_answered() {
    let server = DnsServer::start(
        Zone::new()
            .a("slow.test", Ipv4Addr::LOCALHOST)
            .timeout("slow.test"),
    );
    block_on(async {
        let r = resolver(server.addr, false);
        let err = r.ipv4_lookup("slow.test.").await.unwrap_err();
        assert!(!err.is_no_records_found(), "{err:?}");
        assert!(err.to_string().contains("timed out"), "{err}");
    });
    assert!(server
        .queries()
        .contains(&("slow.test".to_string(), RecordType::A)));
}

#[test]
fn aaaa_only_host() {
    let server = DnsServer::start(Zone::new().aaaa("six.test", Ipv6Addr::LOCALHOST));
    block_on(async {
        let r = resolver(server.addr, false);
        let ips: Vec<Ipv6Addr> = r
            .ipv6_lookup("six.test.")
            .await
            .unwrap()
            .iter()
            .map(|a| a.0)
            .collect();
        assert_eq!(ips, vec![Ipv6Addr::LOCALHOST]);
        let err = r.ipv4_lookup("six.test.").await.unwrap_err();
        assert_eq!(no_records(&err), (ResponseCode::NoError, true));
        let all: Vec<_> = r.lookup_ip("six.test.").await.unwrap().iter().collect();
        assert_eq!(all, vec![std::net::IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    });
}

#[test]
fn cname_is_followed() {
    let server = DnsServer::start(Zone::new().cname("alias.test", "real.test").mx(
        "real.test",
        10,
        "mx.real.test",
    ));
    block_on(async {
        let r = resolver(server.addr, false);
        let mx = mx_of(&r, "alias.test.").await.unwrap();
        assert_eq!(mx, vec![(10, "mx.real.test".into())]);
    });
}

#[test]
fn mx_answer_carries_target_addresses() {
    let server = DnsServer::start(
        Zone::new()
            .mx("glue.test", 10, "mx.glue.test")
            .a("mx.glue.test", Ipv4Addr::new(127, 0, 0, 9))
            .aaaa("mx.glue.test", Ipv6Addr::LOCALHOST),
    );
    let resp = raw_udp(&server, "GLUE.test.", RecordType::MX, false);
    assert_eq!(resp.response_code(), ResponseCode::NoError);
    assert!(resp.authoritative());
    assert_eq!(resp.answers().len(), 1);
    assert_eq!(
        resp.answers()[0].name().to_ascii(),
        "GLUE.test.",
        "owner as asked"
    );
    let mut extra: Vec<RecordType> = resp.additionals().iter().map(|r| r.record_type()).collect();
    extra.sort();
    assert_eq!(extra, vec![RecordType::A, RecordType::AAAA]);
}

/// A zone with `n` MX records for `big.test` (and an address for each).
fn big_zone(n: u8) -> Zone {
    let mut zone = Zone::new();
    for i in 0..n {
        let host = format!("mx-{i:03}.a-rather-long-mail-exchanger-label.big.test");
        zone = zone
            .mx("big.test", u16::from(i), &host)
            .a(&host, Ipv4Addr::new(127, 0, 1, i));
    }
    zone
}

#[test]
fn large_mx_set_over_tcp_after_truncation() {
    for edns in [false, true] {
        let server = DnsServer::start(big_zone(100));
        // On the wire: truncated over UDP, with or without EDNS.
        let resp = raw_udp(&server, "big.test.", RecordType::MX, edns);
        assert!(resp.truncated(), "edns {edns}");
        assert!(resp.answers().is_empty());
        block_on(async {
            let r = resolver(server.addr, edns);
            let mx = mx_of(&r, "big.test.").await.unwrap();
            assert_eq!(mx.len(), 100, "edns {edns}");
            assert_eq!(mx[99].0, 99);
        });
        let tcp = server.tcp_queries();
        assert_eq!(
            tcp,
            vec![("big.test".to_string(), RecordType::MX)],
            "edns {edns}"
        );
    }
}

#[test]
fn small_answers_stay_on_udp() {
    let server = DnsServer::start(big_zone(3));
    block_on(async {
        let r = resolver(server.addr, true);
        assert_eq!(mx_of(&r, "big.test.").await.unwrap().len(), 3);
    });
    assert!(server.tcp_queries().is_empty());
    assert_eq!(
        server.queries(),
        vec![("big.test".to_string(), RecordType::MX)]
    );
}

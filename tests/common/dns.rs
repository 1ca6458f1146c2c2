//! An authoritative test DNS server on loopback.
//!
//! [`DnsServer::start`] serves a fixed [`Zone`] over UDP and TCP on
//! `127.0.0.1` (one ephemeral port number for both) from background threads
//! and stops when the handle is dropped. It speaks the real wire protocol
//! (decoded and encoded with `hickory-proto`), so a resolver pointed at
//! [`DnsServer::addr`] goes through its whole UDP, truncation and TCP path.
//! It never forwards or recurses: every name is answered from the zone.
//!
//! Semantics:
//! - names are case-insensitive, with or without the final dot;
//! - a name that has records, or has a descendant with records (an empty
//!   non-terminal), exists: asked for a type it lacks it answers
//!   NOERROR/NODATA with an SOA in the authority section; every other name
//!   answers NXDOMAIN with an SOA (whose TTL and MINIMUM are the zone's
//!   [`Zone::ttl`], the negative caching TTL);
//! - answers are authoritative (AA); a CNAME is followed inside the zone;
//! - a query with EDNS gets EDNS (payload 1232) back; UDP answers larger than
//!   512 bytes (without EDNS) or than the client's EDNS payload (at most
//!   1232) are sent truncated (TC, no records), so resolvers retry over TCP;
//! - MX answers carry the A/AAAA records of their targets that the zone has
//!   in the additional section;
//! - [`Zone::servfail`] names answer SERVFAIL, [`Zone::timeout`] names are
//!   never answered (over UDP or TCP);
//! - [`Zone::secure`] names are answered with the AD bit set (as a validating
//!   resolver marks DNSSEC-authenticated data); other answers never carry it;
//! - every query is logged ([`DnsServer::queries`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TLSA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The EDNS payload size the server advertises and honours at most.
const SERVER_PAYLOAD: u16 = 1232;

/// How long the server threads block before looking at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// How many CNAME hops are followed inside the zone.
const MAX_CNAME_HOPS: usize = 8;

/// One record of the zone, without owner and TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rr {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Preference and exchange (canonical form, `""` for the root: null MX).
    Mx(u16, String),
    Cname(String),
    /// One TXT record: its character-strings.
    Txt(Vec<String>),
    /// A PTR target (canonical form).
    Ptr(String),
    /// A TLSA record: usage, selector, matching type, data.
    Tlsa(u8, u8, u8, Vec<u8>),
}

impl Rr {
    fn record_type(&self) -> RecordType {
        match self {
            Rr::A(_) => RecordType::A,
            Rr::Aaaa(_) => RecordType::AAAA,
            Rr::Mx(..) => RecordType::MX,
            Rr::Cname(_) => RecordType::CNAME,
            Rr::Txt(_) => RecordType::TXT,
            Rr::Ptr(_) => RecordType::PTR,
            Rr::Tlsa(..) => RecordType::TLSA,
        }
    }

    fn rdata(&self) -> RData {
        match self {
            Rr::A(ip) => RData::A(A(*ip)),
            Rr::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
            Rr::Mx(pref, host) => RData::MX(MX::new(*pref, to_name(host))),
            Rr::Cname(target) => RData::CNAME(CNAME(to_name(target))),
            Rr::Txt(strings) => RData::TXT(TXT::new(strings.clone())),
            Rr::Ptr(target) => RData::PTR(PTR(to_name(target))),
            Rr::Tlsa(usage, selector, matching, data) => RData::TLSA(TLSA::new(
                CertUsage::from(*usage),
                Selector::from(*selector),
                Matching::from(*matching),
                data.clone(),
            )),
        }
    }
}

/// The canonical form of a name: lower case, no final dot (`""` is the root).
fn canon(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A canonical name as an absolute hickory `Name`.
fn to_name(canonical: &str) -> Name {
    if canonical.is_empty() {
        return Name::root();
    }
    Name::from_ascii(format!("{canonical}."))
        .unwrap_or_else(|e| panic!("test DNS: bad name {canonical:?}: {e}"))
}

/// The records a [`DnsServer`] serves (a builder).
///
/// Record types are A, AAAA, MX, CNAME, TXT, PTR and TLSA; owners and targets are checked
/// to be valid names when they are added.
#[derive(Clone, Debug)]
pub struct Zone {
    records: BTreeMap<String, Vec<Rr>>,
    /// Names (and optionally one type) answered with SERVFAIL.
    servfail: BTreeSet<(String, Option<RecordType>)>,
    /// Names (and optionally one type) never answered.
    timeout: BTreeSet<(String, Option<RecordType>)>,
    /// Names (exact) whose answers carry the AD bit.
    secure: BTreeSet<String>,
    ttl: u32,
}

impl Default for Zone {
    fn default() -> Self {
        Zone::new()
    }
}

impl Zone {
    /// An empty zone: every name is NXDOMAIN. The TTL is 300 s.
    pub fn new() -> Zone {
        Zone {
            records: BTreeMap::new(),
            servfail: BTreeSet::new(),
            timeout: BTreeSet::new(),
            secure: BTreeSet::new(),
            ttl: 300,
        }
    }

    fn add(mut self, owner: &str, rr: Rr) -> Zone {
        let owner = canon(owner);
        to_name(&owner);
        self.records.entry(owner).or_default().push(rr);
        self
    }

    /// Adds `domain MX pref host`. `host` `"."` makes the null MX of
    /// RFC 7505 (pass `pref` 0 for a well-formed one).
    pub fn mx(self, domain: &str, pref: u16, host: &str) -> Zone {
        let host = canon(host);
        to_name(&host);
        self.add(domain, Rr::Mx(pref, host))
    }

    /// Adds the null MX of RFC 7505: `domain MX 0 .`.
    pub fn null_mx(self, domain: &str) -> Zone {
        self.mx(domain, 0, ".")
    }

    /// Adds `host A ip`.
    pub fn a(self, host: &str, ip: Ipv4Addr) -> Zone {
        self.add(host, Rr::A(ip))
    }

    /// Adds `host AAAA ip`.
    pub fn aaaa(self, host: &str, ip: Ipv6Addr) -> Zone {
        self.add(host, Rr::Aaaa(ip))
    }

    /// Adds `alias CNAME target` (followed inside the zone when answering).
    pub fn cname(self, alias: &str, target: &str) -> Zone {
        let target = canon(target);
        to_name(&target);
        self.add(alias, Rr::Cname(target))
    }

    /// Adds one TXT record at `owner`. A value longer than 255 bytes is
    /// split into several character-strings, as zone files do.
    pub fn txt(self, owner: &str, value: &str) -> Zone {
        let strings = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>();
        let strings = if strings.is_empty() {
            vec![String::new()]
        } else {
            strings
        };
        self.add(owner, Rr::Txt(strings))
    }

    /// Adds the PTR record of `ip` (its `in-addr.arpa` / `ip6.arpa` name)
    /// pointing at `host`.
    pub fn ptr(self, ip: std::net::IpAddr, host: &str) -> Zone {
        let owner = hickory_proto::rr::Name::from(ip).to_ascii();
        let host = canon(host);
        to_name(&host);
        self.add(&owner, Rr::Ptr(host))
    }

    /// Adds `owner TLSA usage selector matching data` (for DANE,
    /// `owner` is `_25._tcp.HOST`).
    pub fn tlsa(self, owner: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> Zone {
        self.add(owner, Rr::Tlsa(usage, selector, matching, data.to_vec()))
    }

    /// Answers for exactly this name carry the AD bit (authenticated data),
    /// as a validating resolver sets it for a DNSSEC-signed zone.
    pub fn secure(mut self, name: &str) -> Zone {
        self.secure.insert(canon(name));
        self
    }

    /// Every query for exactly this name answers SERVFAIL.
    pub fn servfail(mut self, domain: &str) -> Zone {
        self.servfail.insert((canon(domain), None));
        self
    }

    /// Queries for exactly this name and type answer SERVFAIL (other types
    /// are answered from the zone).
    pub fn servfail_type(mut self, domain: &str, rtype: RecordType) -> Zone {
        self.servfail.insert((canon(domain), Some(rtype)));
        self
    }

    /// Queries for exactly this name are never answered.
    pub fn timeout(mut self, domain: &str) -> Zone {
        self.timeout.insert((canon(domain), None));
        self
    }

    /// Queries for exactly this name and type are never answered (other
    /// types are answered from the zone).
    pub fn timeout_type(mut self, domain: &str, rtype: RecordType) -> Zone {
        self.timeout.insert((canon(domain), Some(rtype)));
        self
    }

    /// The TTL of every record, and the negative caching TTL (the SOA's
    /// TTL and MINIMUM).
    pub fn ttl(mut self, secs: u32) -> Zone {
        self.ttl = secs;
        self
    }

    fn matches(set: &BTreeSet<(String, Option<RecordType>)>, key: &str, rtype: RecordType) -> bool {
        set.contains(&(key.to_string(), None)) || set.contains(&(key.to_string(), Some(rtype)))
    }

    /// Whether the name exists: it has records or is an empty non-terminal.
    fn exists(&self, key: &str) -> bool {
        if key.is_empty() || self.records.contains_key(key) {
            return true;
        }
        let suffix = format!(".{key}");
        self.records.keys().any(|k| k.ends_with(&suffix))
    }

    /// The SOA sent with negative answers for `key`: owned by its last two
    /// labels.
    fn soa(&self, key: &str) -> Record {
        let labels: Vec<&str> = key.split('.').filter(|l| !l.is_empty()).collect();
        let apex = labels[labels.len().saturating_sub(2)..].join(".");
        let soa = SOA::new(
            to_name("ns.test-dns.invalid"),
            to_name("hostmaster.test-dns.invalid"),
            1,
            3600,
            600,
            86400,
            self.ttl,
        );
        Record::from_rdata(to_name(&apex), self.ttl, RData::SOA(soa))
    }

    fn record(&self, owner: &Name, rr: &Rr) -> Record {
        Record::from_rdata(owner.clone(), self.ttl, rr.rdata())
    }

    /// The answer to one query, `None` to stay silent.
    fn respond(&self, req: &Message) -> Option<Message> {
        if req.message_type() != MessageType::Query {
            return None;
        }
        let mut resp = Message::new();
        resp.set_id(req.id())
            .set_message_type(MessageType::Response)
            .set_op_code(req.op_code())
            .set_recursion_desired(req.recursion_desired())
            .set_recursion_available(false)
            .set_checking_disabled(req.checking_disabled());
        resp.add_queries(req.queries().iter().cloned());
        if req.extensions().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(SERVER_PAYLOAD).set_version(0);
            resp.set_edns(edns);
        }
        if req.op_code() != OpCode::Query {
            resp.set_response_code(ResponseCode::NotImp);
            return Some(resp);
        }
        let [query] = req.queries() else {
            resp.set_response_code(ResponseCode::FormErr);
            return Some(resp);
        };
        let qtype = query.query_type();
        let key = canon(&query.name().to_ascii());
        if Self::matches(&self.timeout, &key, qtype) {
            return None;
        }
        if Self::matches(&self.servfail, &key, qtype) {
            resp.set_response_code(ResponseCode::ServFail);
            return Some(resp);
        }
        resp.set_authoritative(true);
        resp.set_authentic_data(self.secure.contains(&key));

        let mut owner = query.name().clone();
        let mut key = key;
        let mut answers = Vec::new();
        let mut code = ResponseCode::NoError;
        for hop in 0..=MAX_CNAME_HOPS {
            let rrs = self.records.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let cname = rrs.iter().find_map(|rr| match rr {
                Rr::Cname(target) => Some(target.clone()),
                _ => None,
            });
            if let Some(target) = cname.filter(|_| {
                qtype != RecordType::CNAME && qtype != RecordType::ANY && hop < MAX_CNAME_HOPS
            }) {
                answers.push(self.record(&owner, &Rr::Cname(target.clone())));
                owner = to_name(&target);
                key = target;
                continue;
            }
            answers.extend(
                rrs.iter()
                    .filter(|rr| qtype == RecordType::ANY || rr.record_type() == qtype)
                    .map(|rr| self.record(&owner, rr)),
            );
            if !self.exists(&key) {
                code = ResponseCode::NXDomain;
            }
            break;
        }
        resp.set_response_code(code);
        let positive = answers.iter().any(|r| r.record_type() == qtype)
            || (qtype == RecordType::ANY && !answers.is_empty());
        if !positive {
            resp.add_name_server(self.soa(&key));
        }
        // The addresses of MX targets, as a nicety.
        let mut additionals = Vec::new();
        for rec in &answers {
            if let RData::MX(mx) = rec.data() {
                let target = canon(&mx.exchange().to_ascii());
                if target.is_empty() {
                    continue;
                }
                for rr in self.records.get(&target).map(Vec::as_slice).unwrap_or(&[]) {
                    if matches!(rr, Rr::A(_) | Rr::Aaaa(_)) {
                        additionals.push(self.record(mx.exchange(), rr));
                    }
                }
            }
        }
        resp.add_answers(answers);
        resp.add_additionals(additionals);
        Some(resp)
    }
}

/// One query the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedQuery {
    /// The name asked for, lower case, without the final dot.
    pub name: String,
    /// The type asked for.
    pub rtype: RecordType,
    /// Whether it came over TCP (else UDP).
    pub tcp: bool,
}

struct Shared {
    zone: Zone,
    log: Mutex<Vec<LoggedQuery>>,
    stop: AtomicBool,
}

impl Shared {
    /// Decodes one query, logs it and encodes the answer (`None`: no
    /// answer); over UDP a too large answer is replaced by a truncated one.
    fn handle(&self, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let req = match Message::from_vec(packet) {
            Ok(req) => req,
            Err(_) if packet.len() >= 2 => {
                // Undecodable: FORMERR with the id, as a server would.
                let id = u16::from_be_bytes([packet[0], packet[1]]);
                let resp = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return resp.to_vec().ok();
            }
            Err(_) => return None,
        };
        for q in req.queries() {
            self.log.lock().unwrap().push(LoggedQuery {
                name: canon(&q.name().to_ascii()),
                rtype: q.query_type(),
                tcp,
            });
        }
        let resp = self.zone.respond(&req)?;
        let bytes = resp.to_vec().expect("test DNS: encode the answer");
        if tcp {
            return Some(bytes);
        }
        let limit = match req.extensions() {
            Some(edns) => edns.max_payload().clamp(512, SERVER_PAYLOAD),
            None => 512,
        };
        if bytes.len() > usize::from(limit) {
            return Some(
                resp.truncate()
                    .to_vec()
                    .expect("test DNS: encode the truncated answer"),
            );
        }
        Some(bytes)
    }
}

/// A running test DNS server; it stops (and its threads are joined) when
/// dropped.
pub struct DnsServer {
    /// `127.0.0.1:PORT`, the same for UDP and TCP.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl DnsServer {
    /// Binds UDP and TCP on one ephemeral port of 127.0.0.1 and serves
    /// `zone` until the handle is dropped.
    pub fn start(zone: Zone) -> DnsServer {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("test DNS: local address");
        udp.set_read_timeout(Some(POLL))
            .expect("test DNS: UDP timeout");
        tcp.set_nonblocking(true)
            .expect("test DNS: nonblocking listener");
        let shared = Arc::new(Shared {
            zone,
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let conns = Arc::new(Mutex::new(Vec::new()));
        let udp_thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("test-dns-udp".into())
                .spawn(move || serve_udp(&udp, &shared))
                .expect("test DNS: spawn the UDP thread")
        };
        let tcp_thread = {
            let shared = Arc::clone(&shared);
            let conns = Arc::clone(&conns);
            std::thread::Builder::new()
                .name("test-dns-tcp".into())
                .spawn(move || serve_tcp(&tcp, &shared, &conns))
                .expect("test DNS: spawn the TCP thread")
        };
        DnsServer {
            addr,
            shared,
            threads: vec![udp_thread, tcp_thread],
            conns,
        }
    }

    /// Every query received so far, in order: the name (lower case, no
    /// final dot) and the type. Each one as received, so a resolver's
    /// retries and its TCP retry after a truncated UDP answer appear too.
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        self.log().into_iter().map(|q| (q.name, q.rtype)).collect()
    }

    /// The queries received over TCP so far, in order.
    pub fn tcp_queries(&self) -> Vec<(String, RecordType)> {
        self.log()
            .into_iter()
            .filter(|q| q.tcp)
            .map(|q| (q.name, q.rtype))
            .collect()
    }

    /// The full query log, with the transport of each query.
    pub fn log(&self) -> Vec<LoggedQuery> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        for t in conns {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same ephemeral port of 127.0.0.1.
fn bind_pair() -> (UdpSocket, TcpListener) {
    let mut last_err = None;
    for _ in 0..100 {
        let udp =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("test DNS: bind UDP on 127.0.0.1");
        let port = udp.local_addr().expect("test DNS: local address").port();
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last_err = Some(e),
        }
    }
    panic!("test DNS: no port free for both UDP and TCP: {last_err:?}");
}

fn serve_udp(sock: &UdpSocket, shared: &Shared) {
    let mut buf = vec![0u8; 65535];
    while !shared.stop.load(Ordering::SeqCst) {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => panic!("test DNS: UDP receive: {e}"),
        };
        if let Some(answer) = shared.handle(&buf[..n], false) {
            let _ = sock.send_to(&answer, peer);
        }
    }
}

fn serve_tcp(listener: &TcpListener, shared: &Arc<Shared>, conns: &Mutex<Vec<JoinHandle<()>>>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(shared);
                let handle = std::thread::Builder::new()
                    .name("test-dns-conn".into())
                    .spawn(move || serve_tcp_conn(stream, &shared))
                    .expect("test DNS: spawn a connection thread");
                conns.lock().unwrap().push(handle);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("test DNS: TCP accept: {e}"),
        }
    }
}

/// Serves length-prefixed queries on one connection until the peer closes
/// it or the server stops.
fn serve_tcp_conn(mut stream: TcpStream, shared: &Shared) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let packet: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            if let Some(answer) = shared.handle(&packet, true) {
                let Ok(len) = u16::try_from(answer.len()) else {
                    return;
                };
                let mut framed = len.to_be_bytes().to_vec();
                framed.extend_from_slice(&answer);
                if stream.write_all(&framed).is_err() {
                    return;
                }
            }
        }
    }
}

//! A small authoritative DNS server on loopback, for benchmarks: the
//! scenario's recipient domains get MX records naming provider hosts, and
//! those hosts A records on 127.0.0.x, so a daemon whose `[dns] servers`
//! names this server delivers to the sink's listeners and nowhere else.
//!
//! It answers from a fixed [`Zone`] over UDP and TCP on one port of
//! 127.0.0.1, from two background threads (TCP connections served one at a
//! time: resolvers use TCP only after a truncated answer). It never
//! forwards or recurses. Names are case-insensitive; a name with records
//! asked for a type it lacks answers NOERROR with no records and an SOA,
//! every other name NXDOMAIN with an SOA. MX answers carry their targets'
//! addresses in the additional section. UDP answers over 512 bytes (or the
//! client's EDNS payload, at most 1232) are sent truncated.
//!
//! `tests/common/dns.rs` is the fuller test double (CNAME, TXT, TLSA,
//! SERVFAIL, timeouts, a query log); this one is only what a benchmark
//! needs.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, MX, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The EDNS payload size the server advertises and honours at most.
const SERVER_PAYLOAD: u16 = 1232;

/// How long the server threads block before looking at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The TTL of every record (and of negative answers).
const TTL: u32 = 3600;

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A name in the zone is not a valid DNS name.
    #[error("bad DNS name {name:?}: {reason}")]
    Name {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// No port of 127.0.0.1 was free for both UDP and TCP, or a socket
    /// option failed.
    #[error("cannot listen for DNS on 127.0.0.1: {0}")]
    Bind(std::io::Error),
    /// The server's threads could not be started.
    #[error("cannot start the DNS server threads: {0}")]
    Thread(std::io::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rr {
    A(Ipv4Addr),
    Mx(u16, Name),
}

/// The records the server answers with: MX and A only.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    records: HashMap<String, Vec<Rr>>,
}

/// The canonical form of a name: lower case, no final dot.
fn canon(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn to_name(canonical: &str) -> Result<Name, DnsError> {
    Name::from_ascii(format!("{canonical}.")).map_err(|e| DnsError::Name {
        name: canonical.to_string(),
        reason: e.to_string(),
    })
}

impl Zone {
    /// An empty zone: every name is NXDOMAIN.
    pub fn new() -> Zone {
        Zone::default()
    }

    /// Adds `domain MX pref host`.
    pub fn mx(&mut self, domain: &str, pref: u16, host: &str) -> Result<(), DnsError> {
        let domain = canon(domain);
        to_name(&domain)?;
        let host = to_name(&canon(host))?;
        self.records
            .entry(domain)
            .or_default()
            .push(Rr::Mx(pref, host));
        Ok(())
    }

    /// Adds `host A ip`.
    pub fn a(&mut self, host: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        let host = canon(host);
        to_name(&host)?;
        let rrs = self.records.entry(host).or_default();
        if !rrs.contains(&Rr::A(ip)) {
            rrs.push(Rr::A(ip));
        }
        Ok(())
    }

    /// Names with records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the zone has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn rdata(rr: &Rr) -> RData {
        match rr {
            Rr::A(ip) => RData::A(A(*ip)),
            Rr::Mx(pref, host) => RData::MX(MX::new(*pref, host.clone())),
        }
    }

    fn rtype(rr: &Rr) -> RecordType {
        match rr {
            Rr::A(_) => RecordType::A,
            Rr::Mx(..) => RecordType::MX,
        }
    }

    /// The answer to one query; `None` for what is not a query.
    fn respond(&self, req: &Message) -> Option<Message> {
        if req.message_type() != MessageType::Query {
            return None;
        }
        let mut resp = Message::new();
        resp.set_id(req.id())
            .set_message_type(MessageType::Response)
            .set_op_code(req.op_code())
            .set_recursion_desired(req.recursion_desired())
            .set_recursion_available(false);
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
        resp.set_authoritative(true);
        let qtype = query.query_type();
        let key = canon(&query.name().to_ascii());
        let owner = query.name().clone();
        let Some(rrs) = self.records.get(&key) else {
            resp.set_response_code(ResponseCode::NXDomain);
            resp.add_name_server(soa(&owner));
            return Some(resp);
        };
        let answers: Vec<Record> = rrs
            .iter()
            .filter(|rr| qtype == RecordType::ANY || Self::rtype(rr) == qtype)
            .map(|rr| Record::from_rdata(owner.clone(), TTL, Self::rdata(rr)))
            .collect();
        if answers.is_empty() {
            resp.add_name_server(soa(&owner));
        }
        let mut additionals = Vec::new();
        for rr in rrs {
            if let (Rr::Mx(_, host), RecordType::MX | RecordType::ANY) = (rr, qtype) {
                let target = canon(&host.to_ascii());
                for a in self.records.get(&target).map(Vec::as_slice).unwrap_or(&[]) {
                    if let Rr::A(_) = a {
                        additionals.push(Record::from_rdata(host.clone(), TTL, Self::rdata(a)));
                    }
                }
            }
        }
        resp.add_answers(answers);
        resp.add_additionals(additionals);
        Some(resp)
    }
}

/// The SOA of negative answers, owned by the name's last two labels.
fn soa(owner: &Name) -> Record {
    let apex = if owner.num_labels() > 2 {
        owner.trim_to(2)
    } else {
        owner.clone()
    };
    let ns = Name::from_ascii("ns.scenario.invalid.").unwrap_or_else(|_| Name::root());
    let mbox = Name::from_ascii("hostmaster.scenario.invalid.").unwrap_or_else(|_| Name::root());
    let soa = SOA::new(ns, mbox, 1, 3600, 600, 86400, TTL);
    Record::from_rdata(apex, TTL, RData::SOA(soa))
}

struct Shared {
    zone: Zone,
    stop: AtomicBool,
    queries: AtomicU64,
}

impl Shared {
    /// Decodes one query and encodes the answer (`None`: no answer); over
    /// UDP a too large answer is replaced by a truncated one.
    fn handle(&self, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let req = match Message::from_vec(packet) {
            Ok(req) => req,
            Err(_) if packet.len() >= 2 => {
                let id = u16::from_be_bytes([packet[0], packet[1]]);
                let resp = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return resp.to_vec().ok();
            }
            Err(_) => return None,
        };
        let resp = self.zone.respond(&req)?;
        let bytes = resp.to_vec().ok()?;
        if tcp {
            return Some(bytes);
        }
        let limit = match req.extensions() {
            Some(edns) => edns.max_payload().clamp(512, SERVER_PAYLOAD),
            None => 512,
        };
        if bytes.len() > usize::from(limit) {
            return resp.truncate().to_vec().ok();
        }
        Some(bytes)
    }
}

/// A running DNS server; it stops (and its threads are joined) when
/// dropped.
pub struct DnsServer {
    /// `127.0.0.1:PORT`, the same for UDP and TCP.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .field("names", &self.shared.zone.len())
            .finish()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on one port of 127.0.0.1 (`port` 0: an ephemeral
    /// one) and serves `zone` until dropped.
    pub fn start(zone: Zone, port: u16) -> Result<DnsServer, DnsError> {
        let (udp, tcp) = bind_pair(port)?;
        let addr = udp.local_addr().map_err(DnsError::Bind)?;
        udp.set_read_timeout(Some(POLL)).map_err(DnsError::Bind)?;
        tcp.set_nonblocking(true).map_err(DnsError::Bind)?;
        let shared = Arc::new(Shared {
            zone,
            stop: AtomicBool::new(false),
            queries: AtomicU64::new(0),
        });
        let mut threads = Vec::new();
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("sink-dns-udp".into())
                .spawn(move || serve_udp(&udp, &s))
                .map_err(DnsError::Thread)?,
        );
        let s = Arc::clone(&shared);
        let tcp_thread = std::thread::Builder::new()
            .name("sink-dns-tcp".into())
            .spawn(move || serve_tcp(&tcp, &s));
        // On an error below, dropping `server` stops the UDP thread.
        let mut server = DnsServer {
            addr,
            shared,
            threads,
        };
        server.threads.push(tcp_thread.map_err(DnsError::Thread)?);
        Ok(server)
    }

    /// Queries received so far (UDP and TCP).
    pub fn queries(&self) -> u64 {
        self.shared.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same port of 127.0.0.1.
fn bind_pair(port: u16) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut last = None;
    for _ in 0..if port == 0 { 100 } else { 1 } {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).map_err(DnsError::Bind)?;
        let got = udp.local_addr().map_err(DnsError::Bind)?.port();
        match TcpListener::bind((Ipv4Addr::LOCALHOST, got)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(DnsError::Bind(last.unwrap_or_else(|| {
        std::io::Error::from(ErrorKind::AddrInUse)
    })))
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

fn serve_udp(sock: &UdpSocket, shared: &Shared) {
    let mut buf = vec![0u8; 65535];
    while !shared.stop.load(Ordering::SeqCst) {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if transient(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "sink dns: UDP receive failed");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if let Some(answer) = shared.handle(&buf[..n], false) {
            let _ = sock.send_to(&answer, peer);
        }
    }
}

fn serve_tcp(listener: &TcpListener, shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => serve_tcp_conn(stream, shared),
            Err(e) if transient(&e) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                tracing::warn!(error = %e, "sink dns: TCP accept failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Serves length-prefixed queries on one connection until the peer closes
/// it, it stays idle for a second, or the server stops.
fn serve_tcp_conn(mut stream: TcpStream, shared: &Shared) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut idle = 0;
    while !shared.stop.load(Ordering::SeqCst) && idle < 20 {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                idle = 0;
                pending.extend_from_slice(&buf[..n]);
            }
            Err(e) if transient(&e) => {
                idle += 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(server: &DnsServer, name: &str, rtype: RecordType) -> Message {
        let mut q = Message::new();
        q.set_id(7)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.send_to(&q.to_vec().unwrap(), server.addr).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    #[test]
    fn answers_mx_a_nodata_and_nxdomain() {
        let mut zone = Zone::new();
        zone.mx("Gmail.com", 5, "gmail-smtp-in.l.google.com")
            .unwrap();
        zone.a("gmail-smtp-in.l.google.com.", Ipv4Addr::new(127, 0, 0, 2))
            .unwrap();
        let server = DnsServer::start(zone, 0).unwrap();
        let mx = ask(&server, "gmail.com.", RecordType::MX);
        assert_eq!(mx.response_code(), ResponseCode::NoError);
        assert_eq!(mx.answers().len(), 1);
        assert_eq!(mx.additionals().len(), 1);
        let a = ask(&server, "GMAIL-smtp-in.l.google.com.", RecordType::A);
        assert_eq!(
            a.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(127, 0, 0, 2)))
        );
        let nodata = ask(&server, "gmail.com.", RecordType::AAAA);
        assert_eq!(nodata.response_code(), ResponseCode::NoError);
        assert!(nodata.answers().is_empty());
        assert_eq!(nodata.name_servers().len(), 1);
        let nx = ask(&server, "example.org.", RecordType::MX);
        assert_eq!(nx.response_code(), ResponseCode::NXDomain);
        assert_eq!(server.queries(), 4);
    }

    #[test]
    fn bad_names_are_refused() {
        let mut zone = Zone::new();
        assert!(zone.mx("a..b", 1, "mx.example").is_err());
        assert!(zone.is_empty());
    }
}

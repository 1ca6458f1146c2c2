//! Delivery over SMTP: routing a recipient to a next hop, resolving it,
//! driving the sans-IO client protocol over an owned-buffer connection,
//! and turning replies into per-recipient results. Scheduling (which
//! message goes when, over how many connections) is `sched`'s job.

pub mod classify;
pub mod connect;
pub mod dane;
pub mod dns;
pub mod mta_sts;
pub mod reuse;
pub mod route;
pub mod session;
pub mod tls_names;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{
    CertMatch, Config, DnsConfig, DnsSupportLevel, InetProtocols, TransactionChaining,
};
use crate::proto::{ProtoError, Reply};
use crate::rt::IoBackend;

pub use classify::{Cause, RcptResult, RemoteReply, ResultClass, ResultText};
pub use connect::Connector;
pub use route::{HopPolicy, RouteError, Router, RouterConfigError};
pub use session::Session;

/// Per-stage timeouts (RFC 5321 section 4.5.3.2 defaults, configurable).
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Greeting and EHLO/HELO.
    pub helo: Duration,
    /// MAIL FROM.
    pub mail: Duration,
    /// Each RCPT TO.
    pub rcpt: Duration,
    /// DATA (354).
    pub data_init: Duration,
    /// Sending the body.
    pub data_xfer: Duration,
    /// Reply after the final dot.
    pub data_done: Duration,
    /// RSET and QUIT.
    pub quit: Duration,
}

/// What delivery needs from the configuration.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Name sent in EHLO/HELO (`myhostname`).
    pub helo_name: String,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Most transactions per connection; 0 = no limit.
    pub reuse_count_limit: u32,
    /// Age after which a connection is not reused.
    pub reuse_time_limit: Duration,
    /// How long an idle connection is kept.
    pub idle_time_limit: Duration,
    /// Socket backend.
    pub backend: IoBackend,
    /// Name servers and timeouts for MX lookups.
    pub dns: DnsConfig,
    /// Address families to deliver over.
    pub inet_protocols: InetProtocols,
    /// Whether the resolver's AD bit is trusted (`dnssec`: DANE works).
    pub dns_support_level: DnsSupportLevel,
    /// What `dane` does at hosts of an unauthenticated MX RRset.
    pub dane_insecure_mx: crate::config::DaneInsecureMxPolicy,
    /// Extra CA certificates for TLS level `verify`.
    pub tls_ca_file: Option<PathBuf>,
    /// The certificate names of level `verify` (`smtp_tls_verify_cert_match`).
    pub verify_cert_match: Vec<CertMatch>,
    /// The certificate names of level `secure` (`smtp_tls_secure_cert_match`).
    pub secure_cert_match: Vec<CertMatch>,
    /// AUTH is allowed without TLS.
    pub sasl_plaintext: bool,
    /// Whether transactions are chained (see [`TransactionChaining`]).
    pub chaining: TransactionChaining,
    /// MTA-STS policy fetching and caching.
    pub mta_sts: mta_sts::MtaStsConfig,
}

impl DeliveryConfig {
    /// Delivery settings from the configuration.
    pub fn from_config(c: &Config, backend: IoBackend) -> DeliveryConfig {
        let s = Duration::from_secs;
        DeliveryConfig {
            helo_name: c.myhostname.clone(),
            timeouts: Timeouts {
                connect: s(c.smtp_connect_timeout),
                helo: s(c.smtp_helo_timeout),
                mail: s(c.smtp_mail_timeout),
                rcpt: s(c.smtp_rcpt_timeout),
                data_init: s(c.smtp_data_init_timeout),
                data_xfer: s(c.smtp_data_xfer_timeout),
                data_done: s(c.smtp_data_done_timeout),
                quit: s(c.smtp_quit_timeout),
            },
            reuse_count_limit: c.smtp_connection_reuse_count_limit,
            reuse_time_limit: s(c.smtp_connection_reuse_time_limit),
            idle_time_limit: s(c.smtp_connection_cache_time_limit),
            backend,
            dns: c.dns.clone(),
            inet_protocols: c.inet_protocols,
            dns_support_level: c.smtp_dns_support_level,
            dane_insecure_mx: c.smtp_tls_dane_insecure_mx_policy,
            tls_ca_file: c.smtp_tls_ca_file.clone(),
            // Validation refused lists that do not parse; Postfix's
            // defaults stand in for one that would not.
            verify_cert_match: CertMatch::parse_list(&c.smtp_tls_verify_cert_match)
                .unwrap_or_else(|_| vec![CertMatch::Hostname]),
            secure_cert_match: CertMatch::parse_list(&c.smtp_tls_secure_cert_match)
                .unwrap_or_else(|_| vec![CertMatch::Nexthop, CertMatch::DotNexthop]),
            sasl_plaintext: c.smtp_sasl_plaintext,
            chaining: c.smtp_transaction_chaining,
            mta_sts: mta_sts::MtaStsConfig {
                cache_dir: Some(c.spool_dir.join("mta-sts")),
                port: c.smtp_mta_sts_port,
                timeout: s(c.smtp_mta_sts_timeout),
                ca_file: c.smtp_tls_ca_file.clone(),
            },
        }
    }
}

/// The remote end of a session, for `relay=HOST[IP]:PORT` in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The host name (or IP) we were told to use.
    pub host: String,
    /// The address connected to.
    pub addr: SocketAddr,
}

impl Peer {
    /// `host[ip]`: the peer as Postfix names it in reply and error texts
    /// (`host mx[192.0.2.25] said: ...`, `lost connection with ...`), where
    /// the port is left out; the `relay=` field and connection errors
    /// carry it (the [`Display`](std::fmt::Display) form).
    pub fn named(&self) -> String {
        format!("{}[{}]", self.host, self.addr.ip())
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]:{}", self.host, self.addr.ip(), self.addr.port())
    }
}

/// Why a connection or a transaction failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The next hop has no usable address.
    #[error("{0}")]
    Route(#[from] RouteError),
    /// DNS gave no usable answer for the next hop.
    #[error("{0}")]
    Dns(#[from] dns::DnsError),
    /// TCP connect failed.
    #[error("connect to {host}[{}]:{}: {}", addr.ip(), addr.port(), io_text(source))]
    Connect {
        /// Host name.
        host: String,
        /// Address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A stage took too long.
    #[error("conversation with {peer} timed out {stage}")]
    Timeout {
        /// The peer.
        peer: String,
        /// `while receiving the initial server greeting`, `after RCPT TO`, ...
        stage: &'static str,
    },
    /// Reading or writing failed, or the peer closed the connection.
    #[error("lost connection with {peer} {stage}: {detail}")]
    Lost {
        /// The peer.
        peer: String,
        /// Where.
        stage: &'static str,
        /// What happened.
        detail: String,
    },
    /// The peer's replies were not SMTP.
    #[error("protocol error with {peer}: {source}")]
    Protocol {
        /// The peer.
        peer: String,
        /// The parse error.
        source: ProtoError,
    },
    /// TLS is required for this destination but the server does not offer
    /// STARTTLS, or refused it.
    #[error("TLS is required, but {what} host {peer}")]
    TlsRequired {
        /// The peer.
        peer: String,
        /// `was not offered by` or `refused STARTTLS at`.
        what: &'static str,
    },
    /// The TLS handshake failed.
    #[error("Cannot start TLS: handshake failure with {peer}: {detail}")]
    TlsHandshake {
        /// The peer.
        peer: String,
        /// Why.
        detail: String,
    },
    /// Authentication to the relay host did not succeed or was not allowed.
    #[error("SASL authentication failed; cannot authenticate to server {peer}: {detail}")]
    Auth {
        /// The peer.
        peer: String,
        /// Why.
        detail: String,
    },
    /// DANE refused the host or the next hop (always temporary).
    #[error("{0}")]
    Dane(#[from] dane::DaneLookupError),
    /// The destination's MTA-STS policy stops this attempt.
    #[error("{0}")]
    MtaSts(#[from] mta_sts::MtaStsError),
    /// The greeting or EHLO/HELO was refused.
    #[error("host {peer} refused to talk to me: {reply}")]
    Refused {
        /// The peer.
        peer: String,
        /// Its reply.
        reply: Reply,
    },
}

impl DeliverError {
    /// True when the failure is temporary (retry later); false when the
    /// next hop refused permanently (5xx greeting). A 5xx that blames the
    /// conversation ([`Reply::is_protocol_error`], e.g. `503` to RSET) is
    /// temporary: our protocol choices never bounce mail.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliverError::Refused { reply, .. } => {
                !reply.is_permanent() || reply.is_protocol_error()
            }
            DeliverError::Route(e) => e.is_transient(),
            DeliverError::Dns(e) => e.is_transient(),
            _ => true,
        }
    }

    /// The enhanced status code to log.
    pub fn dsn(&self) -> String {
        match self {
            DeliverError::Refused { reply, .. } if reply.is_protocol_error() => {
                // Deferred, so class 4 with the server's subject and detail.
                match reply.enhanced {
                    Some(e) => format!("4.{}.{}", e.subject, e.detail),
                    None => "4.5.0".into(),
                }
            }
            DeliverError::Refused { reply, .. } => reply.dsn(),
            DeliverError::Route(e) => e.dsn().to_string(),
            DeliverError::Dns(e) => e.dsn().to_string(),
            DeliverError::Dane(e) => e.dsn().to_string(),
            DeliverError::MtaSts(e) => e.dsn(),
            DeliverError::TlsRequired { .. } => "4.7.4".into(),
            DeliverError::TlsHandshake { .. } => "4.7.5".into(),
            DeliverError::Auth { .. } => "4.7.0".into(),
            DeliverError::Connect { .. } => "4.4.1".into(),
            DeliverError::Timeout { .. } => "4.4.2".into(),
            DeliverError::Lost { .. } => "4.4.2".into(),
            DeliverError::Protocol { .. } => "4.5.0".into(),
        }
    }
}

/// An I/O error's text without Rust's ` (os error N)` suffix, as Postfix
/// logs it (`Connection refused`, `Network is unreachable`).
fn io_text(e: &std::io::Error) -> String {
    let t = e.to_string();
    match t.find(" (os error") {
        Some(i) => t[..i].to_string(),
        None => t,
    }
}

/// Stage names used in timeouts and lost-connection messages.
pub const STAGE_CONNECT: &str = "while connecting";
/// See [`STAGE_CONNECT`].
pub const STAGE_GREETING: &str = "while receiving the initial server greeting";

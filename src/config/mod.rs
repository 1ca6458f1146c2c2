//! The TOML configuration: where it is found, its keys and defaults, and
//! validation with errors that name the key, the file and the line.
//!
//! Search order: an explicit path (`--config FILE`, sendmail's `-C FILE`),
//! then `$RINGMAIL_CONFIG`, then `/etc/ringmail/ringmail.toml`, then the
//! built-in defaults. `$RINGMAIL_IO` overrides `io_backend`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod dkim;
pub mod events;
pub mod http;
pub mod internet;
pub mod listener;
pub mod mode;
pub mod shaping;

pub use dkim::{DkimAlgorithm, DkimCanonicalization, DkimKeyConfig};
pub use events::{EventsConfig, EventsFsync};
pub use http::{ApiScope, ApiToken, HttpConfig};
pub use internet::{
    domain_matches, CertMatch, DaneInsecureMxPolicy, DnsConfig, DnsSupportLevel, InetProtocols,
    Rate, RateLimitConfig, SaslPasswordConfig, TlsPolicyConfig, TlsSecurityLevel,
    TransactionChaining,
};
pub use listener::{ListenerConfig, ListenerKind, Networks};
pub use mode::DirMode;
pub use shaping::{PoolConfig, PoolRuleConfig, SourceConfig, WarmupStepConfig};

/// The system-wide configuration file, used when no other is named.
pub const SYSTEM_CONFIG: &str = "/etc/ringmail/ringmail.toml";

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value (0 when unknown).
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("{path}:{line}: bad value for `{key}`: {message}")]
    Invalid {
        /// The file (or `<defaults>` / `<environment>`).
        path: PathBuf,
        /// 1-based line of the key, 0 when not from a file.
        line: usize,
        /// The key.
        key: &'static str,
        /// Why.
        message: String,
    },
}

impl ConfigError {
    /// Configuration errors never go away by retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConfigError::Read { source, .. } if source.kind() != std::io::ErrorKind::NotFound)
    }
}

/// Which I/O backend the shards run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoBackendChoice {
    /// io_uring when the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    /// io_uring (tokio-uring); falls back to epoll with a log line if refused.
    Uring,
    /// Plain tokio on epoll.
    Epoll,
}

impl std::str::FromStr for IoBackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoBackendChoice::Auto),
            "uring" => Ok(IoBackendChoice::Uring),
            "epoll" => Ok(IoBackendChoice::Epoll),
            other => Err(format!("expected auto, uring or epoll, got {other:?}")),
        }
    }
}

/// The effective configuration. Every key has a default; see docs/CONFIG.md.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root of the spool: `maildrop/`, `pickup/`, `queue/`, `corrupt/`.
    pub spool_dir: PathBuf,
    /// This host's name: Message-IDs, logs, HELO later.
    pub myhostname: String,
    /// Domain appended to unqualified addresses (`root` → `root@myorigin`).
    /// Empty means `myhostname`.
    pub myorigin: String,
    /// Number of shard threads; 0 means one per CPU core.
    pub shards: usize,
    /// Shard I/O backend.
    pub io_backend: IoBackendChoice,
    /// Largest accepted message in bytes (Postfix's default).
    pub message_size_limit: u64,
    /// Smart host for all mail in Postfix syntax (`[host]:port`), used by delivery.
    pub relayhost: String,
    /// Size in bytes of each preallocated queue segment file.
    pub segment_size: u64,
    /// How often pickup scans `maildrop/` and `pickup/` when idle, in milliseconds.
    pub pickup_interval_ms: u64,
    /// A file in `pickup/` younger than this (by mtime, in milliseconds) is left
    /// for the next scan, so a writer that copies in place is not read half-way.
    pub pickup_settle_ms: u64,
    /// Capacity of the lock-free ring between pickup and the shards.
    pub pickup_ring_size: usize,
    /// Threads that unlink spool files once their messages are queued.
    pub pickup_unlink_threads: usize,
    /// Group that owns `pickup/` (a name from /etc/group or a number);
    /// unset means the primary group of the user who runs `ringmail serve`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup_group: Option<String>,
    /// Mode of `pickup/` (octal digits), set by `ringmail serve` at start.
    pub pickup_mode: DirMode,
    /// Also append log lines to this file (they always go to stderr).
    pub log_file: Option<PathBuf>,
    /// Per-domain next hops, overriding `relayhost` (`[[route]]` tables).
    pub route: Vec<RouteConfig>,
    /// Most simultaneous connections to one next hop, over all shards.
    pub default_destination_concurrency_limit: usize,
    /// Connections a destination starts with before slow start raises them.
    pub initial_destination_concurrency: usize,
    /// Most recipients in one SMTP transaction.
    pub default_destination_recipient_limit: usize,
    /// Shortest wait before retrying deferred mail, in seconds.
    pub minimal_backoff_time: u64,
    /// Longest wait before retrying deferred mail, in seconds.
    pub maximal_backoff_time: u64,
    /// How long mail may stay queued before it is returned as undeliverable, in seconds.
    pub maximal_queue_lifetime: u64,
    /// Seconds to wait for a TCP connection.
    pub smtp_connect_timeout: u64,
    /// Seconds to wait for the greeting and the EHLO/HELO reply.
    pub smtp_helo_timeout: u64,
    /// Seconds to wait for the MAIL FROM reply.
    pub smtp_mail_timeout: u64,
    /// Seconds to wait for each RCPT TO reply.
    pub smtp_rcpt_timeout: u64,
    /// Seconds to wait for the DATA reply (354).
    pub smtp_data_init_timeout: u64,
    /// Seconds allowed for sending the message body.
    pub smtp_data_xfer_timeout: u64,
    /// Seconds to wait for the reply after the final ".".
    pub smtp_data_done_timeout: u64,
    /// Seconds to wait for the RSET and QUIT replies.
    pub smtp_quit_timeout: u64,
    /// Seconds an idle connection is kept for reuse.
    pub smtp_connection_cache_time_limit: u64,
    /// Most transactions over one connection; 0 = no limit.
    pub smtp_connection_reuse_count_limit: u32,
    /// Seconds after which a connection is no longer reused.
    pub smtp_connection_reuse_time_limit: u64,
    /// TCP port for delivery to MX hosts (and next hops without a port).
    pub smtp_port: u16,
    /// Address families used for delivery.
    pub inet_protocols: InetProtocols,
    /// DNS servers and timeouts (`[dns]`).
    pub dns: DnsConfig,
    /// Whether the resolver's DNSSEC results (the AD bit) are trusted;
    /// `dnssec` is needed for DANE.
    pub smtp_dns_support_level: DnsSupportLevel,
    /// Default TLS level for delivery.
    pub smtp_tls_security_level: TlsSecurityLevel,
    /// What `dane` does at MX hosts from an MX RRset DNSSEC did not
    /// authenticate, when their TLSA records are authenticated.
    pub smtp_tls_dane_insecure_mx_policy: DaneInsecureMxPolicy,
    /// The names a certificate must present at level `verify` (Postfix's
    /// default: `hostname`); see [`internet::CertMatch`].
    pub smtp_tls_verify_cert_match: Vec<String>,
    /// The names a certificate must present at level `secure` (Postfix's
    /// default: `nexthop`, `dot-nexthop`).
    pub smtp_tls_secure_cert_match: Vec<String>,
    /// Extra trusted CA certificates (PEM) for `verify`, beside the system roots.
    #[serde(alias = "smtp_tls_CAfile")]
    pub smtp_tls_ca_file: Option<PathBuf>,
    /// Per-destination TLS levels and MTA-STS switches (`[[tls_policy]]`).
    pub tls_policy: Vec<TlsPolicyConfig>,
    /// Consult recipient domains' MTA-STS policies (RFC 8461) on MX
    /// delivery.
    pub smtp_mta_sts: bool,
    /// HTTPS port of MTA-STS policy hosts; 443 (other values are for
    /// tests, whose policy server cannot bind 443).
    pub smtp_mta_sts_port: u16,
    /// Seconds one MTA-STS policy fetch may take.
    pub smtp_mta_sts_timeout: u64,
    /// Client networks that may relay through the SMTP listeners without
    /// authenticating (CIDR blocks or addresses); default loopback only.
    pub mynetworks: Vec<String>,
    /// SMTP injection listeners (`[[listener]]`); none by default.
    pub listener: Vec<ListenerConfig>,
    /// Seconds a listener waits for the next command (Postfix
    /// `smtpd_timeout`).
    pub smtpd_timeout: u64,
    /// Seconds a listener waits for the next piece of message data (DATA
    /// or a BDAT chunk) once the client has started sending it.
    pub smtpd_data_timeout: u64,
    /// Seconds a client has to finish the TLS handshake after STARTTLS
    /// (Postfix `smtpd_starttls_timeout`).
    pub smtpd_starttls_timeout: u64,
    /// Most recipients per message over SMTP (`smtpd_recipient_limit`).
    pub smtpd_recipient_limit: usize,
    /// Most connections open at once on one listener.
    pub smtpd_max_connections: usize,
    /// Most connections open at once from one client address
    /// (`smtpd_client_connection_count_limit`).
    pub smtpd_client_connection_limit: usize,
    /// Prepend a `Received:` field (with the TLS details) to mail taken
    /// over SMTP.
    pub smtpd_received_header: bool,
    /// Relay-host credentials (`[[smtp_sasl_password]]`).
    pub smtp_sasl_password: Vec<SaslPasswordConfig>,
    /// Allow sending credentials over a connection without TLS.
    pub smtp_sasl_plaintext: bool,
    /// The name before `/PROGRAM` in log lines (`ringmail/smtp[PID]`);
    /// Postfix's `syslog_name`. Set `postfix` to keep log tools such as
    /// pflogsumm working unchanged.
    pub syslog_name: String,
    /// Chain transactions on a connection (`auto`, `on`, `off`).
    pub smtp_transaction_chaining: TransactionChaining,
    /// Messages per interval to any one destination (`N/s`, `N/m`, `N/h`);
    /// empty means no limit.
    pub default_destination_rate_limit: String,
    /// Per-destination rate limits (`[[rate_limit]]`).
    pub rate_limit: Vec<RateLimitConfig>,
    /// How long a bounce (null-sender mail) may stay queued, in seconds.
    pub bounce_queue_lifetime: u64,
    /// Send a delay warning to the sender of mail still undelivered after
    /// this many seconds; 0 = never.
    pub delay_warning_time: u64,
    /// Largest original attached in full to a bounce; larger ones are
    /// returned as headers only.
    pub bounce_size_limit: usize,
    /// The submission users' password file (`ringmail passwd`).
    pub smtpd_passwd_file: PathBuf,
    /// The HTTP server (`[http]`): unsubscribe pages and the JSON API; it
    /// runs only when the table is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    /// The user's shaping rules (`shaping.toml`, docs/SHAPING.md), over
    /// the shipped ones; unset: the shipped rules only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shaping_file: Option<PathBuf>,
    /// Sending sources: local addresses to send from (`[[source]]`).
    pub source: Vec<SourceConfig>,
    /// Pools of sources (`[[pool]]`).
    pub pool: Vec<PoolConfig>,
    /// Which messages use which pool (`[[pool_rule]]`).
    pub pool_rule: Vec<PoolRuleConfig>,
    /// Delivery events (`[events]`): the events file and the webhook; on
    /// only when the table is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsConfig>,
    /// DKIM signing keys (`[[dkim]]`); mail is signed once one is given.
    pub dkim: Vec<DkimKeyConfig>,
    /// Threads that sign mail (RSA signing costs about a millisecond); 0
    /// means one per CPU core.
    pub dkim_signing_threads: usize,
}

/// One `[[route]]` entry: mail for `domain` (and, with a leading dot,
/// its subdomains) goes to `nexthop`, in relayhost syntax.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `example.com`, or `.example.com` for every subdomain.
    pub domain: String,
    /// `[host]:port`, `[ip]`, `host` (MX lookup) ...
    pub nexthop: String,
    /// TLS level for this route, overriding `smtp_tls_security_level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSecurityLevel>,
    /// Rate limit for this route's next hop (`N/s`, `N/m`, `N/h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            spool_dir: PathBuf::from("/var/spool/ringmail"),
            myhostname: system_hostname(),
            myorigin: String::new(),
            shards: 0,
            io_backend: IoBackendChoice::Auto,
            message_size_limit: 10_240_000,
            relayhost: String::new(),
            segment_size: 64 << 20,
            pickup_interval_ms: 200,
            pickup_settle_ms: 250,
            pickup_ring_size: 4096,
            pickup_unlink_threads: 16,
            pickup_group: None,
            pickup_mode: DirMode::new(0o1770),
            log_file: None,
            route: Vec::new(),
            default_destination_concurrency_limit: 20,
            initial_destination_concurrency: 5,
            default_destination_recipient_limit: 50,
            minimal_backoff_time: 300,
            maximal_backoff_time: 4000,
            maximal_queue_lifetime: 5 * 86400,
            smtp_connect_timeout: 30,
            smtp_helo_timeout: 300,
            smtp_mail_timeout: 300,
            smtp_rcpt_timeout: 300,
            smtp_data_init_timeout: 120,
            smtp_data_xfer_timeout: 180,
            smtp_data_done_timeout: 600,
            smtp_quit_timeout: 300,
            smtp_connection_cache_time_limit: 2,
            smtp_connection_reuse_count_limit: 0,
            smtp_connection_reuse_time_limit: 300,
            smtp_port: 25,
            inet_protocols: InetProtocols::All,
            dns: DnsConfig::default(),
            smtp_dns_support_level: DnsSupportLevel::Enabled,
            smtp_tls_security_level: TlsSecurityLevel::May,
            smtp_tls_dane_insecure_mx_policy: DaneInsecureMxPolicy::Dane,
            smtp_tls_verify_cert_match: internet::default_verify_cert_match(),
            smtp_tls_secure_cert_match: internet::default_secure_cert_match(),
            smtp_tls_ca_file: None,
            tls_policy: Vec::new(),
            smtp_mta_sts: true,
            smtp_mta_sts_port: 443,
            smtp_mta_sts_timeout: 10,
            mynetworks: listener::default_mynetworks(),
            listener: Vec::new(),
            dkim: Vec::new(),
            dkim_signing_threads: 0,
            smtpd_timeout: 300,
            smtpd_data_timeout: 300,
            smtpd_starttls_timeout: 60,
            smtpd_recipient_limit: 1000,
            smtpd_max_connections: 1000,
            smtpd_client_connection_limit: 50,
            smtpd_received_header: true,
            smtp_sasl_password: Vec::new(),
            smtp_sasl_plaintext: false,
            syslog_name: "ringmail".into(),
            smtp_transaction_chaining: TransactionChaining::Auto,
            default_destination_rate_limit: String::new(),
            rate_limit: Vec::new(),
            bounce_queue_lifetime: 5 * 86400,
            delay_warning_time: 0,
            bounce_size_limit: 50_000,
            smtpd_passwd_file: PathBuf::from("/etc/ringmail/passwd"),
            http: None,
            shaping_file: None,
            source: Vec::new(),
            pool: Vec::new(),
            pool_rule: Vec::new(),
            events: None,
        }
    }
}

/// The host name as the system reports it, or `localhost`.
fn system_hostname() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// A configuration together with the file it came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The values.
    pub config: Config,
    /// The file read, or `None` for built-in defaults.
    pub path: Option<PathBuf>,
}

impl Config {
    /// Finds and loads the configuration: `explicit`, then `$RINGMAIL_CONFIG`,
    /// then [`SYSTEM_CONFIG`] if it exists, then defaults; then applies
    /// `$RINGMAIL_IO` and validates.
    pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
        let env_path = std::env::var_os("RINGMAIL_CONFIG").map(PathBuf::from);
        let path = match (explicit, env_path) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) => Some(p),
            (None, None) => {
                let sys = PathBuf::from(SYSTEM_CONFIG);
                sys.exists().then_some(sys)
            }
        };
        let mut config = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                Config::parse(&text, p)?
            }
            None => {
                let c = Config::default();
                c.validate(Path::new("<defaults>"), "")?;
                c
            }
        };
        if let Some(io) = std::env::var_os("RINGMAIL_IO") {
            let io = io.to_string_lossy();
            config.io_backend = io.parse().map_err(|message| ConfigError::Invalid {
                path: PathBuf::from("<environment RINGMAIL_IO>"),
                line: 0,
                key: "io_backend",
                message,
            })?;
        }
        Ok(LoadedConfig { config, path })
    }

    /// Parses and validates TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            let message = e.message().trim().to_string();
            // toml names the key of an unknown field, not of a bad value:
            // add the key assigned on the offending line.
            let message = match key_at_line(text, line) {
                Some(key) if !message.contains(&format!("`{key}`")) => {
                    format!("`{key}`: {message}")
                }
                _ => message,
            };
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                message,
            }
        })?;
        config.validate(path, text)?;
        Ok(config)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: key_line(text, key),
            key,
            message,
        };
        if !self.spool_dir.is_absolute() && !self.spool_dir.starts_with(".") {
            // Relative paths are allowed but resolved against the working
            // directory; say so only when clearly accidental.
        }
        if self.spool_dir.as_os_str().is_empty() {
            return Err(bad("spool_dir", "must not be empty".into()));
        }
        if self.myhostname.is_empty() || self.myhostname.contains(char::is_whitespace) {
            return Err(bad(
                "myhostname",
                "must be a host name without spaces".into(),
            ));
        }
        if self.myorigin.contains(char::is_whitespace) || self.myorigin.contains('@') {
            return Err(bad("myorigin", "must be a domain name".into()));
        }
        if self.shards > crate::model::queue_id::MAX_SHARDS {
            return Err(bad(
                "shards",
                format!("at most {} shards", crate::model::queue_id::MAX_SHARDS),
            ));
        }
        if self.message_size_limit < 1024 {
            return Err(bad(
                "message_size_limit",
                "must be at least 1024 bytes".into(),
            ));
        }
        if self.segment_size < (1 << 20) {
            return Err(bad("segment_size", "must be at least 1 MiB".into()));
        }
        if self.pickup_interval_ms == 0 || self.pickup_interval_ms > 1000 {
            return Err(bad(
                "pickup_interval_ms",
                "must be between 1 and 1000 (a new file is queued within a second)".into(),
            ));
        }
        if self.syslog_name.is_empty()
            || !self
                .syslog_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        {
            return Err(bad(
                "syslog_name",
                "must be a non-empty name of letters, digits, '-', '_', '.' or '/'".into(),
            ));
        }
        if self.smtpd_passwd_file.as_os_str().is_empty()
            || self.smtpd_passwd_file.file_name().is_none()
        {
            return Err(bad(
                "smtpd_passwd_file",
                "must be the path of a file".into(),
            ));
        }
        if self.pickup_ring_size < 2 {
            return Err(bad("pickup_ring_size", "must be at least 2".into()));
        }
        if !(1..=256).contains(&self.pickup_unlink_threads) {
            return Err(bad("pickup_unlink_threads", "must be 1 to 256".into()));
        }
        if let Some(group) = &self.pickup_group {
            if group.is_empty() || group.contains(|c: char| c.is_whitespace() || c == ':') {
                return Err(bad(
                    "pickup_group",
                    format!("{group:?} is not a group name or number"),
                ));
            }
        }
        if !self.relayhost.is_empty() {
            crate::model::Nexthop::parse(&self.relayhost)
                .map_err(|e| bad("relayhost", e.to_string()))?;
        }
        let bad_route = |i: usize, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: entry_line(text, "route", i),
            key: "route",
            message,
        };
        for (i, r) in self.route.iter().enumerate() {
            crate::model::Nexthop::parse(&r.nexthop)
                .map_err(|e| bad_route(i, format!("domain {:?}: {e}", r.domain)))?;
            let d = r.domain.trim_start_matches('.');
            if d.is_empty() || d.contains(char::is_whitespace) || d.contains('@') {
                return Err(bad_route(i, format!("bad domain {:?}", r.domain)));
            }
            if let Some(rate) = &r.rate {
                Rate::parse(rate)
                    .map_err(|e| bad_route(i, format!("domain {:?}: {e}", r.domain)))?;
            }
        }
        for (key, value) in [
            (
                "default_destination_concurrency_limit",
                self.default_destination_concurrency_limit,
            ),
            (
                "initial_destination_concurrency",
                self.initial_destination_concurrency,
            ),
            (
                "default_destination_recipient_limit",
                self.default_destination_recipient_limit,
            ),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        self.validate_internet(&bad)?;
        Networks::parse(&self.mynetworks).map_err(|e| bad("mynetworks", e))?;
        for (key, value) in [
            ("smtpd_timeout", self.smtpd_timeout as usize),
            ("smtpd_data_timeout", self.smtpd_data_timeout as usize),
            (
                "smtpd_starttls_timeout",
                self.smtpd_starttls_timeout as usize,
            ),
            ("smtpd_recipient_limit", self.smtpd_recipient_limit),
            ("smtpd_max_connections", self.smtpd_max_connections),
            (
                "smtpd_client_connection_limit",
                self.smtpd_client_connection_limit,
            ),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        for (i, l) in self.listener.iter().enumerate() {
            let at = |message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: entry_line(text, "listener", i),
                key: "listener",
                message: format!("{}: {message}", l.address),
            };
            if l.tls_cert.is_some() != l.tls_key.is_some() {
                return Err(at("tls_cert and tls_key go together".into()));
            }
            if l.address.port() == 0 {
                return Err(at("needs a port".into()));
            }
            if self.listener[..i].iter().any(|o| o.address == l.address) {
                return Err(at("listed twice".into()));
            }
        }
        if let Some(http) = &self.http {
            http.check().map_err(|e| bad("http", e))?;
        }
        if let Some(events) = &self.events {
            events.check().map_err(|e| bad("events", e))?;
        }
        for (i, d) in self.dkim.iter().enumerate() {
            let at = |message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: entry_line(text, "dkim", i),
                key: "dkim",
                message: format!("{}/{}: {message}", d.domain, d.selector),
            };
            d.check().map_err(at)?;
            if self.dkim[..i]
                .iter()
                .any(|o| o.domain.eq_ignore_ascii_case(&d.domain) && o.selector == d.selector)
            {
                return Err(at("listed twice".into()));
            }
        }
        if let Some(f) = &self.shaping_file {
            if f.as_os_str().is_empty() || f.file_name().is_none() {
                return Err(bad("shaping_file", "must be the path of a file".into()));
            }
        }
        shaping::check(&self.source, &self.pool, &self.pool_rule).map_err(
            |(key, i, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: entry_line(text, key, i),
                key,
                message,
            },
        )?;
        if self.minimal_backoff_time == 0 {
            return Err(bad(
                "minimal_backoff_time",
                "must be at least 1 second".into(),
            ));
        }
        if self.maximal_backoff_time < self.minimal_backoff_time {
            return Err(bad(
                "maximal_backoff_time",
                "must not be less than minimal_backoff_time".into(),
            ));
        }
        Ok(())
    }

    fn validate_internet(
        &self,
        bad: &dyn Fn(&'static str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.smtp_port == 0 {
            return Err(bad("smtp_port", "must not be 0".into()));
        }
        self.dns.server_addrs().map_err(|e| bad("dns", e))?;
        if self.dns.timeout == 0 || self.dns.attempts == 0 {
            return Err(bad("dns", "timeout and attempts must be at least 1".into()));
        }
        for p in &self.tls_policy {
            check_domain(&p.domain).map_err(|e| bad("tls_policy", e))?;
            match (p.level, p.mta_sts) {
                (None, None) => {
                    return Err(bad(
                        "tls_policy",
                        format!("domain {:?}: give a level, mta_sts or both", p.domain),
                    ))
                }
                (Some(_), Some(true)) => {
                    return Err(bad(
                        "tls_policy",
                        format!(
                            "domain {:?}: an explicit level takes precedence over MTA-STS; \
                             drop mta_sts = true or the level",
                            p.domain
                        ),
                    ))
                }
                _ => {}
            }
            if let Some(list) = &p.cert_match {
                if !matches!(
                    p.level,
                    Some(TlsSecurityLevel::Verify | TlsSecurityLevel::Secure)
                ) {
                    return Err(bad(
                        "tls_policy",
                        format!(
                            "domain {:?}: match applies to level verify or secure only",
                            p.domain
                        ),
                    ));
                }
                internet::CertMatch::parse_list(list)
                    .map_err(|e| bad("tls_policy", format!("domain {:?}: match: {e}", p.domain)))?;
            }
        }
        internet::CertMatch::parse_list(&self.smtp_tls_verify_cert_match)
            .map_err(|e| bad("smtp_tls_verify_cert_match", e))?;
        internet::CertMatch::parse_list(&self.smtp_tls_secure_cert_match)
            .map_err(|e| bad("smtp_tls_secure_cert_match", e))?;
        if self.smtp_mta_sts_port == 0 {
            return Err(bad("smtp_mta_sts_port", "must not be 0".into()));
        }
        if self.smtp_mta_sts_timeout == 0 {
            return Err(bad("smtp_mta_sts_timeout", "must be at least 1".into()));
        }
        if !self.default_destination_rate_limit.is_empty() {
            Rate::parse(&self.default_destination_rate_limit)
                .map_err(|e| bad("default_destination_rate_limit", e))?;
        }
        for r in &self.rate_limit {
            check_domain(&r.destination).map_err(|e| bad("rate_limit", e))?;
            Rate::parse(&r.rate).map_err(|e| bad("rate_limit", e))?;
        }
        for a in &self.smtp_sasl_password {
            crate::model::Nexthop::parse(&a.nexthop)
                .map_err(|e| bad("smtp_sasl_password", e.to_string()))?;
            if a.username.is_empty() {
                return Err(bad(
                    "smtp_sasl_password",
                    format!("nexthop {:?}: empty username", a.nexthop),
                ));
            }
        }
        Ok(())
    }

    /// The domain for unqualified addresses.
    pub fn origin(&self) -> &str {
        if self.myorigin.is_empty() {
            &self.myhostname
        } else {
            &self.myorigin
        }
    }

    /// The number of shards to run: `shards`, or one per core when 0.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(crate::model::queue_id::MAX_SHARDS)
        }
    }

    /// The configuration as TOML, for `ringmail config`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

/// A warning when `config` holds relay-host passwords or API tokens and
/// `file` (where it was read from) can be read by users other than its
/// owner.
pub fn credentials_warning(config: &Config, file: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut held = Vec::new();
    if !config.smtp_sasl_password.is_empty() {
        held.push("smtp_sasl_password entries");
    }
    if config.http.as_ref().is_some_and(|h| !h.tokens.is_empty()) {
        held.push("[http] API tokens");
    }
    if config
        .events
        .as_ref()
        .is_some_and(|e| e.webhook_token.is_some())
    {
        held.push("an [events] webhook_token");
    }
    if held.is_empty() {
        return None;
    }
    let what = held.join(" and ");
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "{}: holds {what} but is readable by others (mode {:o}); chmod 600 it",
            file.display(),
            mode & 0o7777
        )
    })
}

/// A destination pattern: `example.com` or `.example.com`.
fn check_domain(d: &str) -> Result<(), String> {
    let bare = d.trim_start_matches('.');
    if bare.is_empty() || bare.contains(char::is_whitespace) || bare.contains('@') {
        Err(format!("bad domain {d:?}"))
    } else {
        Ok(())
    }
}

/// 1-based line number of byte offset `pos` in `text`.
fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key assigned on 1-based `line` of `text`, if that line is `key = value`.
fn key_at_line(text: &str, line: usize) -> Option<&str> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.contains(char::is_whitespace)).then_some(key)
}

/// 1-based line where `key` is assigned in `text`, else the line of its
/// first `[[key]]` or `[key]` table header, or 0.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
        .unwrap_or_else(|| entry_line(text, key, 0))
}

/// 1-based line of the `[[key]]` header of entry `index` (0-based) of an
/// array of tables, or of the `[key]` header; 0 when there is none.
fn entry_line(text: &str, key: &str, index: usize) -> usize {
    let header = |l: &str| {
        let l = l.trim();
        let inner = l
            .strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')));
        inner.is_some_and(|k| k.trim() == key)
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| header(l))
        .nth(index)
        .map(|(i, _)| i + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let err = Config::parse("shards = 2\nspool_dri = \"/x\"\n", Path::new("/etc/r.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/r.toml:2"), "{err}");
        assert!(err.contains("spool_dri"), "{err}");
    }

    #[test]
    fn bad_type_names_line() {
        let err = Config::parse("\n\nshards = \"many\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:3:"), "{err}");
        assert!(err.contains("`shards`"), "{err}");
    }

    #[test]
    fn bad_route_entry_names_its_own_line() {
        let text = "relayhost = \"[127.0.0.1]:2525\"\n\n\
                    [[route]]\ndomain = \"a.test\"\nnexthop = \"[127.0.0.1]:25\"\n\n\
                    [[route]]\ndomain = \"b.test\"\nnexthop = \"[bad\"\n\n\
                    [[route]]\ndomain = \"c.test\"\nnexthop = \"x\"\nrate = \"fast\"\n";
        let err = Config::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:7:"), "the second [[route]]: {err}");
        assert!(err.contains("b.test"), "{err}");
        let text = text.replace("[bad", "[127.0.0.1]:26");
        let err = Config::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:11:"), "the third [[route]]: {err}");
        let err = Config::parse(
            "[[tls_policy]]\ndomain = \"\"\nlevel = \"may\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("c.toml:1:"), "not line 0: {err}");
    }

    #[test]
    fn tls_policy_entries_with_mta_sts() {
        let ok = Config::parse(
            "smtp_mta_sts_port = 8443\n[[tls_policy]]\ndomain = \"a.test\"\nmta_sts = false\n\
             [[tls_policy]]\ndomain = \"b.test\"\nlevel = \"verify\"\nmta_sts = false\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(ok.tls_policy[0].level, None);
        assert_eq!(ok.smtp_mta_sts_port, 8443);
        let printed = ok.to_toml();
        let again = Config::parse(&printed, Path::new("printed.toml")).unwrap();
        assert_eq!(again.tls_policy, ok.tls_policy, "{printed}");
        for (text, want) in [
            (
                "[[tls_policy]]\ndomain = \"a.test\"\n",
                "give a level, mta_sts or both",
            ),
            (
                "[[tls_policy]]\ndomain = \"a.test\"\nlevel = \"may\"\nmta_sts = true\n",
                "an explicit level takes precedence over MTA-STS",
            ),
            (
                "smtp_mta_sts_port = 0\n",
                "`smtp_mta_sts_port`: must not be 0",
            ),
            (
                "smtp_mta_sts_timeout = 0\n",
                "`smtp_mta_sts_timeout`: must be at least 1",
            ),
        ] {
            let err = Config::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn certificate_name_lists_parse_print_and_refuse_nonsense() {
        let ok = Config::parse(
            "smtp_tls_security_level = \"secure\"\n\
             smtp_tls_secure_cert_match = [\"nexthop\", \".Example.NET.\"]\n\
             [[tls_policy]]\ndomain = \"a.test\"\nlevel = \"verify\"\n\
             match = [\"hostname\", \"dot-nexthop\", \"mx.a.test\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(ok.smtp_tls_security_level, TlsSecurityLevel::Secure);
        assert_eq!(ok.smtp_tls_verify_cert_match, ["hostname"]);
        assert_eq!(
            CertMatch::parse_list(&ok.smtp_tls_secure_cert_match).unwrap(),
            [
                CertMatch::Nexthop,
                CertMatch::Subdomain("example.net".into())
            ]
        );
        let printed = ok.to_toml();
        let again = Config::parse(&printed, Path::new("printed.toml")).unwrap();
        assert_eq!(again.tls_policy, ok.tls_policy, "{printed}");
        for (text, want) in [
            (
                "[[tls_policy]]\ndomain = \"a.test\"\nlevel = \"encrypt\"\nmatch = [\"nexthop\"]\n",
                "match applies to level verify or secure only",
            ),
            (
                "[[tls_policy]]\ndomain = \"a.test\"\nmta_sts = false\nmatch = [\"nexthop\"]\n",
                "match applies to level verify or secure only",
            ),
            (
                "[[tls_policy]]\ndomain = \"a.test\"\nlevel = \"secure\"\nmatch = [\"*.a.test\"]\n",
                "is not hostname, nexthop, dot-nexthop, a domain name or .domain",
            ),
            (
                "smtp_tls_verify_cert_match = [\"192.0.2.1\"]\n",
                "is an IP address; certificates are matched by DNS name only",
            ),
            (
                "smtp_tls_verify_cert_match = []\n",
                "`smtp_tls_verify_cert_match`: an empty list matches no certificate",
            ),
            (
                "smtp_tls_secure_cert_match = [\"next hop\"]\n",
                "`smtp_tls_secure_cert_match`: \"next hop\" is not",
            ),
        ] {
            let err = Config::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let err = Config::parse(
            "myhostname = \"a\"\n\nio_backend = \"kqueue\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.toml:3") && err.contains("io_backend"),
            "{err}"
        );
        let err = Config::parse("segment_size = 10\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.toml:1") && err.contains("segment_size"),
            "{err}"
        );
    }

    #[test]
    fn example_config_is_valid() {
        let c = Config::parse(
            include_str!("../../examples/ringmail.toml"),
            Path::new("examples/ringmail.toml"),
        )
        .unwrap();
        assert_eq!(c.spool_dir, PathBuf::from("/var/spool/ringmail"));
    }

    #[test]
    fn delivery_keys_are_checked() {
        let err = |t: &str| {
            Config::parse(t, Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        assert!(err("relayhost = \"[127.0.0.1\"\n").contains("relayhost"));
        assert!(
            err("[[route]]\ndomain = \"a.example\"\nnexthop = \"[x]:port\"\n").contains("route")
        );
        assert!(err("default_destination_recipient_limit = 0\n").contains("c.toml:1"));
        assert!(err("minimal_backoff_time = 10\nmaximal_backoff_time = 5\n")
            .contains("maximal_backoff_time"));
        let ok = Config::parse(
            "relayhost = \"[127.0.0.1]:2526\"\n[[route]]\ndomain = \".sub.example\"\nnexthop = \"[127.0.0.2]:25\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(ok.route.len(), 1);
    }

    #[test]
    fn readable_credentials_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        let text = "[[smtp_sasl_password]]\nnexthop = \"[relay.example]:587\"\nusername = \"u\"\npassword = \"p\"\n";
        std::fs::write(&file, text).unwrap();
        let c = Config::parse(text, &file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = credentials_warning(&c, &file).unwrap();
        assert!(w.contains("readable by others") && w.contains("644"), "{w}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(credentials_warning(&c, &file), None);
        assert_eq!(credentials_warning(&Config::default(), &file), None);
        // Debug output never shows the password.
        assert!(!format!("{c:?}").contains("password: \"p\""));
    }

    #[test]
    fn pickup_permissions_are_checked() {
        let err = |t: &str| {
            Config::parse(t, Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("shards = 1\npickup_mode = 1770\n");
        assert!(e.contains("c.toml:2") && e.contains("pickup_mode"), "{e}");
        let e = err("pickup_mode = \"1779\"\n");
        assert!(e.contains("c.toml:1") && e.contains("octal"), "{e}");
        let e = err("pickup_group = \"mail users\"\n");
        assert!(e.contains("pickup_group"), "{e}");
        let c = Config::parse(
            "pickup_group = \"postdrop\"\npickup_mode = \"3770\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.pickup_group.as_deref(), Some("postdrop"));
        assert_eq!(c.pickup_mode.bits(), 0o3770);
        let printed = Config::parse(&c.to_toml(), Path::new("printed")).unwrap();
        assert_eq!(printed.pickup_mode, c.pickup_mode);
        assert_eq!(Config::default().pickup_mode.bits(), 0o1770);
        assert_eq!(Config::default().pickup_group, None);
    }

    #[test]
    fn smtpd_passwd_file() {
        let c = Config::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c.smtpd_passwd_file, PathBuf::from("/etc/ringmail/passwd"));
        let c = Config::parse("smtpd_passwd_file = \"/srv/p\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.smtpd_passwd_file, PathBuf::from("/srv/p"));
        for bad in ["", "/etc/ringmail/..", "/"] {
            let text = format!("# x\nsmtpd_passwd_file = {bad:?}\n");
            let e = Config::parse(&text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("c.toml:2: bad value for `smtpd_passwd_file`"),
                "{e}"
            );
        }
    }

    #[test]
    fn http_table_is_optional_and_checked() {
        assert_eq!(Config::parse("", Path::new("c.toml")).unwrap().http, None);
        let c = Config::parse("shards = 1\n[http]\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.http, Some(HttpConfig::default()));
        let text = "shards = 1\n\n[http]\nlisten = \"127.0.0.1:8080\"\n\
                    tokens = [{ token = \"abcdefghijklmnop0123\", scopes = [\"inject\", \"read\"] }]\n";
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        let http = c.http.clone().unwrap();
        assert_eq!(http.listen.port(), 8080);
        assert_eq!(http.tokens[0].scopes, [ApiScope::Inject, ApiScope::Read]);
        let printed = Config::parse(&c.to_toml(), Path::new("printed")).unwrap();
        assert_eq!(printed.http, c.http);
        let err = |t: &str| {
            Config::parse(t, Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("shards = 1\n\n[http]\nlisten = \"0.0.0.0:8025\"\n");
        assert!(
            e.starts_with("c.toml:3: bad value for `http`: listen 0.0.0.0:8025"),
            "{e}"
        );
        let e =
            err("[http]\ntokens = [{ token = \"abcdefghijklmnop0123\", scopes = [\"root\"] }]\n");
        assert!(e.starts_with("c.toml:2:") && e.contains("root"), "{e}");
        let e = err("[http]\nport = 80\n");
        assert!(e.starts_with("c.toml:2:") && e.contains("port"), "{e}");
    }

    #[test]
    fn events_table_is_optional_and_checked() {
        assert_eq!(Config::parse("", Path::new("c.toml")).unwrap().events, None);
        let c = Config::parse("shards = 1\n[events]\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.events, Some(EventsConfig::default()));
        let text = "shards = 1\n\n[events]\nkeep = 3\nfsync = \"none\"\n\
                    webhook_url = \"http://127.0.0.1:9000/ringmail\"\nwebhook_token = \"abc\"\n";
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        let events = c.events.clone().unwrap();
        assert_eq!((events.keep, events.fsync), (3, EventsFsync::None));
        let printed = Config::parse(&c.to_toml(), Path::new("printed")).unwrap();
        assert_eq!(printed.events, c.events);
        let err = |t: &str| {
            Config::parse(t, Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("shards = 1\n\n[events]\nwebhook_url = \"https://app.example/hook\"\n");
        assert!(
            e.starts_with("c.toml:3: bad value for `events`: webhook_url") && e.contains("https"),
            "{e}"
        );
        let e = err("[events]\nkeep = 0\n");
        assert!(e.starts_with("c.toml:1:") && e.contains("keep"), "{e}");
        let e = err("[events]\nfsync = \"always\"\n");
        assert!(e.starts_with("c.toml:2:") && e.contains("fsync"), "{e}");
        let e = err("[events]\nwebhook = \"x\"\n");
        assert!(e.starts_with("c.toml:2:") && e.contains("webhook"), "{e}");
    }

    #[test]
    fn readable_api_tokens_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        let text = "[http]\ntokens = [{ token = \"abcdefghijklmnop0123\", scopes = [\"read\"] }]\n";
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::parse(text, &file).unwrap();
        let w = credentials_warning(&c, &file).unwrap();
        assert!(w.contains("[http] API tokens"), "{w}");
        let no_tokens = Config::parse("[http]\n", &file).unwrap();
        assert_eq!(credentials_warning(&no_tokens, &file), None);
        let webhook = Config::parse(
            "[events]\nwebhook_url = \"http://127.0.0.1:9/h\"\nwebhook_token = \"t0k3n\"\n",
            &file,
        )
        .unwrap();
        let w = credentials_warning(&webhook, &file).unwrap();
        assert!(w.contains("an [events] webhook_token"), "{w}");
    }

    #[test]
    fn defaults_are_postfix_like() {
        let c = Config::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c.message_size_limit, 10_240_000);
        assert_eq!(c.spool_dir, PathBuf::from("/var/spool/ringmail"));
        assert_eq!(c.origin(), c.myhostname);
        assert!(c.shard_count() >= 1);
        // The printed config parses back.
        let again = Config::parse(&c.to_toml(), Path::new("printed")).unwrap();
        assert_eq!(again.spool_dir, c.spool_dir);
    }
}

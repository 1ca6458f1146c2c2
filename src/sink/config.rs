//! The sink's configuration: where it listens, how it answers, which faults
//! it injects.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::SinkError;

/// Everything the sink needs to run. [`SinkConfig::default`] listens on
/// 127.0.0.1 port 0 (an ephemeral port), accepts everything and offers
/// neither TLS nor AUTH.
#[derive(Clone)]
pub struct SinkConfig {
    /// Where to listen. The sink binds only here; the default is
    /// `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Announce PIPELINING in the EHLO reply. Pipelined commands are
    /// answered in order either way, as real servers do.
    pub pipelining: bool,
    /// Speak ESMTP. When false, EHLO is answered `502` (clients must fall
    /// back to HELO), MAIL and RCPT parameters are refused and replies carry
    /// no enhanced status codes.
    pub esmtp: bool,
    /// Connections beyond this many open at once are greeted with
    /// `421 4.7.0 <host> too many connections` (or
    /// [`SinkConfig::connection_cap_reply`]) and closed.
    pub max_connections: Option<usize>,
    /// The reply to a connection beyond `max_connections`, as a whole line
    /// (`421 4.7.0 text`; a 4xx or 5xx code, then the text), instead of the
    /// default.
    pub connection_cap_reply: Option<String>,
    /// Accept at most this many transactions per second (a token bucket
    /// shared by all connections); a MAIL over the rate gets the limit's
    /// reply. `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Injected failures.
    pub faults: Faults,
    /// Delay before each reply (including the greeting).
    pub latency: Latency,
    /// Seed for fault and latency draws; `None` seeds from the system.
    /// With a seed, the draws of the n-th accepted connection are the same
    /// from run to run.
    pub seed: Option<u64>,
    /// Write each accepted message here (see the module documentation for
    /// the format). `None` (the default) does no file I/O at all.
    pub dump_dir: Option<PathBuf>,
    /// Announced in EHLO as `SIZE n` and enforced: a larger `SIZE=` at MAIL
    /// or a larger message gets `552 5.3.4`. `None` announces plain `SIZE`.
    pub max_message_size: Option<u64>,
    /// Worker threads of the sink's own tokio runtime: 1 (the default) runs
    /// everything on one thread; more uses a multi-threaded runtime.
    pub threads: usize,
    /// Called for every accepted message, before its 250 reply is sent, on
    /// the sink's runtime thread (keep it short). For benchmarks that
    /// measure latency to acceptance.
    pub on_accept: Option<AcceptHook>,
    /// Offer STARTTLS (RFC 3207) with this server configuration (see
    /// [`super::tls_server_config`]). `None` (the default) offers no TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Require AUTH PLAIN or LOGIN with this `(user, password)` before
    /// MAIL (`530 5.7.0` otherwise). AUTH is offered only over TLS unless
    /// `auth_plaintext` is set.
    pub auth: Option<(String, String)>,
    /// Offer and accept AUTH before STARTTLS too.
    pub auth_plaintext: bool,
    /// Refuse commands pipelined after the end of DATA, as Haraka 3.3
    /// does: every command that arrived before the reply to the final dot
    /// was written gets `503 5.5.1 Bad sequence of commands - pipelined
    /// after end of DATA` and is not carried out.
    pub strict_pipelining: bool,
    /// Announce DSN (RFC 3461) and take NOTIFY, ORCPT, RET and ENVID.
    pub dsn: bool,
}

/// A message rate limit, as a provider's throttle: a token bucket checked
/// at each MAIL.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// Transactions per second allowed on average.
    pub per_second: f64,
    /// Tokens the bucket holds (transactions allowed at once after a quiet
    /// spell); at least 1.
    pub burst: f64,
    /// The reply to a MAIL over the rate, as a whole line: `421 4.7.28
    /// text` (a 421 also closes the connection, as Gmail does; any other
    /// 4xx or 5xx refuses the MAIL and the session goes on).
    pub reply: String,
}

impl RateLimit {
    /// `per_second` with a burst of one second's worth (at least 1) and a
    /// generic reply.
    pub fn per_second(per_second: f64) -> RateLimit {
        RateLimit {
            per_second,
            burst: per_second.max(1.0),
            reply: "421 4.7.0 Too many messages, slow down".to_string(),
        }
    }
}

/// A callback told about every accepted message.
pub type AcceptHook = Arc<dyn Fn(&Accepted<'_>) + Send + Sync>;

/// What an [`AcceptHook`] is told about one accepted message.
#[derive(Debug)]
pub struct Accepted<'a> {
    /// The number in the `queued as` reply (and the dump file name).
    pub number: u64,
    /// The envelope sender, without angle brackets (`""` for `<>`).
    pub mail_from: &'a str,
    /// The accepted recipients, without angle brackets.
    pub rcpt_to: &'a [String],
    /// Size of the message in bytes (dot-unstuffed).
    pub size: u64,
    /// The Message-ID header's value (`<...>`), if any.
    pub message_id: Option<&'a str>,
    /// The start of the message: its header section (up to and including
    /// the empty line, at most 64 KiB), or the whole message when
    /// `dump_dir` is set.
    pub head: &'a [u8],
    /// When the end of the message was received.
    pub at: SystemTime,
    /// It came over TLS.
    pub tls: bool,
    /// The user the client authenticated as, if it did.
    pub auth: Option<&'a str>,
}

/// Injected failures: probabilities from 0 to 1 (0 never, 1 always), and
/// a broken STARTTLS.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Per RCPT: `451 4.3.0` (checked before `rcpt_permfail`).
    pub rcpt_tempfail: f64,
    /// Per RCPT: `550 5.1.1`.
    pub rcpt_permfail: f64,
    /// Per message, after the end of DATA: `451 4.3.0` (checked before
    /// `data_permfail`).
    pub data_tempfail: f64,
    /// Per message, after the end of DATA: `554 5.6.0`.
    pub data_permfail: f64,
    /// Per transaction, at MAIL: answer `421 4.4.2` and close the connection.
    pub disconnect_421: f64,
    /// Announce STARTTLS (even without [`SinkConfig::tls`]), answer it
    /// `220`, then send garbage and close instead of a TLS handshake: for
    /// testing a client's fallback.
    pub tls_broken: bool,
}

impl Faults {
    /// True when no fault can happen.
    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }

    fn validate(&self) -> Result<(), SinkError> {
        let all = [
            ("rcpt_tempfail", self.rcpt_tempfail),
            ("rcpt_permfail", self.rcpt_permfail),
            ("data_tempfail", self.data_tempfail),
            ("data_permfail", self.data_permfail),
            ("disconnect_421", self.disconnect_421),
        ];
        for (name, p) in all {
            if !(0.0..=1.0).contains(&p) {
                return Err(SinkError::Config(format!(
                    "fault probability {name} = {p} is not between 0 and 1"
                )));
            }
        }
        Ok(())
    }
}

/// Delay before each reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// The same delay before every reply.
    Fixed(Duration),
    /// A delay drawn uniformly between the two bounds (inclusive lower,
    /// exclusive upper) before every reply.
    Uniform(Duration, Duration),
    /// A receiver this many milliseconds of round trip away: each batch of
    /// replies (everything answered by one read of pipelined commands) is
    /// sent this long after its commands arrived, once, whatever the
    /// number of replies in it. [`Latency::Fixed`] models a server that
    /// thinks before each reply; this models the network between.
    RoundTrip(Duration),
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            hostname: "localhost".to_string(),
            pipelining: true,
            esmtp: true,
            max_connections: None,
            connection_cap_reply: None,
            rate_limit: None,
            faults: Faults::default(),
            latency: Latency::None,
            seed: None,
            dump_dir: None,
            max_message_size: None,
            threads: 1,
            on_accept: None,
            tls: None,
            auth: None,
            auth_plaintext: false,
            strict_pipelining: false,
            dsn: false,
        }
    }
}

impl SinkConfig {
    /// Checks the values that cannot be checked by their types.
    pub fn validate(&self) -> Result<(), SinkError> {
        self.faults.validate()?;
        if self.hostname.is_empty()
            || self
                .hostname
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(SinkError::Config(format!(
                "hostname {:?} must be one non-empty word",
                self.hostname
            )));
        }
        if let Latency::Uniform(lo, hi) = self.latency {
            if lo > hi {
                return Err(SinkError::Config(format!(
                    "latency range {lo:?}..{hi:?} is reversed"
                )));
            }
        }
        if self.threads == 0 {
            return Err(SinkError::Config("threads must be at least 1".into()));
        }
        if self.max_connections == Some(0) {
            return Err(SinkError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if let Some(reply) = &self.connection_cap_reply {
            super::throttle::parse_reply(reply)?;
        }
        if let Some(limit) = &self.rate_limit {
            let sane = limit.per_second > 0.0
                && limit.per_second.is_finite()
                && limit.burst >= 1.0
                && limit.burst.is_finite();
            if !sane {
                return Err(SinkError::Config(format!(
                    "rate limit {} per second with burst {} (need a rate > 0 and a burst ≥ 1)",
                    limit.per_second, limit.burst
                )));
            }
            super::throttle::parse_reply(&limit.reply)?;
        }
        if let Some((user, _)) = &self.auth {
            if user.is_empty() {
                return Err(SinkError::Config("the AUTH user name is empty".into()));
            }
            if self.tls.is_none() && !self.auth_plaintext {
                return Err(SinkError::Config(
                    "AUTH needs TLS (a certificate and key) or auth_plaintext".into(),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("listen", &self.listen)
            .field("hostname", &self.hostname)
            .field("pipelining", &self.pipelining)
            .field("esmtp", &self.esmtp)
            .field("strict_pipelining", &self.strict_pipelining)
            .field("max_connections", &self.max_connections)
            .field("connection_cap_reply", &self.connection_cap_reply)
            .field("rate_limit", &self.rate_limit)
            .field("faults", &self.faults)
            .field("latency", &self.latency)
            .field("seed", &self.seed)
            .field("dump_dir", &self.dump_dir)
            .field("max_message_size", &self.max_message_size)
            .field("threads", &self.threads)
            .field("on_accept", &self.on_accept.as_ref().map(|_| "<hook>"))
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.as_ref().map(|(user, _)| user))
            .field("auth_plaintext", &self.auth_plaintext)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_loopback_ephemeral_and_valid() {
        let c = SinkConfig::default();
        assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap());
        c.validate().unwrap();
        assert!(c.faults.is_none());
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = SinkConfig::default();
        c.faults.rcpt_permfail = 1.5;
        assert!(c.validate().is_err());
        c.faults.rcpt_permfail = f64::NAN;
        assert!(c.validate().is_err());
        let mut c = SinkConfig {
            hostname: "two words".into(),
            ..SinkConfig::default()
        };
        assert!(c.validate().is_err());
        c.hostname = "ok".into();
        c.latency = Latency::Uniform(Duration::from_millis(2), Duration::from_millis(1));
        assert!(c.validate().is_err());
        c.latency = Latency::Fixed(Duration::from_millis(1));
        c.threads = 0;
        assert!(c.validate().is_err());
        let e = SinkConfig {
            max_connections: Some(0),
            ..SinkConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(!e.is_transient());
        let mut c = SinkConfig {
            auth: Some(("u".into(), "p".into())),
            ..SinkConfig::default()
        };
        assert!(c.validate().is_err(), "AUTH without TLS");
        c.auth_plaintext = true;
        c.validate().unwrap();
        c.auth = Some((String::new(), "p".into()));
        assert!(c.validate().is_err());
    }
}

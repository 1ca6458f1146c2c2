//! Wiring of the SMTP injection listeners: session settings from the
//! configuration, the password file, STARTTLS certificates, and the hooks
//! that take a received message through cleanup into the pickup ring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cleanup::date::rfc5322_date;
use crate::cleanup::{cleanup, CleanupOptions};
use crate::config::{Config, ListenerKind, Networks};
use crate::inject::smtpd::passwd::{PasswdError, PasswdFile};
use crate::inject::smtpd::{
    self, Hooks, Incoming, ListenerSpec, Offered, PrepareError, SmtpdError, SmtpdHandle,
    SmtpdSettings, Timeouts,
};
use crate::model::{Envelope, Submission};
use crate::proto::server::{AuthConfig, Limits, SessionConfig, SessionParams};
use crate::sign::SignStage;

/// Starts the configured listeners; `None` when there are none. `closed`
/// is set when the daemon stops taking mail; STARTTLS handshakes are
/// counted in `tls_counters`.
pub(super) fn start(
    config: &Config,
    ring: Arc<SignStage>,
    closed: Arc<AtomicBool>,
    local: Option<Arc<dyn crate::inject::smtpd::LocalMail>>,
    tls_counters: Arc<crate::obs::metrics::TlsCounters>,
) -> Result<Option<SmtpdHandle>, SmtpdError> {
    if config.listener.is_empty() {
        return Ok(None);
    }
    let users = match PasswdFile::load(&config.smtpd_passwd_file) {
        Ok(u) => Some(Arc::new(u)),
        Err(PasswdError::NotFound { .. }) => None,
        Err(e) => return Err(SmtpdError::Config(e.to_string())),
    };
    let mynetworks = Networks::parse(&config.mynetworks).map_err(SmtpdError::Config)?;
    let mut listeners = Vec::new();
    for l in &config.listener {
        let tls = match (&l.tls_cert, &l.tls_key) {
            (Some(cert), Some(key)) => Some(crate::rt::tls::server_config(cert, key).map_err(
                |(path, reason)| {
                    SmtpdError::Config(format!(
                        "listener {}: {}: {reason}",
                        l.address,
                        path.display()
                    ))
                },
            )?),
            _ => None,
        };
        let submission = l.kind == ListenerKind::Submission;
        if submission && users.is_none() {
            return Err(SmtpdError::Config(format!(
                "listener {} is a submission listener, which needs AUTH, but {} does not exist (add users with `ringmail passwd add USER`)",
                l.address,
                config.smtpd_passwd_file.display()
            )));
        }
        if submission && tls.is_none() && !l.auth_plaintext {
            return Err(SmtpdError::Config(format!(
                "listener {} is a submission listener: it needs tls_cert and tls_key (AUTH only over TLS), or auth_plaintext = true",
                l.address
            )));
        }
        let auth = users.as_ref().map(|_| AuthConfig {
            plaintext: l.auth_plaintext,
            required: submission,
        });
        let session = SessionConfig {
            hostname: config.myhostname.clone(),
            greeting: "ESMTP ringmail".into(),
            starttls: tls.is_some(),
            auth,
            limits: Limits {
                max_recipients: config.smtpd_recipient_limit,
                max_message_size: Some(config.message_size_limit),
                ..Limits::default()
            },
            ..SessionConfig::default()
        };
        listeners.push(ListenerSpec {
            address: l.address,
            kind: l.kind,
            params: Arc::new(SessionParams::new(session)),
            tls,
        });
    }
    let settings = SmtpdSettings {
        listeners,
        mynetworks,
        users,
        timeouts: Timeouts {
            command: Duration::from_secs(config.smtpd_timeout),
            data: Duration::from_secs(config.smtpd_data_timeout),
            tls_handshake: Duration::from_secs(config.smtpd_starttls_timeout),
        },
        max_connections: config.smtpd_max_connections,
        max_connections_per_client: config.smtpd_client_connection_limit,
    };
    let myhostname = config.myhostname.clone();
    let limit = config.message_size_limit;
    let received = config.smtpd_received_header;
    let hooks = Hooks {
        prepare: Box::new(move |m| prepare(m, &myhostname, limit, received)),
        offer: Box::new(move |sub| {
            if closed.load(Ordering::Acquire) {
                return Offered::Closed;
            }
            match ring.push(sub) {
                Ok(()) => Offered::Yes,
                Err(back) => Offered::Full(back),
            }
        }),
        local,
        tls_counters: Some(tls_counters),
    };
    smtpd::start(settings, hooks).map(Some)
}

/// A received message through cleanup: a `Received:` field first (as
/// Postfix's smtpd writes it, when `received` is set), duplicates among the
/// recipients dropped.
fn prepare(
    m: Incoming<'_>,
    myhostname: &str,
    limit: u64,
    received: bool,
) -> Result<Submission, PrepareError> {
    let now = chrono::Local::now();
    let protocol = match (m.tls, m.auth_user.is_some()) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    let (ip, helo) = (client_ip(m.client_name), m.helo);
    let tls = match &m.tls_summary {
        Some(t) => format!("\t(using {t})\r\n"),
        None => String::new(),
    };
    let mut message = if received {
        format!(
            "Received: from {helo} (unknown [{ip}])\r\n{tls}\tby {myhostname} (ringmail) with {protocol};\r\n\t{}\r\n",
            rfc5322_date(&now)
        )
        .into_bytes()
    } else {
        Vec::new()
    };
    message.extend_from_slice(m.content);
    let mut dsn = m.dsn;
    let mut recipients: Vec<String> = Vec::with_capacity(m.recipients.len());
    let mut rcpt_dsn = Vec::new();
    for (i, r) in m.recipients.iter().enumerate() {
        if recipients.iter().any(|seen| seen.eq_ignore_ascii_case(r)) {
            continue;
        }
        recipients.push(r.clone());
        if let Some(d) = dsn.rcpts.get(i) {
            rcpt_dsn.push(d.clone());
        }
    }
    if !dsn.rcpts.is_empty() {
        dsn.rcpts = rcpt_dsn;
    }
    let envelope = Envelope {
        sender: m.sender.to_string(),
        recipients,
    };
    let opts = CleanupOptions {
        myhostname,
        // The Received field is ours: it does not count against the client.
        message_size_limit: limit.saturating_add(message.len() as u64 - m.content.len() as u64),
        full_name: None,
        now,
    };
    let cleaned = cleanup(&message, &envelope, &opts).map_err(|e| {
        if e.is_transient() {
            PrepareError::Temporary(e.to_string())
        } else {
            PrepareError::Refused(e.to_string())
        }
    })?;
    Ok(Submission {
        envelope,
        wire: cleaned.wire,
        flags: cleaned.flags,
        dsn,
        message_id: cleaned.message_id,
        arrival_micros: crate::model::now_micros(),
        uid: 0,
        source: m.source,
        origin: crate::obs::metrics::Origin::Smtp,
        file_identity: None,
        campaign: None,
    })
}

/// The IP of `unknown[IP]`.
fn client_ip(name: &str) -> &str {
    name.rsplit_once('[')
        .map(|(_, rest)| rest.trim_end_matches(']'))
        .unwrap_or(name)
}

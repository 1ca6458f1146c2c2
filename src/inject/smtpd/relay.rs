//! The listener's policy: who may send. Everything ringmail accepts is
//! relayed, so the rule is Postfix's `permit_mynetworks,
//! permit_sasl_authenticated, reject`: a client in `mynetworks`, or one
//! that authenticated, may give recipients; anyone else gets `554 5.7.1`
//! at RCPT, and the attempt is logged.

use std::sync::Arc;

use crate::config::Networks;
use crate::model::dsn::RcptDsn;
use crate::proto::server::{Context, Decision, Reply, ServerPolicy};

use super::LocalMail;

/// The relay rule of one listener.
#[derive(Clone)]
pub struct RelayPolicy {
    /// Clients that may relay without AUTH; empty for submission
    /// listeners, where AUTH is always required.
    pub mynetworks: Arc<Networks>,
    /// `host[ip]` of the client, for the log line.
    pub client_name: String,
    /// Addresses handled here, accepted from anyone (never relayed).
    pub local: Option<Arc<dyn LocalMail>>,
}

impl RelayPolicy {
    fn is_local(&self, recipient: &str) -> bool {
        self.local.as_ref().is_some_and(|l| l.is_local(recipient))
    }
}

impl ServerPolicy for RelayPolicy {
    fn rcpt(&mut self, ctx: &Context<'_>, recipient: &str, _dsn: &RcptDsn) -> Decision {
        let local = self.is_local(recipient);
        // One kind per transaction: local mail is handled, not queued.
        if let Some(first) = ctx.recipients.first() {
            if self.is_local(first) != local {
                return Decision::Reject(Reply::new(
                    452,
                    "4.5.3",
                    "Error: send mail for this address in a separate transaction",
                ));
            }
        }
        if local {
            return Decision::Accept;
        }
        if ctx.auth_user.is_some() || ctx.client.is_some_and(|ip| self.mynetworks.contains(ip)) {
            return Decision::Accept;
        }
        tracing::info!(
            target: "smtpd",
            "NOQUEUE: reject: RCPT from {}: 554 5.7.1 <{recipient}>: Relay access denied; from=<{}> to=<{recipient}> helo=<{}>",
            self.client_name,
            ctx.sender.unwrap_or(""),
            ctx.helo.unwrap_or("")
        );
        Decision::Reject(Reply::new(
            554,
            "5.7.1",
            format!("<{recipient}>: Relay access denied"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(client: &str, auth: Option<&'static str>) -> Context<'static> {
        Context {
            client: Some(client.parse().unwrap()),
            helo: Some("c"),
            tls: false,
            auth_user: auth,
            sender: Some("a@b.test"),
            recipients: &[],
        }
    }

    #[test]
    fn mynetworks_or_auth_may_relay_others_may_not() {
        let nets = Networks::parse(&["127.0.0.1/32".into()]).unwrap();
        let mut p = RelayPolicy {
            mynetworks: Arc::new(nets),
            client_name: "unknown[127.0.0.2]".into(),
            local: Some(Arc::new(Ours)),
        };
        let dsn = RcptDsn::default();
        assert_eq!(
            p.rcpt(&ctx("127.0.0.1", None), "x@y.test", &dsn),
            Decision::Accept
        );
        assert_eq!(
            p.rcpt(&ctx("127.0.0.2", Some("u")), "x@y.test", &dsn),
            Decision::Accept
        );
        match p.rcpt(&ctx("127.0.0.2", None), "x@y.test", &dsn) {
            Decision::Reject(r) => assert_eq!(r.code, 554),
            other => panic!("{other:?}"),
        }
        // Local addresses from anyone; never mixed with relayed ones.
        assert_eq!(
            p.rcpt(&ctx("127.0.0.2", None), "bounces+t@b.test", &dsn),
            Decision::Accept
        );
        let first = ["bounces+t@b.test".to_string()];
        let mut c = ctx("127.0.0.1", None);
        c.recipients = &first;
        match p.rcpt(&c, "x@y.test", &dsn) {
            Decision::Reject(r) => assert_eq!(r.code, 452),
            other => panic!("{other:?}"),
        }
    }

    struct Ours;

    impl LocalMail for Ours {
        fn is_local(&self, recipient: &str) -> bool {
            recipient.starts_with("bounces+")
        }
        fn deliver(
            &self,
            _: &super::super::LocalMessage,
        ) -> Result<String, super::super::PrepareError> {
            Ok("done".into())
        }
    }
}

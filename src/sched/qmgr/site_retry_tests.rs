//! Unit tests of the retry delays per site (`site_retry.rs`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::retry::backoff;
use super::site_retry::RetryBounds;
use super::*;
use crate::config::Config;
use crate::deliver::DeliveryConfig;
use crate::shape::rules::{RuleOrigin, RuleSet};
use crate::shape::{Shaper, ShapingTable};

const RULES: &str = r#"
[[site]]
name = "slowsite"
mx = ["*.slow.test"]
min_retry = "30s"
max_retry = "45s"
"#;

/// A queue manager with shaping (the rules above over the shipped ones);
/// the configuration's backoff is 300 s .. 4000 s.
pub(super) fn qmgr_with_rules() -> (tempfile::TempDir, Qmgr, Arc<Shaper>) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    let config = Config::parse(
        "minimal_backoff_time = 300\nmaximal_backoff_time = 4000\n",
        Path::new("ringmail.toml"),
    )
    .unwrap();
    let user = RuleSet::parse(
        RULES,
        "shaping.toml",
        RuleOrigin::File {
            path: Arc::from(Path::new("shaping.toml")),
            line: 0,
        },
    )
    .unwrap();
    let table = ShapingTable::new(&config, RuleSet::shipped().unwrap(), Some(user)).unwrap();
    let shaper = Arc::new(Shaper::new(Arc::new(table)));
    let mut cfg = QmgrConfig::from_config(
        &config,
        1,
        DeliveryConfig::from_config(&config, crate::rt::IoBackend::Epoll),
    );
    cfg.shaper = Some(Arc::clone(&shaper));
    let router = Router::from_config(&config).unwrap();
    let qmgr = Qmgr::new(
        Rc::new(RefCell::new(store)),
        cfg,
        router,
        DestinationSlots::new(),
    );
    (dir, qmgr, shaper)
}

/// Adds destination `domain` whose MX host is `mx` (its site named by
/// the shaper, as `resolve_site` does).
pub(super) fn add_dest(qmgr: &Qmgr, shaper: &Shaper, domain: &str, mx: &str) -> DestKey {
    let hop = DestKey {
        hop: Nexthop {
            host: domain.to_string(),
            port: 25,
            mx_lookup: true,
        },
        source: None,
    };
    let mut st = qmgr.state.borrow_mut();
    let policy = Rc::new(st.router.policy(&hop.hop));
    st.dests.insert(
        hop.clone(),
        Dest {
            jobs: VecDeque::new(),
            ready: Rc::new(Notify::new()),
            active: 0,
            job_waits: Rc::default(),
            window: 1.0,
            dead_until: None,
            policy,
            site: Some(shaper.site_for(domain, &[mx]).key),
            hosts: None,
            domain: Some(domain.to_string()),
            resolving: false,
            last_used: Instant::now(),
            limits: RefCell::new(None),
            ramping: true,
            counters: RefCell::new(None),
        },
    );
    hop
}

#[test]
fn a_sites_retry_rules_win_over_the_configuration() {
    let (_dir, qmgr, shaper) = qmgr_with_rules();
    let slow = add_dest(&qmgr, &shaper, "a.example", "mx.slow.test");
    let plain = add_dest(&qmgr, &shaper, "b.example", "mx.plain.test");
    let st = qmgr.state.borrow();
    let rule = RetryBounds {
        min: Duration::from_secs(30),
        max: Duration::from_secs(45),
    };
    let global = RetryBounds {
        min: Duration::from_secs(300),
        max: Duration::from_secs(4000),
    };
    assert_eq!(st.hop_retry_bounds(&slow), rule);
    // No rule sets them: the configuration's.
    assert_eq!(st.hop_retry_bounds(&plain), global);
    assert_eq!(RetryBounds::global(&st.cfg), global);
    // The delays the rule gives: 30 s, 60 s capped at 45 s, ±20 %.
    assert_eq!(backoff(rule.min, rule.max, 1, 0.5), Duration::from_secs(30));
    assert_eq!(backoff(rule.min, rule.max, 3, 0.5), Duration::from_secs(45));
    assert_eq!(backoff(rule.min, rule.max, 9, 1.0), Duration::from_secs(54));
}

#[test]
fn a_message_deferred_at_several_sites_takes_the_shortest_delays() {
    let (_dir, qmgr, shaper) = qmgr_with_rules();
    let slow = add_dest(&qmgr, &shaper, "a.example", "mx.slow.test");
    let plain = add_dest(&qmgr, &shaper, "b.example", "mx.plain.test");
    let id = QueueId::new(0, 7);
    let deferred = [RcptResult::deferred("4.0.0", "try later".to_string())];
    let mut st = qmgr.state.borrow_mut();
    st.msgs.insert(id, MsgState::default());
    // Nothing deferred: the configuration's.
    let global = RetryBounds::global(&st.cfg);
    assert_eq!(st.take_retry_bounds(id), global);
    let b = st.hop_retry_bounds(&plain);
    st.note_retry_bounds(id, &deferred, b);
    let b = st.hop_retry_bounds(&slow);
    st.note_retry_bounds(id, &deferred, b);
    assert_eq!(
        st.take_retry_bounds(id),
        RetryBounds {
            min: Duration::from_secs(30),
            max: Duration::from_secs(45),
        }
    );
    // Taken: the next pass starts again from the configuration's.
    assert_eq!(st.take_retry_bounds(id), global);
    // A sent recipient does not count.
    let b = st.hop_retry_bounds(&slow);
    st.note_retry_bounds(id, &[], b);
    assert_eq!(st.take_retry_bounds(id), global);
}

//! Unit tests of the queue manager.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::delays::fmt_secs;
use super::outgoing::delivery_flags;
use super::retry::backoff;
use super::*;
use crate::config::Config;
use crate::deliver::DeliveryConfig;
use crate::model::{BodyType, MessageFlags};

/// A notice appended while a commit's fdatasync runs is not durable
/// when that commit returns: `after_commit` must leave it (and the
/// statuses waiting for it) for the next commit.
#[test]
fn after_commit_acts_only_on_what_the_commit_covered() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    let config = Config::default();
    let cfg = QmgrConfig::from_config(
        &config,
        1,
        DeliveryConfig::from_config(&config, crate::rt::IoBackend::Epoll),
    );
    let qmgr = Qmgr::new(
        Rc::new(RefCell::new(store)),
        cfg,
        Router::from_config(&config).unwrap(),
        DestinationSlots::new(),
    );
    let (a, b) = (QueueId::new(0, 1), QueueId::new(0, 2));
    {
        let mut st = qmgr.state.borrow_mut();
        st.new_notices.push(a);
        st.after_commit.push((a, 0, RcptStatus::Bounced));
    }
    qmgr.before_commit();
    {
        // Appended during the fdatasync.
        let mut st = qmgr.state.borrow_mut();
        st.new_notices.push(b);
        st.after_commit.push((b, 0, RcptStatus::Sent));
    }
    qmgr.after_commit();
    {
        let st = qmgr.state.borrow();
        assert_eq!(st.new_notices, vec![b]);
        assert_eq!(st.after_commit, vec![(b, 0, RcptStatus::Sent)]);
        assert!(st.committing.0.is_empty() && st.committing.1.is_empty());
    }
    assert!(qmgr.has_pending());
    // A failed commit keeps what it covered for the next one.
    qmgr.before_commit();
    assert!(qmgr.has_pending());
    qmgr.before_commit();
    assert_eq!(qmgr.state.borrow().committing.1, vec![b]);
    qmgr.after_commit();
    assert!(!qmgr.has_pending());
}

#[test]
fn a_declared_8bit_body_is_sent_as_8bitmime() {
    let plain = MessageFlags::default();
    let eight = MessageFlags(MessageFlags::BODY_8BIT);
    let body8 = |f: MessageFlags| f.has(MessageFlags::BODY_8BIT);
    assert!(body8(delivery_flags(plain, Some(BodyType::EightBitMime))));
    assert!(!body8(delivery_flags(plain, Some(BodyType::SevenBit))));
    assert!(!body8(delivery_flags(plain, None)));
    assert!(body8(delivery_flags(eight, Some(BodyType::SevenBit))));
}

#[test]
fn backoff_doubles_is_capped_and_jittered() {
    let (min, max) = (Duration::from_secs(300), Duration::from_secs(4000));
    let mid = |n| backoff(min, max, n, 0.5).as_secs_f64();
    assert_eq!(mid(1), 300.0);
    assert_eq!(mid(2), 600.0);
    assert_eq!(mid(4), 2400.0);
    assert_eq!(mid(5), 4000.0);
    assert_eq!(mid(60), 4000.0);
    assert_eq!(backoff(min, max, 1, 0.0).as_secs_f64(), 240.0);
    assert_eq!(backoff(min, max, 1, 1.0).as_secs_f64(), 360.0);
}

#[test]
fn delay_format_matches_postfix_style() {
    assert_eq!(fmt_secs(0.0), "0");
    assert_eq!(fmt_secs(0.044), "0.04");
    assert_eq!(fmt_secs(0.44), "0.4");
    assert_eq!(fmt_secs(27.3), "27");
    assert_eq!(fmt_secs(1.0), "1");
    assert_eq!(fmt_secs(2.25), "2.3");
    assert_eq!(fmt_secs(9.97), "10");
    assert_eq!(fmt_secs(0.0999), "0.10");
    assert_eq!(fmt_secs(0.005), "0.01");
    assert_eq!(fmt_secs(0.004), "0");
    assert_eq!(fmt_secs(-1.0), "0");
    assert_eq!(fmt_secs(f64::NAN), "0");
    assert_eq!(fmt_secs(4000.4), "4000");
}

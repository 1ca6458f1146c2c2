//! Unit tests of slow start's ramp (`feedback.rs`).

use super::site_retry_tests::{add_dest, qmgr_with_rules};
use super::*;

fn window(qmgr: &Qmgr, hop: &DestKey) -> f64 {
    qmgr.state.borrow().dests.get(hop).map_or(0.0, |d| d.window)
}

#[test]
fn a_new_connection_widens_the_window_while_ramping_only() {
    let (_dir, qmgr, shaper) = qmgr_with_rules();
    let hop = add_dest(&qmgr, &shaper, "a.example", "mx.plain.test");
    assert_eq!(window(&qmgr, &hop), 1.0);
    qmgr.connected(&hop);
    qmgr.connected(&hop);
    assert_eq!(window(&qmgr, &hop), 3.0, "one more per connection set up");
    qmgr.feedback(&hop, true);
    assert_eq!(window(&qmgr, &hop), 4.0, "and one more per transaction");

    // Never above the site's connection limit.
    let limit = qmgr
        .state
        .borrow()
        .site_limits(&hop)
        .map(|l| l.max_connections() as f64)
        .expect("a site");
    if let Some(d) = qmgr.state.borrow_mut().dests.get_mut(&hop) {
        d.window = limit;
    }
    qmgr.connected(&hop);
    assert_eq!(window(&qmgr, &hop), limit, "capped by the site's limit");

    // After the first failure, connecting is no success of its own.
    qmgr.feedback(&hop, false);
    let after = window(&qmgr, &hop);
    assert!(after < limit);
    qmgr.connected(&hop);
    assert_eq!(
        window(&qmgr, &hop),
        after,
        "the ramp ended with the failure"
    );
}

//! Unit tests of the waiting lists of the connection cache (`reuse.rs`).

use super::site_retry_tests::{add_dest, qmgr_with_rules};
use super::*;

#[test]
fn waiting_destinations_are_listed_once_and_pruned_with_their_destination() {
    let (_dir, qmgr, shaper) = qmgr_with_rules();
    let a = add_dest(&qmgr, &shaper, "a.example", "mx.slow.test");
    let b = add_dest(&qmgr, &shaper, "b.example", "mx.slow.test");
    let mut st = qmgr.state.borrow_mut();
    st.note_waiting(&a);
    st.note_waiting(&a);
    st.note_waiting(&b);
    assert_eq!(st.waiting_set.len(), 2);
    assert_eq!(
        st.waiting.values().map(VecDeque::len).sum::<usize>(),
        2,
        "one pool (the site), each destination once"
    );
    // b is evicted: pruning forgets it, a stays.
    st.dests.remove(&b);
    st.prune_waiting();
    assert!(st.waiting_set.contains(&a) && !st.waiting_set.contains(&b));
    assert_eq!(st.waiting.values().map(VecDeque::len).sum::<usize>(), 1);
    st.dests.remove(&a);
    st.prune_waiting();
    assert!(st.waiting.is_empty() && st.waiting_set.is_empty());
}

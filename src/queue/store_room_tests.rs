//! Tests of the store on a full disk and across restarts: continuing the
//! last segment, refusing new mail while no segment can be created, the
//! reserve for the queue manager's records.

use super::tests::{sub, sync};
use super::*;
use crate::queue::room::fail::{CREATES, DISK_FULL};
use std::time::Duration;

fn disk_full(full: bool) {
    DISK_FULL.with(|f| f.set(full));
}

fn creates() -> usize {
    CREATES.with(|c| c.get())
}

fn seg_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A restart appends to the last segment where it left off: no new
/// file, and everything (old and new) is recovered by the next start,
/// with queue IDs that keep growing.
#[test]
fn a_restart_continues_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!(report.continued, None, "nothing to continue yet");
    let first: Vec<_> = (0..3).map(|i| store.append(&sub(i, 1)).unwrap()).collect();
    store.set_status(first[0], 0, RcptStatus::Sent).unwrap();
    sync(&mut store);
    drop(store);
    let files = seg_paths(dir.path());
    assert_eq!(files.len(), 1);
    let (mut store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!(report.continued.as_deref(), Some(files[0].as_path()));
    assert_eq!(report.messages, 2);
    let second: Vec<_> = (3..6).map(|i| store.append(&sub(i, 1)).unwrap()).collect();
    assert!(second[0] > first[2], "IDs keep growing");
    sync(&mut store);
    drop(store);
    assert_eq!(seg_paths(dir.path()), files, "no segment was created");
    let (store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!(report.messages, 5);
    for id in first[1..].iter().chain(&second) {
        assert!(store.get(*id).is_some(), "{id}");
    }
}

/// Every message of the last segment delivered: it is kept (and
/// continued) rather than deleted and created again, so a start needs
/// no disk space and the queue ID sequence lives on in its records.
#[test]
fn a_delivered_last_segment_is_kept_and_continued() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    // Queue IDs far ahead of the clock, as after a burst.
    store.next_seq += 1 << 30;
    let ids: Vec<_> = (0..4).map(|i| store.append(&sub(i, 1)).unwrap()).collect();
    for id in &ids {
        store.set_status(*id, 0, RcptStatus::Sent).unwrap();
    }
    sync(&mut store);
    drop(store);
    disk_full(true);
    let opened = Store::open(dir.path(), 0, 1, 1 << 20);
    disk_full(false);
    let (mut store, report) = opened.unwrap();
    assert_eq!((report.messages, report.segments_removed), (0, 0));
    assert!(report.continued.is_some());
    let next = store.append(&sub(9, 1)).unwrap();
    assert!(next > ids[3], "{next} after {}", ids[3]);
    assert_eq!(seg_paths(dir.path()).len(), 1);
}

/// A last segment with a torn record is never appended to: it is kept
/// sealed and a new segment takes the appends; once that exists the
/// old one (nothing live in it) is deleted.
#[test]
fn a_torn_last_segment_is_not_continued() {
    let dir = tempfile::tempdir().unwrap();
    let last_off;
    {
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        store.append(&sub(0, 1)).unwrap();
        let id = store.append(&sub(1, 1)).unwrap();
        last_off = store.index[&id].loc.offset as usize;
        sync(&mut store);
    }
    let torn_path = seg_paths(dir.path())[0].clone();
    let mut bytes = std::fs::read(&torn_path).unwrap();
    bytes[last_off + 30..last_off + 60].fill(0);
    std::fs::write(&torn_path, &bytes).unwrap();
    let (mut store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!((report.torn, report.messages), (1, 1));
    assert_eq!(report.continued, None);
    store.append(&sub(2, 1)).unwrap();
    sync(&mut store);
    assert_eq!(std::fs::read(&torn_path).unwrap(), bytes, "not written to");
    assert_eq!(seg_paths(dir.path()).len(), 2);
    // Nothing live is left in the torn one: it goes once delivered.
    let live: Vec<_> = store.ids().collect();
    let old = live
        .into_iter()
        .find(|id| store.index[id].loc.seg == 0)
        .unwrap();
    store.set_status(old, 0, RcptStatus::Sent).unwrap();
    assert_eq!(seg_paths(dir.path()).len(), 1);
    assert!(!torn_path.exists());
}

/// Bytes after the end marker (pages of an unfinished write that
/// reached the disk out of order before a power loss): a record
/// appended in front of them could make recovery walk on into them,
/// so the segment is not continued.
#[test]
fn bytes_after_the_end_marker_stop_the_segment_being_continued() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        store.append(&sub(0, 1)).unwrap();
        sync(&mut store);
    }
    let path = seg_paths(dir.path())[0].clone();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"leftover", 300_000).unwrap();
    drop(f);
    let (mut store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!((report.messages, report.torn), (1, 0));
    assert_eq!(report.continued, None);
    store.append(&sub(1, 1)).unwrap();
    sync(&mut store);
    assert_eq!(seg_paths(dir.path()).len(), 2, "a new segment was created");
}

/// A full disk with nothing to continue: the store opens, delivery
/// statuses are written in place, appends fail with `NoRoom` and try
/// to create a segment at most once per retry interval; once there is
/// room, appends work again.
#[test]
fn a_full_disk_refuses_appends_until_a_segment_can_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let queued: Vec<_> = {
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        // Five of 300 kB: two segments.
        let mut v = vec![];
        for i in 0..5 {
            let mut s = sub(i, 1);
            s.wire = vec![b'x'; 300_000];
            v.push(store.append(&s).unwrap());
        }
        sync(&mut store);
        v
    };
    // Make the last segment one that cannot be continued.
    let last = seg_paths(dir.path()).pop().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .and_then(|f| {
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"x", (1 << 20) - 1)
        })
        .unwrap();
    disk_full(true);
    let before = creates();
    let (mut store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!(report.messages, 5);
    assert_eq!(creates() - before, 1, "one attempt at start");
    store.room.retry = Duration::from_secs(3600);
    for i in 0..100 {
        let e = store.append(&sub(i, 1)).unwrap_err();
        assert!(e.is_no_room() && e.is_transient(), "{e}");
        assert!(e.to_string().contains("No space left on device"), "{e}");
    }
    assert!(store.append_defer(queued[0], 0, 0, "later").is_err());
    assert_eq!(creates() - before, 1, "no attempt within the interval");
    assert!(store.room.lacking());
    // Delivery goes on: statuses are set in place and committed.
    for id in &queued {
        store.set_status(*id, 0, RcptStatus::Sent).unwrap();
    }
    sync(&mut store);
    assert_eq!(store.len(), 0);
    disk_full(false);
    assert!(
        store.append(&sub(7, 1)).is_err(),
        "still within the interval"
    );
    store.room.retry = Duration::ZERO;
    let id = store.append(&sub(7, 1)).unwrap();
    assert!(!store.room.lacking());
    sync(&mut store);
    drop(store);
    let (store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!(report.messages, 1);
    assert!(store.get(id).is_some());
}

/// A full disk with room left in the continued segment: new mail uses
/// it up to the reserve, then is refused; notices and defer records
/// use the reserve; then they are refused too. Nothing is created.
#[test]
fn new_mail_leaves_the_reserve_to_notices_and_defer_records() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        let id = store.append(&sub(0, 1)).unwrap();
        sync(&mut store);
        id
    };
    disk_full(true);
    let (mut store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert!(report.continued.is_some());
    let reserve = intake_reserve(1 << 20);
    assert_eq!(reserve, 256 << 10);
    let big = |i| {
        let mut s = sub(i, 1);
        s.wire = vec![b'x'; 50_000];
        s
    };
    let mut n = 0;
    let refused = loop {
        match store.append(&big(n)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(refused.is_no_room(), "{refused}");
    let active = store.active.unwrap();
    let free = store.seg_free(active);
    assert!(free >= reserve && free < reserve + 51_000, "{free}");
    let mut notices = 0;
    while store.append_notice(&big(100 + notices)).is_ok() {
        notices += 1;
    }
    // About 50,100 bytes each, in at least the reserve and less than
    // the reserve plus one message.
    assert!(
        (reserve / 50_200..=(reserve + 51_000) / 50_000).contains(&notices),
        "notices fill the reserve: {notices}"
    );
    let mut defers = 0;
    while store.append_defer(first, 0, 0, "try again later").is_ok() {
        defers += 1;
    }
    assert!(defers > 10, "{defers}");
    disk_full(false);
    assert_eq!(seg_paths(dir.path()).len(), 1);
    sync(&mut store);
    drop(store);
    let (_, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!(report.messages, 1 + n + notices);
}

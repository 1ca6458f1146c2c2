//! Tests of the list as a whole, on real files in temp directories.

use std::fs;
use std::io::Write;

use super::*;

fn open(dir: &tempfile::TempDir) -> SuppressionList {
    SuppressionList::open(dir.path()).unwrap()
}

fn entry(address: &str, scope: Scope, kind: ReasonKind) -> Entry {
    Entry::new(address, scope, Reason::new(kind, "")).unwrap()
}

fn global(address: &str) -> Entry {
    entry(address, Scope::Global, ReasonKind::Manual)
}

fn news() -> Scope {
    Scope::SenderDomain("news.example".into())
}

fn journal_text(list: &SuppressionList) -> String {
    fs::read_to_string(list.journal_path()).unwrap()
}

#[test]
fn no_journal_is_an_empty_list_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = open(&dir);
    assert!(list.is_empty());
    assert!(list.refresh().unwrap().entries == 0);
    assert!(list.is_suppressed("a@x.example", "news.example").is_none());
    assert!(!list.remove("a@x.example", &Scope::Global).unwrap());
    assert!(!dir.path().join("suppress").exists());
}

#[test]
fn adds_are_case_insensitive_and_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = open(&dir);
    assert_eq!(list.add(global("Ann@X.Example")).unwrap(), Outcome::Added);
    let scoped = entry("bob@x.example", news(), ReasonKind::Unsubscribe);
    assert_eq!(list.add(scoped.clone()).unwrap(), Outcome::Added);
    // Already there: nothing written, the first entry kept.
    let again = entry("ANN@x.example", Scope::Global, ReasonKind::Bounce);
    match list.add(again).unwrap() {
        Outcome::AlreadyPresent(e) => assert_eq!(e.reason.kind, ReasonKind::Manual),
        other => panic!("{other:?}"),
    }
    assert_eq!(list.journal_lines(), 3, "{}", journal_text(&list));

    assert!(list.is_suppressed("ann@x.example", "").is_some());
    assert!(list
        .is_suppressed("<ANN@X.EXAMPLE>", "shop.example")
        .is_some());
    assert_eq!(
        list.is_suppressed("Bob@x.example", "NEWS.example"),
        Some(scoped)
    );
    assert!(list
        .is_suppressed("bob@x.example", "@news.example")
        .is_some());
    assert!(list
        .is_suppressed("bob@x.example", "shop.example")
        .is_none());
    assert!(list.is_suppressed("bob@x.example", "").is_none());

    // Removing the global entry does not touch a scoped one, and back.
    assert!(!list.remove("bob@x.example", &Scope::Global).unwrap());
    assert!(list.remove("BOB@x.example", &news()).unwrap());
    assert!(list
        .is_suppressed("bob@x.example", "news.example")
        .is_none());
    assert_eq!(list.len(), 1);

    // A fresh load sees the same.
    let mut again = open(&dir);
    let all: Vec<Entry> = again.list().iter().collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].address, "ann@x.example");
    let text = journal_text(&again);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with(" # ringmail-suppress 1"),
        "{text}"
    );
    assert!(again.take_notices().is_empty());
}

#[test]
fn a_batch_sees_its_own_changes_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = open(&dir);
    let out = list
        .apply(&[
            Change::Add(global("a@x.example")),
            Change::Add(global("A@x.example")),
            Change::Remove {
                address: "a@x.example".into(),
                scope: Scope::Global,
            },
            Change::Remove {
                address: "a@x.example".into(),
                scope: Scope::Global,
            },
            Change::Add(global("a@x.example")),
        ])
        .unwrap();
    assert!(matches!(
        out.as_slice(),
        [
            Outcome::Added,
            Outcome::AlreadyPresent(_),
            Outcome::Removed,
            Outcome::NotPresent,
            Outcome::Added
        ]
    ));
    assert_eq!(list.len(), 1);
    assert_eq!(list.journal_lines(), 4);
    let lines = list.journal_lines();
    let mut bad = global("b@x.example");
    bad.address = "no domain".into();
    let e = list
        .apply(&[Change::Add(global("c@x.example")), Change::Add(bad)])
        .unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert_eq!(list.journal_lines(), lines);
    assert!(list.is_suppressed("c@x.example", "").is_none());
    let mut bad_scope = global("d@x.example");
    bad_scope.scope = Scope::SenderDomain(" ".into());
    assert!(matches!(
        list.add(bad_scope),
        Err(SuppressError::BadScope { .. })
    ));
}

#[test]
fn damaged_lines_are_skipped_and_reported_and_a_torn_tail_is_cut_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = open(&dir);
    for a in ["a@x.example", "b@x.example", "c@x.example"] {
        list.add(global(a)).unwrap();
    }
    let path = list.journal_path().to_path_buf();
    // Line 3 (b) gets a flipped byte; a torn line is left at the end.
    let text = fs::read_to_string(&path).unwrap();
    let damaged = text.replacen("b@x.example", "b@y.example", 1);
    fs::write(&path, format!("{damaged}0badf00d + * torn@x.exam")).unwrap();

    let mut fresh = open(&dir);
    assert!(fresh.is_suppressed("a@x.example", "").is_some());
    assert!(fresh.is_suppressed("b@x.example", "").is_none());
    assert!(fresh.is_suppressed("b@y.example", "").is_none());
    assert!(fresh.is_suppressed("c@x.example", "").is_some());
    assert_eq!(
        fresh.take_notices(),
        [
            Notice::BadLine {
                line: 3,
                reason: "checksum mismatch"
            },
            Notice::TornTail { line: 5, bytes: 24 }
        ]
    );
    // Reported once, not at every refresh.
    fresh.refresh().unwrap();
    assert!(fresh.take_notices().is_empty());

    // The next writer cuts the torn tail and appends after it.
    fresh.add(global("d@x.example")).unwrap();
    assert_eq!(
        fresh.take_notices(),
        [Notice::TornTailCut { line: 5, bytes: 24 }]
    );
    let after = open(&dir);
    assert_eq!(after.len(), 3);
    assert!(after.is_suppressed("d@x.example", "").is_some());
    assert!(!fs::read_to_string(&path).unwrap().contains("torn"));
}

#[test]
fn refresh_sees_appends_and_a_compaction_by_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut reader = open(&dir);
    let mut writer = open(&dir);
    writer.add(global("a@x.example")).unwrap();
    let r = reader.refresh().unwrap();
    assert!(r.reloaded, "the journal appeared");
    assert!(reader.is_suppressed("a@x.example", "").is_some());
    writer.add(global("b@x.example")).unwrap();
    writer.remove("a@x.example", &Scope::Global).unwrap();
    let r = reader.refresh().unwrap();
    assert_eq!((r.reloaded, r.lines, r.entries), (false, 2, 1));
    assert!(reader.is_suppressed("a@x.example", "").is_none());
    let r = reader.refresh().unwrap();
    assert_eq!((r.reloaded, r.lines), (false, 0));

    let c = writer.compact().unwrap();
    assert_eq!(
        c,
        Compacted {
            lines_before: 4,
            lines_after: 2
        }
    );
    writer.add(global("c@x.example")).unwrap();
    let r = reader.refresh().unwrap();
    assert_eq!((r.reloaded, r.lines, r.entries), (true, 3, 2));
    assert!(reader.is_suppressed("c@x.example", "").is_some());
    // The reader can write after the switch, and the writer sees it.
    reader.add(global("d@x.example")).unwrap();
    writer.refresh().unwrap();
    assert_eq!(writer.len(), 3);

    // A removed journal is an empty list.
    fs::remove_file(writer.journal_path()).unwrap();
    let r = reader.refresh().unwrap();
    assert_eq!((r.reloaded, r.entries), (true, 0));
}

#[test]
fn compaction_keeps_exactly_the_live_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = open(&dir);
    let changes: Vec<Change> = (0..300)
        .map(|i| {
            let scope = if i % 3 == 0 { news() } else { Scope::Global };
            let mut e = entry(&format!("u{i}@x.example"), scope, ReasonKind::Bounce);
            e.reason.detail = format!("550 user {i} unknown");
            e.campaign = (i % 2 == 0).then_some(i);
            Change::Add(e)
        })
        .collect();
    list.apply(&changes).unwrap();
    for i in (0..300).step_by(4) {
        let scope = if i % 3 == 0 { news() } else { Scope::Global };
        assert!(list.remove(&format!("u{i}@x.example"), &scope).unwrap());
    }
    let before: Vec<Entry> = list.list().iter().collect();
    assert_eq!(before.len(), 225);
    let c = list.compact().unwrap();
    assert_eq!(c.lines_before, 1 + 300 + 75);
    assert_eq!(c.lines_after, 1 + 225);
    assert_eq!(list.journal_lines(), 226);
    let after: Vec<Entry> = open(&dir).list().iter().collect();
    assert_eq!(after, before);
    assert_eq!(
        fs::read_to_string(list.journal_path())
            .unwrap()
            .lines()
            .count(),
        226
    );
    let names: Vec<_> = fs::read_dir(dir.path().join("suppress"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["journal"]);
}

#[test]
fn writers_compact_when_the_journal_outgrows_the_live_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = open(&dir);
    list.set_compact_slack(10);
    list.add(global("keep@x.example")).unwrap();
    let mut compacted = Vec::new();
    for i in 0..8 {
        let a = format!("gone{i}@x.example");
        list.add(global(&a)).unwrap();
        list.remove(&a, &Scope::Global).unwrap();
        compacted.extend(
            list.take_notices()
                .into_iter()
                .filter(|n| matches!(n, Notice::Compacted(_))),
        );
    }
    // Header, keep, and 2 lines a round: after the sixth round's remove,
    // 14 lines > 2 * 1 + 10, and the journal becomes header and keep.
    assert_eq!(
        compacted,
        [Notice::Compacted(Compacted {
            lines_before: 14,
            lines_after: 2
        })]
    );
    assert_eq!(list.journal_lines(), 2 + 2 * 2);
    assert_eq!(open(&dir).len(), 1);
}

#[test]
fn export_then_import_reproduces_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = open(&dir);
    let mut e = entry("ann@x.example", news(), ReasonKind::Bounce);
    e.reason.detail = "550 5.1.1, \"no such user\"".into();
    e.campaign = Some(12);
    e.added = 1_700_000_000;
    list.add(e).unwrap();
    list.add(global("bob@x.example")).unwrap();
    let mut csv = Vec::new();
    assert_eq!(list.export(&mut csv).unwrap(), 2);
    let text = String::from_utf8(csv.clone()).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("email,scope,reason,detail,added,campaign")
    );
    assert_eq!(
        lines.next(),
        Some("ann@x.example,news.example,bounce,\"550 5.1.1, \"\"no such user\"\"\",1700000000,12")
    );
    assert!(lines
        .next()
        .unwrap()
        .starts_with("bob@x.example,global,manual,,"));

    let other = tempfile::tempdir().unwrap();
    let mut copy = open(&other);
    let report = copy
        .import(csv.as_slice(), &ImportOptions::default())
        .unwrap();
    assert_eq!((report.rows, report.added, report.already), (2, 2, 0));
    assert!(report.bad.is_empty());
    let a: Vec<Entry> = list.list().iter().collect();
    let b: Vec<Entry> = copy.list().iter().collect();
    assert_eq!(a, b);
    // Again: all there already.
    let report = copy
        .import(csv.as_slice(), &ImportOptions::default())
        .unwrap();
    assert_eq!((report.added, report.already), (0, 2));
}

#[test]
fn a_journal_of_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = open(&dir);
    list.add(global("a@x.example")).unwrap();
    let path = list.journal_path().to_path_buf();
    let mut v2 = Vec::new();
    let payload = b"# ringmail-suppress 2";
    write!(v2, "{:08x} ", crc32c::crc32c(payload)).unwrap();
    v2.extend_from_slice(payload);
    v2.push(b'\n');
    fs::write(&path, v2).unwrap();
    assert!(matches!(
        SuppressionList::open(dir.path()),
        Err(SuppressError::Version { .. })
    ));
    // A running reader keeps what it had.
    assert!(matches!(list.refresh(), Err(SuppressError::Version { .. })));
    assert!(list.is_suppressed("a@x.example", "").is_some());
}

#[test]
fn writers_racing_with_compactions_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writers: Vec<_> = ["p", "q"]
        .into_iter()
        .map(|who| {
            let spool = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let mut list = SuppressionList::open(&spool).unwrap();
                list.set_compact_slack(0);
                let mut compactions = 0;
                for i in 0..100 {
                    let gone = format!("{who}-gone{i}@x.example");
                    list.add(global(&format!("{who}{i}@x.example"))).unwrap();
                    list.add(global(&gone)).unwrap();
                    assert!(list.remove(&gone, &Scope::Global).unwrap());
                    for n in list.take_notices() {
                        assert!(matches!(n, Notice::Compacted(_)), "{n}");
                        compactions += 1;
                    }
                }
                compactions
            })
        })
        .collect();
    let compactions: u32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(compactions > 2, "{compactions} compactions");
    let mut list = open(&dir);
    assert!(list.take_notices().is_empty());
    let mut expected: Vec<String> = ["p", "q"]
        .iter()
        .flat_map(|w| (0..100).map(move |i| format!("{w}{i}@x.example")))
        .collect();
    expected.sort();
    let got: Vec<String> = list.list().iter().map(|e| e.address).collect();
    assert_eq!(got, expected);
}

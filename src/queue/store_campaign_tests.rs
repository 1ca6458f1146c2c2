//! Campaign records in the store: stored once per shard, slices indexed as
//! messages, recovery after a restart, and segment collection once every
//! slice is done.

use std::sync::Arc;

use super::tests::sync;
use super::*;
use crate::model::{CampaignSpec, SliceRow, Source};

fn spec(id: u64) -> Arc<CampaignSpec> {
    Arc::new(CampaignSpec {
        id,
        created_micros: 1,
        from: String::new(),
        bounce_domain: "b.example.com".into(),
        unsubscribe_base: String::new(),
        columns: vec!["name".into()],
        template: b"From: n@example.com\r\n\r\nHi {{ name }}\r\n".to_vec(),
    })
}

fn slice_sub(spec: &Arc<CampaignSpec>, first: u32, n: usize) -> Submission {
    Submission::campaign_slice(
        CampaignSlice {
            spec: spec.clone(),
            first_index: first,
            rows: (0..n)
                .map(|i| SliceRow {
                    email: format!("r{}@example.net", first as usize + i),
                    values: vec![format!("N{}", first as usize + i)],
                })
                .collect(),
        },
        Source::Internal(0),
    )
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count()
}

#[test]
fn one_campaign_record_many_slices_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(42);
    let mut ids = Vec::new();
    {
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        for k in 0..3 {
            ids.push(store.append(&slice_sub(&s, k * 10, 10)).unwrap());
        }
        assert_eq!(store.campaign(42).unwrap().to_spec(), *s);
        let (view, status) = store.get(ids[1]).unwrap();
        let f = view.campaign.unwrap();
        assert_eq!((f.campaign, f.first_index), (42, 10));
        assert_eq!(view.recipients[3], "r13@example.net");
        assert_eq!(f.row(3).unwrap(), vec!["N13"]);
        assert_eq!(status.to_vec(), vec![0; 10]);
        for i in 0..10 {
            store.set_status(ids[0], i, RcptStatus::Sent).unwrap();
        }
        store.set_status(ids[1], 0, RcptStatus::Bounced).unwrap();
        sync(&mut store);
        // One campaign record for the three slices.
        let records: usize = store
            .segs
            .iter()
            .flatten()
            .map(|s| {
                Records::new(s.seg.bytes())
                    .filter(|r| r.kind == Kind::Campaign)
                    .count()
            })
            .sum();
        assert_eq!(records, 1);
    }
    let (store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!(report.messages, 2, "two slices still live");
    assert_eq!(report.recipients, 19);
    assert!(store.get(ids[0]).is_none());
    assert!(store.campaign(42).is_some(), "kept while slices are live");
    let (view, status) = store.get(ids[1]).unwrap();
    assert_eq!(view.campaign.unwrap().row(9).unwrap(), vec!["N19"]);
    assert_eq!(status.get(0), Some(RcptStatus::Bounced as u8));
}

#[test]
fn campaign_segment_goes_once_every_slice_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(7);
    let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    let first = store.append(&slice_sub(&s, 0, 500)).unwrap();
    // Fill segments with ordinary mail so the campaign's segment is sealed.
    let mut later = Vec::new();
    while store.segs.iter().flatten().count() < 3 {
        later.push(store.append(&super::tests::sub(later.len(), 1)).unwrap());
    }
    let second = store.append(&slice_sub(&s, 500, 5)).unwrap();
    sync(&mut store);
    for id in later {
        store.set_status(id, 0, RcptStatus::Sent).unwrap();
    }
    for i in 0..500 {
        store.set_status(first, i, RcptStatus::Sent).unwrap();
    }
    sync(&mut store);
    assert!(
        store.campaign(7).is_some(),
        "the second slice still needs it"
    );
    let before = segment_files(dir.path());
    drop(store);
    // A restart keeps the campaign record's segment for the live slice.
    let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert!(store.campaign(7).is_some());
    assert!(segment_files(dir.path()) <= before + 1);
    for i in 0..5 {
        store.set_status(second, i, RcptStatus::Sent).unwrap();
    }
    sync(&mut store);
    assert!(store.campaign(7).is_none(), "forgotten with its last slice");
    assert!(store.is_empty());
    drop(store);
    let (store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
    assert_eq!(report.messages, 0);
    assert!(store.campaign(7).is_none());
    assert_eq!(
        segment_files(dir.path()),
        1,
        "only the active segment is left"
    );
}

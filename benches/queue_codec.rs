//! Criterion benchmarks for the queue: record encode/decode, and segment
//! append with a group commit (fdatasync) per batch.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringmail::model::{Envelope, MessageFlags, QueueId, Source, Submission};
use ringmail::queue::record::{self, MessageRef, Scan};
use ringmail::queue::Store;

fn wire(size: usize) -> Vec<u8> {
    let mut w = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n".to_vec();
    while w.len() < size {
        w.extend_from_slice(
            b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n",
        );
    }
    w.truncate(size);
    w
}

fn codec(c: &mut Criterion) {
    let body = wire(2048);
    let rcpts = vec!["someone@example.net".to_string()];
    let dsn = ringmail::model::DsnParams::default();
    let m = MessageRef {
        id: QueueId::new(0, 1),
        arrival_micros: 1,
        flags: MessageFlags::default(),
        uid: 0,
        sender: "sender@example.com",
        recipients: &rcpts,
        message_id: "20261128.1234@host.example",
        wire: &body,
        file_identity: None,
        dsn: &dsn,
    };
    let len = record::record_len(record::message_payload_len(&m).unwrap(), 1);
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Bytes(len as u64));
    let mut buf = vec![0u8; len];
    g.bench_function("encode_2k", |b| {
        b.iter(|| {
            buf.fill(0);
            record::encode_message(black_box(&m), &mut buf).unwrap()
        })
    });
    g.bench_function("scan_decode_2k", |b| {
        b.iter(|| match record::scan(black_box(&buf)) {
            Scan::Record { payload, .. } => record::decode_message(payload).unwrap().wire.len(),
            _ => unreachable!(),
        })
    });
    g.finish();
}

fn append_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), 0, 1, 256 << 20).unwrap();
    let sub = Submission {
        envelope: Envelope {
            sender: "sender@example.com".into(),
            recipients: vec!["someone@example.net".into()],
        },
        wire: wire(2048),
        flags: MessageFlags::default(),
        dsn: Default::default(),
        message_id: "20261128.1234@host.example".into(),
        arrival_micros: 1,
        uid: 0,
        source: Source::Internal(0),
        origin: Default::default(),
        file_identity: None,
        campaign: None,
    };
    let mut g = c.benchmark_group("segment");
    for batch in [1usize, 64, 512] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("append_commit_batch_{batch}"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    for _ in 0..batch {
                        store.append(&sub).unwrap();
                    }
                    for f in store.take_dirty().unwrap() {
                        f.sync_data().unwrap();
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = codec, append_commit
}
criterion_main!(benches);

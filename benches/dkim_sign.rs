//! Criterion benchmarks for DKIM signing: a 2 KB and a 100 KB message,
//! each algorithm (RSA-2048 and Ed25519, relaxed/relaxed), through the
//! same `Signers::sign` the signing stage and the shards call.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringmail::config::{DkimAlgorithm, DkimKeyConfig};
use ringmail::sign::{keygen, PrivateKey, Signers};

fn wire(size: usize) -> Vec<u8> {
    let mut w = b"From: News <news@example.com>\r\nTo: b@example.net\r\nSubject: bench\r\nMessage-ID: <1@example.com>\r\nDate: Mon, 07 Dec 2026 00:00:00 +0000\r\n\r\n".to_vec();
    while w.len() < size {
        w.extend_from_slice(
            b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n",
        );
    }
    w
}

fn signers(alg: DkimAlgorithm) -> Signers {
    let pem = keygen::generate(alg, 2048).expect("key");
    let key = PrivateKey::from_pem(pem.as_bytes()).expect("pem");
    let config: DkimKeyConfig =
        toml::from_str("domain = \"example.com\"\nselector = \"s\"\nkey_file = \"unused\"\n")
            .expect("config");
    Signers::from_keys(vec![(config, key)]).expect("signers")
}

fn sign(c: &mut Criterion) {
    for (name, alg) in [
        ("ed25519", DkimAlgorithm::Ed25519Sha256),
        ("rsa2048", DkimAlgorithm::RsaSha256),
    ] {
        let s = signers(alg);
        let mut g = c.benchmark_group(format!("dkim_{name}"));
        for size in [2048usize, 100 * 1024] {
            let w = wire(size);
            g.throughput(Throughput::Bytes(w.len() as u64));
            g.bench_function(format!("sign_{}k", size / 1024), |b| {
                b.iter(|| black_box(s.sign(black_box(&w)).expect("sign")))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, sign);
criterion_main!(benches);

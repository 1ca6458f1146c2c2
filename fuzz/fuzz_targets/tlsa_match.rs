//! Certificate bytes from the fuzzer, as a server would present them. The
//! DER walk to the subjectPublicKeyInfo must never panic, and what it
//! finds must be a whole DER SEQUENCE inside the input; matching TLSA
//! records of every selector and matching type against the bytes must
//! never panic, and an exact full-certificate record must match them.
//! A DANE-TA `2 1 0` record (a bare public key, made a trust anchor under
//! the issuer name of a presented certificate) over the same bytes as the
//! end entity and as an intermediate must never panic, and random bytes
//! never verify.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use ringmail::rt::tls::dane::{check_chain, spki, Tlsa};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

fn provider() -> &'static Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(found) = spki(data) {
        assert!(!found.is_empty() && found[0] == 0x30, "not a SEQUENCE");
        let start = found.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + found.len() <= data.len(), "outside the input");
    }
    for selector in 0..3u8 {
        for matching in 0..4u8 {
            let record = Tlsa {
                usage: 3,
                selector,
                matching,
                data: data.iter().take(64).copied().collect(),
            };
            let _ = record.is_usable();
            let _ = record.matches(data);
        }
    }
    if !data.is_empty() {
        let exact = Tlsa {
            usage: 3,
            selector: 0,
            matching: 0,
            data: data.to_vec(),
        };
        assert!(exact.is_usable() && exact.matches(data));
    }
    let half = data.len() / 2;
    let key = Tlsa {
        usage: 2,
        selector: 1,
        matching: 0,
        data: data[..half].to_vec(),
    };
    let names = [ServerName::try_from("mx.test").expect("a valid name")];
    let end_entity = CertificateDer::from(&data[half..]);
    let intermediate = CertificateDer::from(data);
    let verdict = check_chain(
        &[key],
        "mx.test",
        &names,
        &end_entity,
        &[intermediate],
        UnixTime::now(),
        provider(),
    );
    assert!(verdict.is_err(), "random bytes verified: {verdict:?}");
});

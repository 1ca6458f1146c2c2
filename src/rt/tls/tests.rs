//! Handshakes and round trips against a rustls server, over loopback
//! sockets on both backends and over the in-memory pipe.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::*;
use crate::config::IoBackendChoice;
use crate::rt::{block_on, choose_backend, Conn};

/// A test CA, a server certificate it signed for `mx.test` and
/// `localhost`, and the CA certificate as a PEM file.
struct Pki {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    server: Arc<ServerConfig>,
}

fn pki() -> Pki {
    pki_with(rustls::DEFAULT_VERSIONS)
}

/// [`pki`] with a server speaking only `versions`.
fn pki_with(versions: &[&'static rustls::SupportedProtocolVersion]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ringmail test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["mx.test".to_string(), "localhost".into()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "mx.test");
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    Pki {
        _dir: dir,
        ca_file,
        server: Arc::new(server),
    }
}

/// A TLS echo server: answers every line (up to `\n`) once it has all of
/// it. Ok(true) when the client ended with close_notify.
async fn echo_server<S>(mut io: S, config: Arc<ServerConfig>) -> Result<bool, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut tls = ServerConnection::new(config).map_err(|e| e.to_string())?;
    tls.set_buffer_limit(None);
    let mut buf = vec![0u8; 16 * 1024];
    let mut line = Vec::new();
    loop {
        while tls.wants_write() {
            let mut out = Vec::new();
            tls.write_tls(&mut out).map_err(|e| e.to_string())?;
            io.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        let n = io.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(false);
        }
        let mut rd = &buf[..n];
        while !rd.is_empty() {
            tls.read_tls(&mut rd).map_err(|e| e.to_string())?;
            let state = match tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    let mut out = Vec::new();
                    let _ = tls.write_tls(&mut out);
                    let _ = io.write_all(&out).await;
                    return Err(e.to_string());
                }
            };
            let mut plain = vec![0; state.plaintext_bytes_to_read()];
            tls.reader()
                .read_exact(&mut plain)
                .map_err(|e| e.to_string())?;
            line.extend_from_slice(&plain);
            while let Some(i) = line.iter().position(|&b| b == b'\n') {
                let one: Vec<u8> = line.drain(..=i).collect();
                tls.writer().write_all(&one).map_err(|e| e.to_string())?;
            }
            if state.peer_has_closed() {
                tls.send_close_notify();
                let mut out = Vec::new();
                while tls.wants_write() {
                    tls.write_tls(&mut out).map_err(|e| e.to_string())?;
                }
                let _ = io.write_all(&out).await;
                return Ok(true);
            }
        }
    }
}

/// Starts the echo server on a loopback socket, on its own thread.
fn spawn_socket_server(
    config: Arc<ServerConfig>,
) -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<Result<bool, String>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let s = tokio::net::TcpStream::from_std(s).unwrap();
            echo_server(s, config).await
        })
    });
    (addr, thread)
}

/// Sends `data` (ending in `\n`) and reads the echo with `chunk`-sized
/// buffers.
async fn round_trip(conn: &mut Conn, data: Vec<u8>, chunk: usize) -> Vec<u8> {
    let want = data.len();
    let (r, _) = conn.write_all(data).await;
    r.unwrap();
    let mut got = Vec::with_capacity(want);
    let mut buf = Vec::with_capacity(chunk);
    while got.len() < want {
        let (r, b) = conn.read(buf).await;
        let n = r.unwrap();
        assert!(n > 0, "closed after {} of {want} bytes", got.len());
        got.extend_from_slice(&b[..n]);
        buf = b;
    }
    got
}

/// 1 MB without a line end, then one.
fn big_message() -> Vec<u8> {
    let mut big: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    big.push(b'\n');
    big
}

/// Handshake, a small and a 1 MB round trip, close with close_notify.
async fn exercise(
    conn: Conn,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<TlsInfo, TlsError> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let (mut conn, info) = conn.start_tls(config, name).await?;
    assert!(conn.is_tls());
    assert_eq!(
        round_trip(&mut conn, b"hello\n".to_vec(), 64).await,
        b"hello\n"
    );
    let big = big_message();
    assert!(round_trip(&mut conn, big.clone(), 100_000).await == big);
    assert_eq!(round_trip(&mut conn, b"x\n".to_vec(), 1).await, b"x\n");
    conn.close().await;
    Ok(info)
}

/// Runs `exercise` over a loopback socket on every backend.
fn over_sockets(
    pki: &Pki,
    config: &Arc<rustls::ClientConfig>,
    name: &str,
) -> Vec<Result<TlsInfo, TlsError>> {
    let mut results = Vec::new();
    for choice in [IoBackendChoice::Auto, IoBackendChoice::Epoll] {
        let (addr, server) = spawn_socket_server(Arc::clone(&pki.server));
        let config = Arc::clone(config);
        let name = name.to_string();
        let (_, r) = block_on(choose_backend(choice), |b| async move {
            let conn = Conn::connect(addr, b).await.unwrap();
            exercise(conn, config, &name).await
        })
        .unwrap();
        let served = server.join().unwrap();
        if r.is_ok() {
            assert_eq!(served, Ok(true), "the server saw close_notify");
        }
        results.push(r);
    }
    results
}

fn over_pipe(
    pki: &Pki,
    config: &Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<TlsInfo, TlsError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = tokio::io::duplex(4096);
        let client = exercise(Conn::Pipe(a), Arc::clone(config), name);
        let server = echo_server(b, Arc::clone(&pki.server));
        let (r, served) = tokio::join!(client, server);
        if r.is_ok() {
            assert_eq!(served, Ok(true));
        }
        r
    })
}

#[test]
fn may_with_an_unknown_ca_is_untrusted_on_every_transport() {
    let pki = pki();
    let config = client_config(TlsLevel::May, None).unwrap();
    let mut all = over_sockets(&pki, &config, "mx.test");
    all.push(over_pipe(&pki, &config, "mx.test"));
    for r in all {
        let info = r.unwrap();
        assert_eq!(info.trust, Trust::Untrusted);
        assert_eq!(info.version, "TLSv1.3");
        assert!(info.cipher.starts_with("TLS_"), "{}", info.cipher);
        let line = info.log_line("mx.test[127.0.0.1]:25");
        assert!(
            line.starts_with(
                "Untrusted TLS connection established to mx.test[127.0.0.1]:25: TLSv1.3 with cipher TLS_"
            ) && line.ends_with(" bits)"),
            "{line}"
        );
    }
}

#[test]
fn verify_with_the_ca_file_is_verified() {
    let pki = pki();
    let config = client_config(TlsLevel::Verify, Some(&pki.ca_file)).unwrap();
    for r in over_sockets(&pki, &config, "mx.test") {
        assert_eq!(r.unwrap().trust, Trust::Verified);
    }
    let info = over_pipe(&pki, &config, "localhost").unwrap();
    assert_eq!(info.trust, Trust::Verified);
}

#[test]
fn verify_without_the_ca_or_with_a_wrong_name_fails() {
    let pki = pki();
    if let Ok(config) = client_config(TlsLevel::Verify, None) {
        let e = over_pipe(&pki, &config, "mx.test").unwrap_err();
        assert!(e.is_transient());
        assert!(e.to_string().starts_with("TLS handshake failed: "), "{e}");
        for r in over_sockets(&pki, &config, "mx.test") {
            assert!(matches!(r, Err(TlsError::Handshake(_))));
        }
    }
    let config = client_config(TlsLevel::Verify, Some(&pki.ca_file)).unwrap();
    let e = over_pipe(&pki, &config, "other.test").unwrap_err();
    assert!(
        e.to_string().contains("not valid for name"),
        "the reason is given: {e}"
    );
}

#[test]
fn may_and_encrypt_with_the_ca_classify_the_name() {
    let pki = pki();
    for level in [TlsLevel::May, TlsLevel::Encrypt] {
        let config = client_config(level, Some(&pki.ca_file)).unwrap();
        assert_eq!(
            over_pipe(&pki, &config, "other.test").unwrap().trust,
            Trust::Trusted
        );
        assert_eq!(
            over_pipe(&pki, &config, "mx.test").unwrap().trust,
            Trust::Verified
        );
    }
}

#[test]
fn tls12_servers_work_too() {
    let pki = pki_with(&[&rustls::version::TLS12]);
    let config = client_config(TlsLevel::May, Some(&pki.ca_file)).unwrap();
    let info = over_pipe(&pki, &config, "mx.test").unwrap();
    assert_eq!(info.version, "TLSv1.2");
    assert_eq!(info.trust, Trust::Verified);
    assert!(
        info.cipher.starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{}",
        info.cipher
    );
    assert!(info.bits.is_some());
}

#[test]
fn garbage_or_a_close_instead_of_a_handshake_fails() {
    let config = client_config(TlsLevel::May, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let name = ServerName::try_from("mx.test").unwrap();
        let (a, mut b) = tokio::io::duplex(4096);
        b.write_all(b"this is not TLS\r\n").await.unwrap();
        let e = Conn::Pipe(a)
            .start_tls(Arc::clone(&config), name.clone())
            .await
            .unwrap_err();
        assert!(matches!(e, TlsError::Handshake(_)), "{e}");
        let (a, b) = tokio::io::duplex(4096);
        drop(b);
        let e = Conn::Pipe(a).start_tls(config, name).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
    });
}

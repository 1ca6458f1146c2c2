//! The owned-buffer transport the SMTP session is written against: a byte
//! stream whose reads and writes take a buffer and give it back, the shape
//! io_uring needs (the kernel owns the buffer while the operation runs).
//!
//! Three kinds of connection sit behind one enum: a tokio-uring TCP socket,
//! a plain-tokio TCP socket (epoll), and an in-memory pipe for tests; a
//! fourth, TLS, wraps any of them after [`Conn::start_tls`]. The session
//! code is the same for all of them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::tls::{TlsError, TlsInfo, TlsStream};
use super::IoBackend;

/// A connected byte stream.
pub enum Conn {
    /// io_uring socket (tokio-uring; not in musl builds, which carry only
    /// the sendmail command: see `rt::block_on`).
    #[cfg(not(target_env = "musl"))]
    Uring(tokio_uring::net::TcpStream),
    /// epoll socket (plain tokio).
    Tokio(tokio::net::TcpStream),
    /// In-memory pipe, for tests.
    Pipe(DuplexStream),
    /// TLS over one of the others (see [`Conn::start_tls`]).
    Tls(Box<TlsStream>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(not(target_env = "musl"))]
            Conn::Uring(_) => f.write_str("Conn::Uring"),
            Conn::Tokio(_) => f.write_str("Conn::Tokio"),
            Conn::Pipe(_) => f.write_str("Conn::Pipe"),
            Conn::Tls(s) => f.debug_tuple("Conn::Tls").field(s).finish(),
        }
    }
}

/// A blocking TCP connect to `addr` from `local` (any port).
fn bound_connect(
    addr: SocketAddr,
    local: std::net::IpAddr,
    timeout: std::time::Duration,
) -> io::Result<std::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into())
}

impl Conn {
    /// Connects to `addr` on `backend`'s socket type.
    pub async fn connect(addr: SocketAddr, backend: IoBackend) -> io::Result<Conn> {
        match backend {
            #[cfg(not(target_env = "musl"))]
            IoBackend::Uring => {
                let s = tokio_uring::net::TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(Conn::Uring(s))
            }
            #[cfg(target_env = "musl")]
            IoBackend::Uring => Err(io::Error::from(io::ErrorKind::Unsupported)),
            IoBackend::Epoll => {
                let s = tokio::net::TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(Conn::Tokio(s))
            }
        }
    }

    /// Connects to `addr` from local address `local` (a sending source's
    /// IP), on `backend`'s socket type. The bind and the connect run on a
    /// short-lived thread (neither tokio-uring nor this design has a bound
    /// connect of its own; a new connection is rare next to the
    /// transactions it carries), within `timeout`.
    pub async fn connect_from(
        addr: SocketAddr,
        local: std::net::IpAddr,
        backend: IoBackend,
        timeout: std::time::Duration,
    ) -> io::Result<Conn> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("connect".into())
            .spawn(move || {
                let _ = tx.send(bound_connect(addr, local, timeout));
            })?;
        let stream = rx
            .await
            .map_err(|_| io::Error::other("the connecting thread ended"))??;
        match backend {
            #[cfg(not(target_env = "musl"))]
            IoBackend::Uring => Ok(Conn::Uring(tokio_uring::net::TcpStream::from_std(stream))),
            #[cfg(target_env = "musl")]
            IoBackend::Uring => Err(io::Error::from(io::ErrorKind::Unsupported)),
            IoBackend::Epoll => {
                stream.set_nonblocking(true)?;
                Ok(Conn::Tokio(tokio::net::TcpStream::from_std(stream)?))
            }
        }
    }

    /// Reads what is available into `buf` (cleared first; up to its
    /// capacity) and gives it back. `Ok(0)` means the peer closed.
    pub async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        match self {
            #[cfg(not(target_env = "musl"))]
            Conn::Uring(s) => s.read(buf).await,
            Conn::Tokio(s) => {
                let r = s.read_buf(&mut buf).await;
                (r, buf)
            }
            Conn::Pipe(s) => {
                let r = s.read_buf(&mut buf).await;
                (r, buf)
            }
            // Boxed: a TLS stream reads from an inner `Conn`.
            Conn::Tls(s) => Box::pin(s.read(buf)).await,
        }
    }

    /// Writes all of `buf` and gives it back.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            #[cfg(not(target_env = "musl"))]
            Conn::Uring(s) => s.write_all(buf).await,
            Conn::Tokio(s) => {
                let r = s.write_all(&buf).await;
                (r, buf)
            }
            Conn::Pipe(s) => {
                let r = s.write_all(&buf).await;
                (r, buf)
            }
            Conn::Tls(s) => Box::pin(s.write_all(buf)).await,
        }
    }

    /// Closes the sending side; errors are ignored (the peer may be gone).
    pub async fn close(self) {
        match self {
            #[cfg(not(target_env = "musl"))]
            Conn::Uring(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            Conn::Tokio(mut s) => {
                let _ = s.shutdown().await;
            }
            Conn::Pipe(mut s) => {
                let _ = s.shutdown().await;
            }
            Conn::Tls(s) => Box::pin(s.close()).await,
        }
    }

    /// Runs a TLS client handshake (after the server's `220` to STARTTLS)
    /// and returns the connection wrapped as [`Conn::Tls`] with what Postfix
    /// logs about the session. The caller bounds it with its handshake
    /// timeout. On failure the connection is closed; the error says why
    /// ([`TlsError::is_transient`]: a failed handshake defers).
    ///
    /// `config` should come from [`super::tls::client_config`]: only for
    /// those is the [`super::tls::Trust`] in the result classified (other
    /// configurations report `Untrusted`).
    pub async fn start_tls(
        self,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<(Conn, TlsInfo), TlsError> {
        let (stream, info) = super::tls::connect(self, config, server_name).await?;
        Ok((Conn::Tls(Box::new(stream)), info))
    }

    /// True when the connection runs TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_and_both_socket_kinds_carry_bytes() {
        for choice in [
            crate::config::IoBackendChoice::Auto,
            crate::config::IoBackendChoice::Epoll,
        ] {
            let backend = super::super::choose_backend(choice);
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let echo = std::thread::spawn(move || {
                use std::io::{Read, Write};
                let (mut s, _) = listener.accept().unwrap();
                let mut b = [0u8; 5];
                s.read_exact(&mut b).unwrap();
                s.write_all(&b).unwrap();
            });
            let (_, got) = super::super::block_on(backend, |b| async move {
                let mut c = Conn::connect(addr, b).await.unwrap();
                let (r, _) = c.write_all(b"hello".to_vec()).await;
                r.unwrap();
                let (n, buf) = c.read(Vec::with_capacity(64)).await;
                let n = n.unwrap();
                c.close().await;
                buf[..n].to_vec()
            })
            .unwrap();
            assert_eq!(got, b"hello");
            echo.join().unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let mut a = Conn::Pipe(a);
            let (r, _) = a.write_all(b"ping".to_vec()).await;
            r.unwrap();
            let mut got = [0u8; 4];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
        });
    }
}

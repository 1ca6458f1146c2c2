//! [`TlsStream`]: a rustls client connection over an inner [`Conn`], with
//! the same owned-buffer `read` / `write_all` / `close` as `Conn`.
//!
//! Ciphertext read from the inner connection is kept in `incoming` and fed
//! to rustls only when it has no plaintext left to give, so its plaintext
//! buffer never overflows; everything rustls wants to send is collected in
//! one buffer and written to the inner connection in one write.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;

use super::config::trust_of;
use super::{TlsError, TlsInfo};
use crate::rt::Conn;

/// Size of the ciphertext read buffer: a whole TLS record (16 KiB of data
/// plus its overhead) and more fits.
const CIPHERTEXT_BUFFER: usize = 32 * 1024;

/// Plaintext read buffer given when the caller gives one without capacity.
const DEFAULT_READ: usize = 16 * 1024;

/// A TLS client connection over an inner connection.
pub struct TlsStream {
    inner: Conn,
    tls: ClientConnection,
    /// Ciphertext read from `inner`; `incoming[fed..]` is not yet given to
    /// rustls.
    incoming: Vec<u8>,
    fed: usize,
    /// The inner connection reported end of file.
    eof: bool,
    /// Ciphertext to write, reused.
    outgoing: Vec<u8>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.tls.is_handshaking())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

/// Runs the client handshake over `inner`. On failure the inner connection
/// is closed (after any alert rustls wants to send).
pub(crate) async fn connect(
    inner: Conn,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> Result<(TlsStream, TlsInfo), TlsError> {
    let tls = match ClientConnection::new(Arc::clone(&config), server_name.clone()) {
        Ok(tls) => tls,
        Err(e) => {
            inner.close().await;
            return Err(TlsError::Handshake(e));
        }
    };
    let mut stream = TlsStream {
        inner,
        tls,
        incoming: Vec::with_capacity(CIPHERTEXT_BUFFER),
        fed: 0,
        eof: false,
        outgoing: Vec::new(),
    };
    if let Err(e) = stream.handshake().await {
        // Best effort: the alert may tell the server why.
        let _ = stream.flush().await;
        stream.inner.close().await;
        return Err(e);
    }
    let (trust, host_name_verified) =
        trust_of(&config, &server_name, stream.tls.peer_certificates());
    let info = TlsInfo {
        host_name_verified,
        ..TlsInfo::new(
            stream.tls.protocol_version(),
            stream.tls.negotiated_cipher_suite().map(|s| s.suite()),
            trust,
        )
    };
    Ok((stream, info))
}

impl TlsStream {
    async fn handshake(&mut self) -> Result<(), TlsError> {
        loop {
            if self.tls.wants_write() {
                self.flush().await.map_err(TlsError::Io)?;
            }
            if !self.tls.is_handshaking() {
                return Ok(());
            }
            if self.fed == self.incoming.len() {
                if self.eof {
                    return Err(TlsError::Closed);
                }
                self.read_inner().await.map_err(TlsError::Io)?;
                if self.eof {
                    return Err(TlsError::Closed);
                }
            }
            let rest = &self.incoming[self.fed..];
            let n = self.tls.read_tls(&mut &rest[..]).map_err(TlsError::Io)?;
            if n == 0 {
                // rustls takes no more after the server's close_notify.
                return Err(TlsError::Closed);
            }
            self.fed += n;
            self.tls
                .process_new_packets()
                .map_err(TlsError::Handshake)?;
        }
    }

    /// Reads plaintext into `buf` (cleared first; up to its capacity) and
    /// gives it back. `Ok(0)` means the server closed the TLS session
    /// (close_notify); a close without close_notify is an
    /// `UnexpectedEof` error.
    pub async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        if buf.capacity() == 0 {
            buf.reserve(DEFAULT_READ);
        }
        let r = match self.readable().await {
            Ok(0) => Ok(0),
            Ok(available) => {
                // Only the bytes about to be copied are initialized.
                buf.resize(available.min(buf.capacity()), 0);
                let r = self.tls.reader().read(&mut buf);
                buf.truncate(*r.as_ref().unwrap_or(&0));
                r
            }
            Err(e) => Err(e),
        };
        (r, buf)
    }

    /// Waits for plaintext: how many bytes can be read, or 0 once the
    /// server sent close_notify and everything was read.
    async fn readable(&mut self) -> io::Result<usize> {
        loop {
            let state = self.process().await?;
            if state.plaintext_bytes_to_read() > 0 {
                return Ok(state.plaintext_bytes_to_read());
            }
            if state.peer_has_closed() {
                return Ok(0);
            }
            if self.fed == self.incoming.len() {
                if self.eof {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                // Answers the server may wait for (key updates) go first.
                self.flush().await?;
                self.read_inner().await?;
                if self.eof {
                    continue;
                }
            }
            let rest = &self.incoming[self.fed..];
            let n = self.tls.read_tls(&mut &rest[..])?;
            self.fed += n;
        }
    }

    /// Decrypts what was fed; on a TLS error sends the alert (best effort)
    /// and reports the error.
    async fn process(&mut self) -> io::Result<rustls::IoState> {
        match self.tls.process_new_packets() {
            Ok(state) => Ok(state),
            Err(e) => {
                let _ = self.flush().await;
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Reads ciphertext from the inner connection into `incoming`.
    async fn read_inner(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.incoming);
        let (r, buf) = self.inner.read(buf).await;
        self.incoming = buf;
        self.fed = 0;
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                self.incoming.clear();
                return Err(e);
            }
        };
        self.incoming.truncate(n);
        self.eof = n == 0;
        Ok(())
    }

    /// Encrypts and writes all of `buf`, and gives it back.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let r = self.write_slice(&buf).await;
        (r, buf)
    }

    async fn write_slice(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            // rustls takes up to its buffer limit (64 KiB by default).
            let n = self.tls.writer().write(data)?;
            data = &data[n..];
            self.flush().await?;
        }
        self.flush().await
    }

    /// Writes everything rustls has to send, in one inner write.
    async fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            let mut out = std::mem::take(&mut self.outgoing);
            out.clear();
            while self.tls.wants_write() {
                self.tls.write_tls(&mut out)?;
            }
            let (r, out) = self.inner.write_all(out).await;
            self.outgoing = out;
            r?;
        }
        Ok(())
    }

    /// Sends close_notify (when the connection still works), then closes
    /// the inner connection.
    pub async fn close(mut self) {
        self.tls.send_close_notify();
        let _ = self.flush().await;
        self.inner.close().await;
    }
}

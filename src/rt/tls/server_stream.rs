//! The server side of a connection's byte stream (the bundled sink and the
//! SMTP injection listener): plain TCP, or TLS over it after STARTTLS,
//! with rustls's `ServerConnection` driven by hand (`read_tls`,
//! `process_new_packets`, `reader`, `writer`, `write_tls`).
//!
//! Reading never writes, so a read can be cancelled (by the stop signal)
//! without losing or tearing output; what rustls wants to send outside the
//! handshake goes out with the next write.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Size of the ciphertext read buffer: more than one whole TLS record.
const CIPHERTEXT_BUFFER: usize = 32 * 1024;

/// A connection, plain or TLS.
pub enum ServerStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<ServerTlsStream>),
    /// Nothing: the stream was taken for a TLS handshake that failed.
    Closed,
}

impl ServerStream {
    /// Reads what is available; `Ok(0)` at the end (TLS: close_notify or a
    /// plain close of the TCP connection).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ServerStream::Plain(s) => s.read(buf).await,
            ServerStream::Tls(s) => s.read(buf).await,
            ServerStream::Closed => Ok(0),
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            ServerStream::Plain(s) => s.write_all(data).await,
            ServerStream::Tls(s) => s.write_all(data).await,
            ServerStream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Ends the sending side (TLS: close_notify first).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            ServerStream::Plain(s) => s.shutdown().await,
            ServerStream::Tls(s) => s.shutdown().await,
            ServerStream::Closed => Ok(()),
        }
    }

    /// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)` once
    /// TLS is up (for the log line and the `Received:` field).
    pub fn tls_summary(&self) -> Option<String> {
        let ServerStream::Tls(s) = self else {
            return None;
        };
        let version = match s.tls.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        };
        let suite = s.tls.negotiated_cipher_suite()?;
        let cipher = suite.suite().as_str().unwrap_or("unknown").to_string();
        let bits = if cipher.contains("AES_128") { 128 } else { 256 };
        Some(format!(
            "{version} with cipher {cipher} ({bits}/{bits} bits)"
        ))
    }

    /// Runs the server side of a TLS handshake on a plain stream. Nothing
    /// read before is kept: the caller has discarded its plaintext input.
    pub async fn start_tls(self, config: Arc<ServerConfig>) -> io::Result<ServerStream> {
        let ServerStream::Plain(tcp) = self else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut s = ServerTlsStream {
            tcp,
            tls,
            incoming: vec![0; CIPHERTEXT_BUFFER].into_boxed_slice(),
            fed: 0,
            filled: 0,
            outgoing: Vec::new(),
        };
        s.handshake().await?;
        Ok(ServerStream::Tls(Box::new(s)))
    }
}

/// rustls's server connection over a TCP stream.
pub struct ServerTlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// Ciphertext read; `incoming[fed..filled]` not yet given to rustls.
    incoming: Box<[u8]>,
    fed: usize,
    filled: usize,
    /// Ciphertext to write, reused.
    outgoing: Vec<u8>,
}

impl ServerTlsStream {
    async fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.flush().await?;
            if !self.tls.is_handshaking() {
                return Ok(());
            }
            if !self.fill().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed the connection during the TLS handshake",
                ));
            }
            if let Err(e) = self.feed() {
                // Best effort: the alert tells the client why.
                let _ = self.flush().await;
                return Err(e);
            }
        }
    }

    /// Reads ciphertext when none is pending; false at the end of input.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.fed < self.filled {
            return Ok(true);
        }
        let n = self.tcp.read(&mut self.incoming).await?;
        (self.fed, self.filled) = (0, n);
        Ok(n > 0)
    }

    /// Gives pending ciphertext to rustls and decrypts it.
    fn feed(&mut self) -> io::Result<()> {
        let n = self
            .tls
            .read_tls(&mut &self.incoming[self.fed..self.filled])?;
        self.fed += n;
        self.tls
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(())
    }

    async fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(out) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: as good as a close for SMTP,
                // where QUIT ends the conversation.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if !self.fill().await? {
                // Tells rustls the transport is closed.
                self.tls.read_tls(&mut &[][..])?;
                return Ok(0);
            }
            self.feed()?;
        }
    }

    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.tls.writer().write(data)?;
            data = &data[n..];
            self.flush().await?;
        }
        self.flush().await
    }

    /// Writes everything rustls has to send, in one write.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.tls.wants_write() {
            return Ok(());
        }
        self.outgoing.clear();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.outgoing)?;
        }
        self.tcp.write_all(&self.outgoing).await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.flush().await?;
        self.tcp.shutdown().await
    }
}

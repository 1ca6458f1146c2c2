//! A small blocking HTTP/1.1 client for the admin API: plain HTTP over a
//! `TcpStream`, one request per connection (`Connection: close`), with the
//! bearer token. The admin server listens on loopback unless told
//! otherwise, so no TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a connect, a write or a read may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read (the queue listing of 10,000 messages fits).
const MAX_BODY: u64 = 256 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://HOST:PORT[/PREFIX]`.
    #[error("bad URL {0:?}: expected http://HOST:PORT")]
    Url(String),
    /// Connecting, writing or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The server.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with a status other than 200.
    #[error("GET {path}: HTTP {status}: {body}")]
    Status {
        /// The path asked for.
        path: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The answer is not HTTP/1.x as expected.
    #[error("GET {path}: malformed answer: {what}")]
    Malformed {
        /// The path asked for.
        path: String,
        /// What was wrong.
        what: &'static str,
    },
}

/// The admin API at one base URL.
#[derive(Clone, Debug)]
pub struct Client {
    /// `HOST:PORT`, for connecting and the Host header.
    authority: String,
    /// A path prefix without the trailing slash ("" for none).
    prefix: String,
    /// The bearer token, if any.
    token: Option<String>,
}

impl Client {
    /// A client for `url` (`http://HOST:PORT`, perhaps with a path prefix).
    pub fn new(url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::Url(url.to_string()))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || !authority.contains(':') {
            return Err(ClientError::Url(url.to_string()));
        }
        Ok(Client {
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            token,
        })
    }

    /// The base URL, for the screen's title.
    pub fn base(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }

    /// `GET path`: the body of a 200 answer.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let full = format!("{}{path}", self.prefix);
        let io = |source| ClientError::Io {
            addr: self.authority.clone(),
            source,
        };
        let addr: SocketAddr = self
            .authority
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| ClientError::Url(self.base()))?;
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let auth = match &self.token {
            Some(t) => format!("Authorization: Bearer {t}\r\n"),
            None => String::new(),
        };
        let request = format!(
            "GET {full} HTTP/1.1\r\nHost: {}\r\n{auth}Accept: */*\r\nConnection: close\r\n\r\n",
            self.authority
        );
        stream.write_all(request.as_bytes()).map_err(io)?;
        let mut answer = Vec::new();
        stream.take(MAX_BODY).read_to_end(&mut answer).map_err(io)?;
        parse_answer(&full, &answer)
    }
}

/// The body of a complete HTTP/1.1 answer read to the end of the
/// connection, de-chunked; an error for a status other than 200.
fn parse_answer(path: &str, answer: &[u8]) -> Result<Vec<u8>, ClientError> {
    let malformed = |what| ClientError::Malformed {
        path: path.to_string(),
        what,
    };
    let end =
        memchr::memmem::find(answer, b"\r\n\r\n").ok_or_else(|| malformed("no header end"))?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| malformed("header not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("no status line"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let raw = &answer[end + 4..];
    let body = if chunked {
        dechunk(raw).ok_or_else(|| malformed("bad chunked body"))?
    } else {
        raw.to_vec()
    };
    if status != 200 {
        let text = String::from_utf8_lossy(&body);
        return Err(ClientError::Status {
            path: path.to_string(),
            status,
            body: text.chars().take(200).collect(),
        });
    }
    Ok(body)
}

/// A chunked body joined; `None` when it is cut or malformed.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = memchr::memmem::find(raw, b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_plain_http_with_a_port() {
        let c = Client::new("http://127.0.0.1:8025", None).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:8025");
        let c = Client::new("http://[::1]:80/admin/", None).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("[::1]:80", "/admin")
        );
        assert!(Client::new("https://127.0.0.1:1", None).is_err());
        assert!(Client::new("http://localhost", None).is_err());
    }

    #[test]
    fn answers_are_read_plain_or_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_answer("/m", plain).unwrap(), b"ok");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_answer("/m", chunked).unwrap(), b"abcde");
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc";
        assert!(matches!(
            parse_answer("/m", cut),
            Err(ClientError::Malformed { .. })
        ));
        let denied = b"HTTP/1.1 401 Unauthorized\r\n\r\n{\"error\":\"no token\"}";
        match parse_answer("/m", denied) {
            Err(ClientError::Status { status, body, .. }) => {
                assert_eq!(status, 401);
                assert!(body.contains("no token"));
            }
            other => panic!("{other:?}"),
        }
    }
}

//! `ringmail bench --via smtp`: the benchmark's SMTP client. Each of
//! `--smtp-sessions` connections sends its share of the messages one after
//! another (MAIL, RCPT and DATA pipelined in one write, then the body), and
//! waits for each `250`, which the daemon sends only after the group
//! commit.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

/// The `[[listener]]` table for the bench's configuration (last in the
/// file: TOML tables follow the top-level keys).
pub(super) fn listener_table(port: Option<u16>) -> String {
    match port {
        Some(p) => format!("[[listener]]\naddress = \"127.0.0.1:{p}\"\n"),
        None => String::new(),
    }
}

/// Sends messages `0..total` (built by `message`) over `sessions`
/// connections to `127.0.0.1:port`; records each hand-over time in
/// `injected`.
pub(super) fn inject(
    port: u16,
    total: usize,
    sessions: usize,
    injected: &Mutex<Vec<u64>>,
    message: impl Fn(usize) -> Vec<u8> + Sync,
) -> anyhow::Result<()> {
    let sessions = sessions.clamp(1, 1000);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..sessions)
            .map(|t| {
                let message = &message;
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut c = Client::connect(port)?;
                    for i in (t..total).step_by(sessions) {
                        if let Ok(mut v) = injected.lock() {
                            v[i] = micros_now();
                        }
                        c.send(&message(i))?;
                    }
                    c.quit()
                })
            })
            .collect();
        for w in workers {
            match w.join() {
                Ok(r) => r?,
                Err(_) => bail!("an SMTP client thread panicked"),
            }
        }
        Ok(())
    })
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One SMTP connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

impl Client {
    fn connect(port: u16) -> anyhow::Result<Client> {
        // The listener opens once the shards have recovered.
        let started = std::time::Instant::now();
        let s = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    return Err(e).context("connecting to the listener");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut c = Client {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            line: String::new(),
        };
        c.expect(1, "2")?;
        c.writer.write_all(b"EHLO bench.localhost\r\n")?;
        c.expect(1, "2")?;
        Ok(c)
    }

    /// Reads `n` replies; each must start with `class`.
    fn expect(&mut self, n: usize, class: &str) -> anyhow::Result<()> {
        let mut done = 0;
        while done < n {
            self.line.clear();
            if self.reader.read_line(&mut self.line)? == 0 {
                bail!("the listener closed the connection");
            }
            if self.line.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            if !self.line.starts_with(class) {
                bail!("unexpected reply: {}", self.line.trim_end());
            }
            done += 1;
        }
        Ok(())
    }

    /// One message: envelope from its headers, body CRLF and dot-stuffed.
    fn send(&mut self, message: &[u8]) -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(message);
        let to: Vec<&str> = text
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .map(|t| t.split(", ").collect())
            .unwrap_or_default();
        let mut cmd = String::from("MAIL FROM:<sender@bench.example>\r\n");
        for r in &to {
            cmd.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        cmd.push_str("DATA\r\n");
        self.writer.write_all(cmd.as_bytes())?;
        self.expect(1 + to.len(), "2")?;
        self.expect(1, "3")?;
        let mut body = Vec::with_capacity(message.len() + 64);
        for line in message.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            if line.first() == Some(&b'.') {
                body.push(b'.');
            }
            body.extend_from_slice(line);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b".\r\n");
        self.writer.write_all(&body)?;
        self.expect(1, "2")
    }

    fn quit(mut self) -> anyhow::Result<()> {
        self.writer.write_all(b"QUIT\r\n")?;
        let _ = self.expect(1, "2");
        Ok(())
    }
}

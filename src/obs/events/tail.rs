//! Reading the events files from a cursor onwards, following rotation:
//! what the webhook poster sends next.

use std::io;
use std::os::unix::fs::FileExt;

use super::cursor::Cursor;
use super::files::EventFiles;

/// One batch read: the events as a JSON array, and where the next starts.
#[derive(Debug)]
pub struct Batch {
    /// `[event,event,...]`: the lines as written, joined with commas.
    pub body: Vec<u8>,
    /// Events in it.
    pub count: usize,
    /// The position after its last event: the cursor to store once the
    /// receiver has acknowledged it.
    pub end: Cursor,
}

/// A reader of the events files at a position.
#[derive(Debug)]
pub struct Tail {
    files: EventFiles,
    pos: Cursor,
    buf: Vec<u8>,
}

impl Tail {
    /// A reader of `files` starting at `pos`.
    pub fn new(files: EventFiles, pos: Cursor) -> Tail {
        Tail {
            files,
            pos,
            buf: Vec::new(),
        }
    }

    /// The position the next batch starts at.
    pub fn position(&self) -> Cursor {
        self.pos
    }

    /// The next batch of at most `max_events` events and about `max_bytes`
    /// bytes (one longer event goes alone), moving past it; `None` when
    /// nothing complete is there yet. A line that is not JSON (a file
    /// damaged by hand) is skipped with a warning.
    pub fn next_batch(&mut self, max_events: usize, max_bytes: usize) -> io::Result<Option<Batch>> {
        let max_events = max_events.max(1);
        loop {
            let Some(opened) = self.files.open_generation(self.pos.generation)? else {
                return Ok(None);
            };
            if opened.generation != self.pos.generation {
                tracing::warn!(target: "events", "events file generation {} is gone; the webhook goes on with generation {}", self.pos.generation, opened.generation);
                self.pos = Cursor {
                    generation: opened.generation,
                    offset: 0,
                };
            }
            let len = opened.file.metadata()?.len();
            if self.pos.offset > len {
                tracing::warn!(target: "events", "{}: shorter than the webhook cursor ({} > {len} bytes): it was replaced; sending it from its start", self.files.active().display(), self.pos.offset);
                self.pos.offset = 0;
            }
            let avail = len - self.pos.offset;
            let want = avail.min(max_bytes.max(1) as u64) as usize;
            self.buf.resize(want, 0);
            opened.file.read_exact_at(&mut self.buf, self.pos.offset)?;
            let mut body = Vec::with_capacity(want + 2);
            body.push(b'[');
            let mut count = 0;
            let mut consumed = 0;
            while count < max_events {
                let rest = &self.buf[consumed..];
                let Some(nl) = memchr::memchr(b'\n', rest) else {
                    break;
                };
                let line = &rest[..nl];
                if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
                    && line.first() == Some(&b'{')
                {
                    if count > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(line);
                    count += 1;
                } else if !line.is_empty() {
                    tracing::warn!(target: "events", "events file generation {} at byte {}: not an event; skipped", self.pos.generation, self.pos.offset + consumed as u64);
                }
                consumed += nl + 1;
            }
            if consumed == 0 && want == max_bytes.max(1) {
                // A line longer than the whole window: skip the window;
                // its rest is then skipped as "not an event".
                tracing::warn!(target: "events", "events file generation {} at byte {}: a line over {max_bytes} bytes; skipped", self.pos.generation, self.pos.offset);
                consumed = want;
            }
            self.pos.offset += consumed as u64;
            if count > 0 {
                body.push(b']');
                return Ok(Some(Batch {
                    body,
                    count,
                    end: self.pos,
                }));
            }
            if consumed > 0 {
                continue;
            }
            if opened.complete && self.pos.offset >= len {
                // A rotated file read to its end: on to the next one.
                self.pos = Cursor {
                    generation: self.pos.generation + 1,
                    offset: 0,
                };
                continue;
            }
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_rotation_and_stop_at_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let files = EventFiles::new(&dir.path().join("e.jsonl")).unwrap();
        std::fs::write(files.rotated(1), b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n").unwrap();
        std::fs::write(files.active(), b"{\"n\":4}\nnot json\n{\"n\":5}\n{\"n\":").unwrap();
        let mut tail = Tail::new(
            files.clone(),
            Cursor {
                generation: 1,
                offset: 0,
            },
        );
        let b = tail.next_batch(2, 1 << 20).unwrap().unwrap();
        assert_eq!(b.body, b"[{\"n\":1},{\"n\":2}]");
        assert_eq!(
            b.end,
            Cursor {
                generation: 1,
                offset: 16
            }
        );
        let b = tail.next_batch(2, 1 << 20).unwrap().unwrap();
        assert_eq!(b.body, b"[{\"n\":3}]");
        let b = tail.next_batch(5, 1 << 20).unwrap().unwrap();
        assert_eq!(b.body, b"[{\"n\":4},{\"n\":5}]");
        assert_eq!(b.end.generation, 2);
        assert!(tail.next_batch(5, 1 << 20).unwrap().is_none());
        // The writer finishes the line.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(files.active())
            .unwrap();
        f.write_all(b"6}\n").unwrap();
        let b = tail.next_batch(5, 1 << 20).unwrap().unwrap();
        assert_eq!(b.body, b"[{\"n\":6}]");
    }

    #[test]
    fn the_byte_limit_cuts_batches_at_lines() {
        let dir = tempfile::tempdir().unwrap();
        let files = EventFiles::new(&dir.path().join("e.jsonl")).unwrap();
        std::fs::write(files.active(), b"{\"n\":1}\n{\"n\":2}\n").unwrap();
        let mut tail = Tail::new(
            files,
            Cursor {
                generation: 1,
                offset: 0,
            },
        );
        let b = tail.next_batch(100, 10).unwrap().unwrap();
        assert_eq!(b.body, b"[{\"n\":1}]");
        let b = tail.next_batch(100, 10).unwrap().unwrap();
        assert_eq!(b.body, b"[{\"n\":2}]");
    }
}

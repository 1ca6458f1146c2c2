//! Delivery events (issue 17, item 4), end to end on loopback: the writer
//! thread and the webhook poster against a small HTTP/1.1 receiver written
//! here (std sockets, `Content-Length` bodies). The receiver is stopped
//! mid-send (its listener closed, so connections are refused) and started
//! again on the same port: every event must arrive at least once, none
//! missing. A poster started again with the same cursor resends from the
//! cursor, not from the first event.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringmail::obs::events::{
    cursor_path, CursorFile, Event, EventKind, EventService, EventSource, EventStats,
    EventsOptions, FsyncPolicy, Poster, WebhookOptions,
};

/// The longest any wait in these tests may take before it counts as a
/// failure (a guard against hanging, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(120);

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Every event received, in order, duplicates included.
    events: Vec<Event>,
    /// Authorization headers of the requests.
    auth: HashSet<String>,
    /// Content-Type headers of the requests.
    content_types: HashSet<String>,
    /// Requests answered.
    requests: usize,
}

/// A running receiver: `POST` with a JSON array of events, answered 200.
struct Receiver {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    addr: SocketAddr,
}

impl Receiver {
    /// Listens on `addr` (port 0: any) and records into `seen`.
    fn start(addr: SocketAddr, seen: Arc<Mutex<Seen>>) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &seen),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            // The listener is dropped here: connections are refused.
        });
        Receiver { stop, thread, addr }
    }

    /// Closes the listener (and waits until it is closed).
    fn stop(self) -> SocketAddr {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("receiver thread");
        self.addr
    }
}

/// Reads one request (headers, then `Content-Length` bytes), records its
/// events and answers `200 OK`.
fn serve(stream: TcpStream, seen: &Mutex<Seen>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("POST /hook HTTP/1.1"), "{line:?}");
    let mut length = 0usize;
    let mut auth = String::new();
    let mut content_type = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => auth = value.trim().to_string(),
            "content-type" => content_type = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let events: Vec<Event> = serde_json::from_slice(&body).expect("a JSON array of events");
    {
        let mut s = seen.lock().unwrap();
        s.events.extend(events);
        s.auth.insert(auth);
        s.content_types.insert(content_type);
        s.requests += 1;
    }
    let mut stream = reader.into_inner();
    let _ =
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

/// Waits until `done` holds; panics after [`PATIENCE`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn webhook(addr: SocketAddr, file: &Path) -> WebhookOptions {
    let mut w = WebhookOptions::new(format!("http://{addr}/hook"), cursor_path(file));
    w.batch = 100;
    w.token = Some("test-token-0123456789".into());
    w.timeout = Duration::from_secs(5);
    w.initial_backoff = Duration::from_millis(20);
    w.max_backoff = Duration::from_millis(200);
    w.idle_poll = Duration::from_millis(50);
    w
}

fn event(n: usize, tag: &str) -> Event {
    let mut e = Event::new(EventKind::Delivered, format!("{tag}{n:06}"));
    e.recipient = Some(format!("r{n}@example.test"));
    e.source = Some(EventSource::Campaign);
    e
}

fn queue_ids(events: &[Event]) -> HashSet<String> {
    events.iter().filter_map(|e| e.queue_id.clone()).collect()
}

/// The ids in every events file under `dir` (rotated or not).
fn ids_on_disk(dir: &Path) -> HashSet<String> {
    let mut ids = HashSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("events.jsonl") || name.ends_with(".cursor") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            ids.insert(serde_json::from_str::<Event>(line).unwrap().id);
        }
    }
    ids
}

#[test]
fn every_event_arrives_although_the_receiver_stops_mid_send() {
    const TOTAL: usize = 5000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events").join("events.jsonl");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&seen));
    // Small files (about 400 events each) and keep = 2: the files rotate
    // many times while the receiver is down, and must not be removed
    // before they are sent.
    let options = EventsOptions::new(
        file.clone(),
        64 * 1024,
        2,
        FsyncPolicy::Batch,
        Some(webhook(receiver.addr, &file)),
    );
    let service = EventService::start(options).unwrap();
    let sink = service.sink();
    let stats: Arc<EventStats> = service.stats();

    for n in 0..TOTAL / 2 {
        sink.emit(event(n, "Q"));
    }
    wait_for("the first events at the receiver", || {
        seen.lock().unwrap().events.len() >= 300
    });
    let addr = receiver.stop();
    let before = seen.lock().unwrap().events.len();
    for n in TOTAL / 2..TOTAL {
        sink.emit(event(n, "Q"));
    }
    wait_for("failed requests while the receiver is down", || {
        EventStats::get(&stats.post_failures) >= 3
    });
    wait_for("every event in the file", || {
        EventStats::get(&stats.written) == TOTAL as u64
    });
    assert!(
        EventStats::get(&stats.rotations) >= 3,
        "the files rotated while the receiver was down"
    );
    let receiver = Receiver::start(addr, Arc::clone(&seen));
    wait_for("every event at the receiver", || {
        queue_ids(&seen.lock().unwrap().events).len() == TOTAL
    });
    receiver.stop();
    service.stop(Duration::from_secs(5));

    let seen = seen.lock().unwrap();
    assert!(before < TOTAL, "the receiver stopped mid-send");
    assert_eq!(EventStats::get(&stats.dropped), 0);
    let ids: HashSet<&str> = seen.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), TOTAL, "one unique id per event");
    for n in 0..TOTAL {
        assert!(
            queue_ids(&seen.events).contains(&format!("Q{n:06}")),
            "event {n} missing"
        );
    }
    // What arrived is what the files hold (files the cursor passed may
    // have been removed since: those ids arrived too).
    let on_disk = ids_on_disk(file.parent().unwrap());
    assert!(on_disk.iter().all(|id| ids.contains(id.as_str())));
    assert_eq!(
        seen.auth,
        HashSet::from(["Bearer test-token-0123456789".to_string()])
    );
    assert_eq!(
        seen.content_types,
        HashSet::from(["application/json".to_string()])
    );
    assert!(seen.events.iter().all(|e| e.kind == EventKind::Delivered));
    assert!(seen.requests >= TOTAL / 100, "at most 100 events a request");
}

#[test]
fn a_restarted_poster_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events").join("events.jsonl");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&seen));
    let cursor = CursorFile::new(cursor_path(&file));
    let write = |tag: &str, count: usize| {
        let service = EventService::start(EventsOptions::new(
            file.clone(),
            64 << 20,
            2,
            FsyncPolicy::Batch,
            None,
        ))
        .unwrap();
        let sink = service.sink();
        for n in 0..count {
            sink.emit(event(n, tag));
        }
        service.stop(Duration::from_secs(5));
    };
    let post_all = |expect: usize| {
        let poster = Poster::start(
            &file,
            webhook(receiver.addr, &file),
            Arc::new(EventStats::default()),
            None,
        )
        .unwrap();
        let end = std::fs::metadata(&file).unwrap().len();
        wait_for("the cursor at the end of the file", || {
            cursor.load().unwrap().is_some_and(|c| c.offset == end)
        });
        assert!(poster.stop(Duration::from_secs(10)));
        assert_eq!(seen.lock().unwrap().events.len(), expect);
    };

    // Written while no poster ran (the application was down): sent once
    // a poster starts.
    write("A", 300);
    assert_eq!(cursor.load().unwrap(), None);
    post_all(300);
    let first = cursor.load().unwrap().unwrap();
    assert_eq!(first.generation, 1);

    // A new poster with the same cursor sends only what came after it.
    seen.lock().unwrap().events.clear();
    write("B", 200);
    post_all(200);
    let seen_now = seen.lock().unwrap();
    let tags: HashSet<char> = seen_now
        .events
        .iter()
        .map(|e| e.queue_id.as_deref().unwrap().chars().next().unwrap())
        .collect();
    assert_eq!(
        tags,
        HashSet::from(['B']),
        "nothing resent from before the cursor"
    );
    assert_eq!(queue_ids(&seen_now.events).len(), 200);
    assert!(cursor.load().unwrap().unwrap().offset > first.offset);
    drop(seen_now);
    receiver.stop();
}

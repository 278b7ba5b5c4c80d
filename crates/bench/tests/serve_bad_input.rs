//! Bad input at the transport level against a real `rpc-bench serve` process,
//! on both IO modes: garbage, bad lengths, unknown message types, frames cut
//! off, responses nobody asked for, 100k tiny frames, 2,200 connections
//! opened and dropped.
//!
//! After each case: a bad connection is closed by the server (read returns
//! EOF or a reset) and its stderr names the peer and the problem; a
//! well-behaved connection opened before gets correct echoes meanwhile and
//! after; the process is alive; its RSS is back within [`RSS_SLACK_KIB`] of
//! its value after start-up; at SIGTERM it exits cleanly and its report
//! counts exactly the requests and one-way messages that were valid.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::{BufferPool, EncodedFrame, Frame, FrameDecoder};

const BIN: &str = env!("CARGO_BIN_EXE_rpc-bench");
/// How far the server's RSS may stay above its value after start-up: its pool
/// keeps up to 64 MiB of idle buffers by default, plus room for allocator slack.
const RSS_SLACK_KIB: u64 = 96 << 10;

/// An `rpc-bench serve` child; killed and reaped on drop.
struct Serve {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
    rss_start_kib: u64,
}

impl Serve {
    fn start(mode: &str) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--io-mode", mode])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rpc-bench serve starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the LISTENING line");
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("expected `LISTENING <addr>`, got `{line}`"))
            .to_string();
        std::thread::spawn(move || stdout.lines().for_each(drop));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut from, to) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                to.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut serve = Self {
            child,
            addr,
            stderr,
            rss_start_kib: 0,
        };
        serve.rss_start_kib = serve.proc_status("VmRSS:");
        serve
    }

    /// A `kB` field of `/proc/<pid>/status`.
    fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("serve's /proc status");
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in serve's /proc status"))
    }

    /// Open file descriptors of serve (`/proc/<pid>/fd`).
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("serve's /proc fd directory")
            .count()
    }

    /// Whether a line of stderr holds every one of `parts`, waiting up to 5 s.
    fn logged(&self, parts: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)));
            if found || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the process is alive and its RSS comes back within the slack (waiting up to 5 s).
    fn healthy(&mut self, after: &str) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "serve died after {after}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut rss = self.proc_status("VmRSS:");
        while rss > self.rss_start_kib + RSS_SLACK_KIB && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            rss = self.proc_status("VmRSS:");
        }
        assert!(
            rss <= self.rss_start_kib + RSS_SLACK_KIB,
            "RSS after {after}: {rss} KiB, {} KiB after start-up",
            self.rss_start_kib
        );
    }

    /// SIGTERM; asserts a clean exit; returns stderr.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(self.child.wait().unwrap().success(), "serve exits cleanly");
        std::thread::sleep(Duration::from_millis(100));
        let text = self.stderr.lock().unwrap().clone();
        assert!(text.contains("until SIGTERM"), "{text}");
        text
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw connection to the server.
struct Conn {
    stream: TcpStream,
    decoder: FrameDecoder,
    frames: std::collections::VecDeque<Frame>,
}

fn wire(frame: &EncodedFrame) -> Vec<u8> {
    [frame.header(), &frame.body()[..]].concat()
}

fn header(len: i64, ty: u8) -> Vec<u8> {
    [&len.to_be_bytes()[..], &[ty]].concat()
}

impl Conn {
    fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to serve");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            decoder: FrameDecoder::new(1 << 20, BufferPool::default()),
            frames: Default::default(),
        }
    }

    fn me(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }

    fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed the connection: later reads say so.
        let _ = self.stream.write_all(bytes);
    }

    fn next_frame(&mut self) -> Option<Frame> {
        let mut buf = vec![0u8; 64 << 10];
        while self.frames.is_empty() {
            let n = match self.stream.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            let frames = &mut self.frames;
            self.decoder
                .decode(Bytes::copy_from_slice(&buf[..n]), &mut |f| frames.push_back(f))
                .expect("serve sends valid frames");
        }
        self.frames.pop_front()
    }

    /// Sends request `id` with a body made from it and checks the echo.
    fn echo(&mut self, id: i64) {
        let body = Bytes::from(format!("echo {id} {}", "x".repeat(id as usize % 97)));
        self.send(&wire(&EncodedFrame::rpc_request(id, body.clone()).unwrap()));
        match self.next_frame() {
            Some(Frame::RpcResponse {
                request_id,
                body: back,
            }) => {
                assert_eq!(
                    (request_id, &back[..]),
                    (id, &body[..]),
                    "the echo of request {id}"
                )
            }
            other => panic!("request {id}: expected its echo, got {other:?}"),
        }
    }

    /// Whether the server closes the connection within 10 s (EOF or reset).
    fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A server and a well-behaved connection; counts the requests it asked.
struct Fixture {
    serve: Serve,
    good: Conn,
    asked: i64,
}

impl Fixture {
    fn new(mode: &str) -> Self {
        let serve = Serve::start(mode);
        let mut good = Conn::open(&serve.addr);
        good.echo(0);
        Self {
            serve,
            good,
            asked: 1,
        }
    }

    fn good_echoes(&mut self, after: &str) {
        for _ in 0..3 {
            self.good.echo(self.asked);
            self.asked += 1;
        }
        self.serve.healthy(after);
    }

    /// `bytes` on a new connection: the server closes it and logs `error` with its address.
    fn refused(&mut self, bytes: &[u8], error: &str) {
        let mut bad = Conn::open(&self.serve.addr);
        let me = bad.me();
        bad.send(bytes);
        self.good_echoes(error);
        assert!(
            bad.closed_by_peer(),
            "the server closes the connection after {error}"
        );
        assert!(
            self.serve.logged(&[&me, error]),
            "a stderr line naming {me} and `{error}`"
        );
        self.good_echoes(error);
    }

    /// Stops the server; asserts its report counts exactly the valid requests and one-ways.
    fn stop(self, more_requests: i64, one_ways: u64) {
        let expected = format!(
            "{} requests answered, {one_ways} one-way messages received",
            self.asked + more_requests
        );
        println!(
            "serve RSS: {} KiB after start-up, {} KiB now, {} KiB peak (VmHWM)",
            self.serve.rss_start_kib,
            self.serve.proc_status("VmRSS:"),
            self.serve.proc_status("VmHWM:")
        );
        let stderr = self.serve.stop();
        assert!(stderr.contains(&expected), "expected `{expected}` in: {stderr}");
    }
}

fn garbage_bytes(mode: &str) {
    let mut f = Fixture::new(mode);
    f.refused(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "exceeds the maximum frame size",
    );
    f.refused(&[0xAB; 4096], "is negative");
    f.stop(0, 0);
}

fn bad_lengths(mode: &str) {
    let mut f = Fixture::new(mode);
    f.refused(&header(-5, 3), "frame length -5 is negative");
    f.refused(
        &[&4i64.to_be_bytes()[..], &[0; 8]].concat(),
        "below the 9-byte header size",
    );
    f.refused(
        &[&header(13, 3)[..], &[0; 4]].concat(),
        "below the 21-byte header size",
    );
    // Over the maximum (serve allows 128 MiB): refused from the header alone.
    f.refused(&header(1 << 40, 3), "exceeds the maximum frame size");
    f.refused(&header(i64::MAX, 9), "exceeds the maximum frame size");
    f.stop(0, 0);
}

fn unknown_message_types(mode: &str) {
    let mut f = Fixture::new(mode);
    f.refused(
        &[&header(13, 42)[..], &[0; 4]].concat(),
        "unknown message type id 42",
    );
    f.refused(&[&header(30, 0)[..], &[0; 21]].concat(), "ChunkFetchRequest");
    f.stop(0, 0);
}

fn frames_cut_mid_header_and_mid_body(mode: &str) {
    let mut f = Fixture::new(mode);
    let frame = wire(&EncodedFrame::one_way(Bytes::from(vec![7u8; 100])).unwrap());
    for cut in [5, 11, 60, frame.len() - 1] {
        let mut bad = Conn::open(&f.serve.addr);
        let me = bad.me();
        bad.send(&frame[..cut]);
        f.good_echoes("a cut frame, still open");
        bad.stream.shutdown(Shutdown::Write).unwrap();
        assert!(bad.closed_by_peer(), "closed after a frame cut at byte {cut}");
        assert!(f.serve.logged(&[&me, "mid-frame"]), "cut at {cut}");
        f.good_echoes("a cut frame");
    }
    f.stop(0, 0);
}

fn response_nobody_asked_for(mode: &str) {
    let mut f = Fixture::new(mode);
    let mut odd = Conn::open(&f.serve.addr);
    let me = odd.me();
    odd.send(&wire(
        &EncodedFrame::rpc_response(999, Bytes::from_static(b"surprise")).unwrap(),
    ));
    odd.send(&wire(&EncodedFrame::rpc_failure(998, "unasked failure").unwrap()));
    // Ignored and logged, as Spark's TransportResponseHandler does; the connection stays usable.
    odd.echo(1_000);
    assert!(f.serve.logged(&[&me, "not outstanding", "request_id=999"]));
    assert!(f.serve.logged(&[&me, "not outstanding", "request_id=998"]));
    f.good_echoes("responses nobody asked for");
    f.stop(1, 0);
}

fn hundred_thousand_tiny_frames(mode: &str) {
    let mut f = Fixture::new(mode);
    let mut flood = Conn::open(&f.serve.addr);
    // 50,000 one-ways with empty bodies and 50,000 one-byte requests, interleaved, in one stream.
    let mut bytes = Vec::new();
    for i in 0..50_000i64 {
        bytes.extend(wire(&EncodedFrame::one_way(Bytes::new()).unwrap()));
        bytes.extend(wire(
            &EncodedFrame::rpc_request(i, Bytes::from(vec![i as u8])).unwrap(),
        ));
    }
    let mut writer = flood.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&bytes));
    for i in 0..50_000i64 {
        match flood.next_frame() {
            Some(Frame::RpcResponse { request_id, body }) => {
                assert_eq!((request_id, &body[..]), (i, &[i as u8][..]), "answers in order")
            }
            other => panic!("answer {i}: {other:?}"),
        }
    }
    sender.join().unwrap().expect("the flood is written");
    f.good_echoes("100k tiny frames");
    drop(flood);
    f.good_echoes("100k tiny frames, connection dropped");
    f.stop(50_000, 50_000);
}

fn two_thousand_two_hundred_connections_opened_and_dropped(mode: &str) {
    let mut f = Fixture::new(mode);
    let fds_before = f.serve.fds();
    let partial = header(1_000, 9);
    for round in 0..2 {
        let mut conns: Vec<TcpStream> = Vec::with_capacity(1_100);
        for i in 0..1_100 {
            let mut c = TcpStream::connect(&f.serve.addr).expect("connect");
            if i % 2 == 0 {
                // Half leave a frame half-written behind.
                let _ = c.write_all(&partial);
            }
            conns.push(c);
        }
        f.good_echoes(&format!("1,100 connections open (round {round})"));
        drop(conns);
        f.good_echoes(&format!("1,100 connections dropped (round {round})"));
    }
    // Every dropped connection's socket is closed by the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.serve.fds() > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        f.serve.fds() <= fds_before,
        "server fds: {fds_before} before, {} after",
        f.serve.fds()
    );
    f.good_echoes("2,200 connections");
    f.stop(0, 0);
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod epoll {
            $(#[test] fn $case() { super::$case("epoll"); })*
        }
        mod io_uring {
            $(#[test] fn $case() { super::$case("io_uring"); })*
        }
    };
}

cases!(
    garbage_bytes,
    bad_lengths,
    unknown_message_types,
    frames_cut_mid_header_and_mid_body,
    response_nobody_asked_for,
    hundred_thousand_tiny_frames,
    two_thousand_two_hundred_connections_opened_and_dropped,
);

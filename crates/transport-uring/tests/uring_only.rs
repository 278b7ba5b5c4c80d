//! What only the io_uring backend has: provided-buffer exhaustion, zero-copy
//! sends, many connections on few rings, and the probe's failure path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::{IoMode, Transport, TransportClient, TransportConf, TransportError, TransportHandler};
use transport_uring::{FORCE_UNAVAILABLE_ENV, UringConf, UringTransport, UringUnavailable};

const TIMEOUT: Duration = Duration::from_secs(20);

fn conf() -> TransportConf {
    TransportConf {
        server_threads: 2,
        client_threads: 2,
        connect_timeout_ms: 10_000,
        ..TransportConf::default()
    }
}

fn transport(uring: UringConf) -> UringTransport {
    let conf = conf();
    let pool = transport::BufferPool::new(conf.pool_max_bytes);
    UringTransport::with_uring_conf(conf, pool, uring).expect("io_uring is available on this machine")
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Echoes requests; records one-way bodies per connection.
#[derive(Default)]
struct Recorder {
    one_way: Mutex<HashMap<u64, Vec<u8>>>,
    received: AtomicUsize,
}

impl TransportHandler for Recorder {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        let _ = client.send_response(request_id, body);
    }
    fn receive_one_way(&self, client: &TransportClient, body: Bytes) {
        let mut map = self.one_way.lock().unwrap();
        map.entry(client.id().0).or_default().extend_from_slice(&body);
        self.received.fetch_add(body.len(), Ordering::SeqCst);
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn rpc(client: &TransportClient, body: Bytes) -> Result<Bytes, TransportError> {
    let (tx, rx) = mpsc::channel();
    client.send_rpc(body, move |r| tx.send(r).unwrap()).unwrap();
    rx.recv_timeout(TIMEOUT).expect("no answer in time")
}

/// A 2-buffer ring of 512 B buffers and 32 connections sending at once: the
/// ring runs dry again and again (`ENOBUFS`), and every byte still arrives, in order.
#[test]
fn provided_buffer_exhaustion_loses_nothing() {
    let uring = UringConf {
        buf_ring_entries: 2,
        buf_size: 512,
        ..UringConf::default()
    };
    let t = transport(uring);
    let server_side = Arc::new(Recorder::default());
    let server = t.bind(local(), server_side.clone()).unwrap();
    const CONNS: usize = 32;
    const MSGS: usize = 300;
    let senders: Vec<_> = (0..CONNS)
        .map(|_| {
            t.connect(server.local_addr(), Arc::new(Recorder::default()))
                .unwrap()
        })
        .collect();
    let mut expected_total = 0;
    let mut threads = Vec::new();
    for (c, client) in senders.iter().cloned().enumerate() {
        let body_len = 1 + (c * 37) % 900;
        expected_total += MSGS * body_len;
        threads.push(std::thread::spawn(move || {
            for m in 0..MSGS {
                let body: Vec<u8> = (0..body_len).map(|i| (m * 7 + i + c) as u8).collect();
                client.send_one_way(Bytes::from(body)).unwrap();
            }
        }));
    }
    for th in threads {
        th.join().unwrap();
    }
    wait_until("every byte arrived", || {
        server_side.received.load(Ordering::SeqCst) >= expected_total
    });
    let map = server_side.one_way.lock().unwrap();
    assert_eq!(map.len(), CONNS);
    for bytes in map.values() {
        // Recover which sender this was from its first byte pattern and check every message.
        let c = bytes[0] as usize;
        let body_len = 1 + (c * 37) % 900;
        assert_eq!(
            bytes.len(),
            MSGS * body_len,
            "connection {c} lost or gained bytes"
        );
        for (m, msg) in bytes.chunks(body_len).enumerate() {
            for (i, &b) in msg.iter().enumerate() {
                assert_eq!(
                    b,
                    (m * 7 + i + c) as u8,
                    "connection {c}, message {m}, byte {i} out of order"
                );
            }
        }
    }
    drop(map);
    t.shutdown();
}

/// A zero-copy send of a large pooled body whose sender dropped its `Bytes`
/// right after sending: the frame keeps the memory alive until the kernel's
/// notification, and the bytes arrive intact.
#[test]
fn zero_copy_send_outlives_the_callers_bytes() {
    let uring = UringConf {
        zero_copy_threshold: 4096,
        ..UringConf::default()
    };
    let t = transport(uring);
    let server = t.bind(local(), Arc::new(Recorder::default())).unwrap();
    let client = t
        .connect(server.local_addr(), Arc::new(Recorder::default()))
        .unwrap();
    for round in 0..20u8 {
        let len = 1 << 20;
        let mut buf = t.pool().allocate(len);
        let pattern: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(round))
            .collect();
        buf.put_slice(&pattern);
        let body = buf.freeze();
        let (tx, rx) = mpsc::channel();
        client.send_rpc(body, move |r| tx.send(r).unwrap()).unwrap();
        // The caller's `Bytes` moved into the frame; nothing of it is left here.
        let echoed = rx.recv_timeout(TIMEOUT).unwrap().unwrap();
        assert!(
            echoed[..] == pattern[..],
            "round {round}: the echoed body differs"
        );
    }
    // Small frames on the same connection still take the copying path.
    assert_eq!(&rpc(&client, Bytes::from_static(b"small")).unwrap()[..], b"small");
    t.shutdown();
}

/// 1,000 connections opened at once from 8 threads, an RPC on each, then shutdown.
#[test]
fn a_thousand_connections() {
    let t = Arc::new(transport(UringConf::default()));
    let server = t.bind(local(), Arc::new(Recorder::default())).unwrap();
    let addr = server.local_addr();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                (0..125)
                    .map(|_| t.connect(addr, Arc::new(Recorder::default())).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let clients: Vec<TransportClient> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(clients.len(), 1000);
    let (tx, rx) = mpsc::channel();
    for (i, c) in clients.iter().enumerate() {
        let tx = tx.clone();
        c.send_rpc(Bytes::from(format!("conn {i}")), move |r| {
            tx.send((i, r)).unwrap()
        })
        .unwrap();
    }
    for _ in 0..clients.len() {
        let (i, r) = rx.recv_timeout(TIMEOUT).expect("an RPC went unanswered");
        assert_eq!(r.unwrap(), Bytes::from(format!("conn {i}")));
    }
    wait_until("the server side saw 1000 connections", || {
        t.connection_count() == 2000
    });
    t.shutdown();
    assert!(clients.iter().all(|c| !c.is_active()));
    assert_eq!(t.connection_count(), 0);
}

/// With `RPC_IO_URING_FORCE_UNAVAILABLE=1` the probe fails and `new` says so.
/// Runs in a child process so no other test sees the variable.
#[test]
fn probe_can_be_forced_to_fail() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "forced_unavailable_child", "--ignored", "--nocapture"])
        .env(FORCE_UNAVAILABLE_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}");
}

#[test]
#[ignore = "run by probe_can_be_forced_to_fail in a child process with the variable set"]
fn forced_unavailable_child() {
    assert_eq!(std::env::var(FORCE_UNAVAILABLE_ENV).as_deref(), Ok("1"));
    assert_eq!(transport_uring::probe(), Err(UringUnavailable::ForcedUnavailable));
    match UringTransport::new(conf()) {
        Err(TransportError::IoModeUnavailable { mode, reason }) => {
            assert_eq!(mode, IoMode::IoUring);
            assert!(reason.contains(FORCE_UNAVAILABLE_ENV), "{reason}");
        }
        other => panic!("expected IoModeUnavailable, got {other:?}"),
    }
}

/// Without the variable the probe passes here and reports the kernel.
#[test]
fn probe_passes_here() {
    let report = transport_uring::probe().expect("io_uring is available on this machine");
    assert!(!report.kernel_release.is_empty());
}

/// Panics on a request whose body is `panic`, echoes others.
struct Panicky;

impl TransportHandler for Panicky {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        assert!(&body[..] != b"panic", "the handler was told to panic");
        let _ = client.send_response(request_id, body);
    }
    fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
}

/// A handler that panics ends its connection only; the loop and the other
/// connections it serves go on.
#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let conf = TransportConf {
        server_threads: 1,
        ..conf()
    };
    let t = UringTransport::new(conf).unwrap();
    let server = t.bind(local(), Arc::new(Panicky)).unwrap();
    let bystander = t
        .connect(server.local_addr(), Arc::new(Recorder::default()))
        .unwrap();
    let victim = t
        .connect(server.local_addr(), Arc::new(Recorder::default()))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    victim
        .send_rpc(Bytes::from_static(b"panic"), move |r| tx.send(r).unwrap())
        .unwrap();
    assert!(matches!(
        rx.recv_timeout(TIMEOUT).unwrap(),
        Err(TransportError::ConnectionClosed { .. })
    ));
    wait_until("the victim's connection closes", || !victim.is_active());
    assert_eq!(
        &rpc(&bystander, Bytes::from_static(b"still here")).unwrap()[..],
        b"still here"
    );
    t.shutdown();
}

/// Partial sends: with 4 KiB socket buffers and a peer that reads slowly in
/// small pieces, the kernel takes each batch of 256 KiB responses a little at a
/// time; every byte still arrives, in order, frame after frame.
#[test]
fn sends_larger_than_the_socket_buffer_arrive_whole() {
    use std::io::{Read, Write};

    let conf = TransportConf {
        send_buffer_bytes: 4096,
        receive_buffer_bytes: 4096,
        ..conf()
    };
    let pool = transport::BufferPool::new(conf.pool_max_bytes);
    let t = UringTransport::with_uring_conf(conf, pool, UringConf::default()).unwrap();
    // Answers each request with 256 KiB of a pattern seeded by the request's first byte.
    struct Big;
    impl TransportHandler for Big {
        fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
            let seed = body[0];
            let data: Vec<u8> = (0..256 << 10)
                .map(|i: u32| (i as u8).wrapping_mul(seed | 1))
                .collect();
            let _ = client.send_response(request_id, Bytes::from(data));
        }
        fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
    }
    let server = t.bind(local(), Arc::new(Big)).unwrap();
    let mut raw = std::net::TcpStream::connect(server.local_addr()).unwrap();
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    let requests = 8u8;
    for id in 0..requests {
        let f = transport::EncodedFrame::rpc_request(id.into(), Bytes::from(vec![id + 1])).unwrap();
        raw.write_all(f.header()).unwrap();
        raw.write_all(f.body()).unwrap();
    }
    let mut got = 0;
    let mut piece = [0u8; 1000];
    let mut stream = Vec::new();
    while got < requests {
        let n = match raw.read(&mut piece) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading responses: {e}"),
        };
        assert!(n > 0, "the server closed the connection");
        stream.extend_from_slice(&piece[..n]);
        std::thread::sleep(Duration::from_micros(50));
        while stream.len() >= 21 {
            let len = i64::from_be_bytes(stream[..8].try_into().unwrap()) as usize;
            if stream.len() < len {
                break;
            }
            let frame: Vec<u8> = stream.drain(..len).collect();
            assert_eq!(frame[8], 4, "an RpcResponse");
            let id = i64::from_be_bytes(frame[9..17].try_into().unwrap());
            assert_eq!(id, i64::from(got), "responses in order");
            let seed = got + 1;
            let body = &frame[21..];
            assert_eq!(body.len(), 256 << 10);
            assert!(
                body.iter()
                    .enumerate()
                    .all(|(i, b)| *b == (i as u8).wrapping_mul(seed | 1)),
                "response {got} intact"
            );
            got += 1;
        }
    }
    t.shutdown();
}

/// Large frames back to back: after a frame read straight into its own
/// buffer, the next recv takes a single provided buffer, so each further
/// frame costs the loop about one provided buffer (replaced from the pool)
/// plus its own body buffer. A multishot recv there filled a run of
/// provided buffers with the next frame's body before its cancellation
/// landed (each a copy the direct read avoids): about 50 pool buffers per
/// frame (800 KiB of each 1 MiB copied) with the rule removed, 2 with it.
#[test]
fn large_frames_back_to_back_take_one_provided_buffer_each() {
    use std::io::Write;

    let conf = conf();
    let pool = transport::BufferPool::new(conf.pool_max_bytes);
    let t = UringTransport::with_uring_conf(conf, pool.clone(), UringConf::default()).unwrap();
    let recorder = Arc::new(Recorder::default());
    let server = t.bind(local(), recorder.clone()).unwrap();
    let mut raw = std::net::TcpStream::connect(server.local_addr()).unwrap();
    const BODY: usize = 1 << 20;
    let frame = transport::EncodedFrame::one_way(Bytes::from(vec![7u8; BODY])).unwrap();
    let mut wire = frame.header().to_vec();
    wire.extend_from_slice(frame.body());
    let served = |p: &transport::BufferPool| {
        let s = p.stats();
        s.served_from_pool + s.served_fresh
    };
    // Warm-up: the first frame arrives through a multishot recv.
    for _ in 0..2 {
        raw.write_all(&wire).unwrap();
    }
    wait_until("the warm-up frames arrive", || {
        recorder.received.load(Ordering::SeqCst) == 2 * BODY
    });
    let before = served(&pool);
    const FRAMES: usize = 32;
    let writer = std::thread::spawn(move || {
        for _ in 0..FRAMES {
            raw.write_all(&wire).unwrap();
        }
        raw
    });
    wait_until("the frames arrive", || {
        recorder.received.load(Ordering::SeqCst) == (FRAMES + 2) * BODY
    });
    let per_frame = (served(&pool) - before) as f64 / FRAMES as f64;
    // Small frames after them go back to multishot recvs and arrive too.
    let mut raw = writer.join().unwrap();
    let small = transport::EncodedFrame::one_way(Bytes::from_static(b"small")).unwrap();
    for _ in 0..100 {
        raw.write_all(small.header()).unwrap();
        raw.write_all(small.body()).unwrap();
    }
    wait_until("the small frames arrive", || {
        recorder.received.load(Ordering::SeqCst) == (FRAMES + 2) * BODY + 500
    });
    // One body buffer and one provided buffer per frame; an ENOBUFS-free
    // stream may take a second provided buffer now and then.
    assert!(
        per_frame <= 3.0,
        "{per_frame:.1} pool buffers per 1 MiB frame: a run of provided buffers was filled with a body meant to be read directly"
    );
    t.shutdown();
}

/// `direct_read_min: 0` (read every frame in progress straight into its own
/// buffer) still needs the provided buffers for the bytes between frames: a
/// direct read with no frame in progress was a zero-byte recv, whose result,
/// 0, closed every connection as if its peer had. RPCs of 0, 5 bytes, 64 KiB
/// and 1 MiB, in turn, now go through on both ends.
#[test]
fn a_zero_direct_read_min_still_reads_between_frames() {
    let t = transport(UringConf {
        direct_read_min: 0,
        ..UringConf::default()
    });
    let server = t.bind(local(), Arc::new(Recorder::default())).unwrap();
    let client = t
        .connect(server.local_addr(), Arc::new(Recorder::default()))
        .unwrap();
    for round in 0..3u8 {
        for len in [0, 5, 64 << 10, 1 << 20] {
            let body = Bytes::from(vec![round ^ (len as u8); len]);
            let answer = rpc(&client, body.clone())
                .unwrap_or_else(|e| panic!("round {round}: RPC of {len} bytes: {e}"));
            assert_eq!(answer, body, "round {round}: echo of {len} bytes");
        }
    }
    t.shutdown();
}

/// A 2-buffer ring of 512 B buffers with `direct_read_min` at 1 KiB, and 16
/// connections each sending 4 KiB and 10-byte frames in turn: every 4 KiB
/// frame is finished by a direct read and followed by a single-shot recv,
/// which the dry ring often answers with `ENOBUFS`. Every byte still
/// arrives, in order.
#[test]
fn single_shot_recvs_on_a_dry_ring_lose_nothing() {
    let t = transport(UringConf {
        buf_ring_entries: 2,
        buf_size: 512,
        direct_read_min: 1 << 10,
        ..UringConf::default()
    });
    let server_side = Arc::new(Recorder::default());
    let server = t.bind(local(), server_side.clone()).unwrap();
    const CONNS: usize = 16;
    const MSGS: usize = 200;
    let len = |m: usize| if m.is_multiple_of(2) { 4 << 10 } else { 10 };
    let byte = |c: usize, m: usize, i: usize| (c * 31 + m * 7 + i) as u8;
    let threads: Vec<_> = (0..CONNS)
        .map(|c| {
            let client = t
                .connect(server.local_addr(), Arc::new(Recorder::default()))
                .unwrap();
            std::thread::spawn(move || {
                // The first byte names the sender.
                client.send_one_way(Bytes::from(vec![c as u8])).unwrap();
                for m in 0..MSGS {
                    let body: Vec<u8> = (0..len(m)).map(|i| byte(c, m, i)).collect();
                    client.send_one_way(Bytes::from(body)).unwrap();
                }
                client
            })
        })
        .collect();
    let per_conn = 1 + (0..MSGS).map(len).sum::<usize>();
    let _clients: Vec<_> = threads.into_iter().map(|th| th.join().unwrap()).collect();
    wait_until("every byte arrived", || {
        server_side.received.load(Ordering::SeqCst) >= CONNS * per_conn
    });
    let map = server_side.one_way.lock().unwrap();
    assert_eq!(map.len(), CONNS);
    for bytes in map.values() {
        assert_eq!(bytes.len(), per_conn, "a connection lost or gained bytes");
        let c = bytes[0] as usize;
        let mut at = 1;
        for m in 0..MSGS {
            for i in 0..len(m) {
                assert_eq!(bytes[at], byte(c, m, i), "connection {c}, message {m}, byte {i}");
                at += 1;
            }
        }
    }
    drop(map);
    t.shutdown();
}

//! Floods from raw sockets, on both IO modes, one at a time (they measure this
//! process's file descriptors and memory): 200,000 tiny frames on one
//! connection while another client is served, and 10,000 connections opened
//! and dropped. The server keeps serving; descriptors, pooled bytes and
//! resident memory come back.

mod suite;
#[macro_use]
mod support;

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc::RpcEndpointRef;
use support::raw::{Raw, u64_envelope, wire};
use support::watch::{Counter, Watcher};
use support::{capture_logs, client_with, log_lines, logged, plain, rss_kib, server_with};
use transport::{EncodedFrame, Frame, IoMode};

/// The cases share the process's descriptor and memory counts: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Resident memory may grow by this much (allocator caches, thread stacks).
const RSS_MARGIN_KIB: u64 = 256 << 10;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tiny_frames_flood(mode: IoMode) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    capture_logs();
    let s = server_with(mode, "server", |c| c.transport.pool_max_bytes = 8 << 20);
    s.setup_endpoint("count", Counter::default()).unwrap();
    let (h, _) = Watcher::new();
    s.setup_endpoint("h", h).unwrap();
    let c = client_with(mode, "client", plain);
    let healthy: RpcEndpointRef<u64, u64> = c.setup_endpoint_ref(s.address().unwrap(), "h").unwrap();
    assert_eq!(healthy.ask_sync(1).unwrap(), 2);
    let rss0 = rss_kib();

    // 200,000 one-way frames with a 1-byte body (no valid envelope: each is
    // refused and logged), then 50,000 valid tiny ones, then an ask.
    const BAD: usize = 200_000;
    const GOOD: u64 = 50_000;
    let bad = wire(&EncodedFrame::one_way(Bytes::from_static(b"x")).unwrap());
    let mut bytes: Vec<u8> = bad.repeat(BAD);
    for i in 0..GOOD {
        bytes.extend(wire(&EncodedFrame::one_way(u64_envelope("count", i)).unwrap()));
    }
    let addr = s.address().unwrap().to_string();
    let mut raw = Raw::connect(&addr);
    let me = raw.stream.local_addr().unwrap().to_string();
    let flood = std::thread::spawn(move || {
        raw.send_bytes(&bytes).unwrap();
        raw.rpc(1, u64_envelope("count", 0)).unwrap();
        raw
    });
    let mut worst = Duration::ZERO;
    let mut asks = 0;
    while !flood.is_finished() || asks < 10 {
        let started = Instant::now();
        assert_eq!(healthy.ask_sync(asks).unwrap(), asks + 1);
        worst = worst.max(started.elapsed());
        asks += 1;
    }
    let mut raw = flood.join().unwrap();
    // The ask after the flood is answered once every frame before it was handled.
    match raw.next_frame() {
        Some(Frame::RpcResponse { request_id: 1, .. }) => {}
        other => panic!("the flooding connection stays usable: {other:?}"),
    }
    let count: RpcEndpointRef<u64, u64> = c.endpoint_ref(s.address().unwrap(), "count");
    wait_until("every valid message is counted", || {
        count.ask_sync(0).unwrap() == GOOD
    });
    assert!(
        worst < Duration::from_secs(2),
        "another client waited {worst:?} during the flood"
    );
    drop(raw);
    // Every bad message is dropped, and logged sparingly: the 1st, 10th, ... 100,000th.
    assert!(logged(&[
        &me,
        "dropping a one-way message",
        "dropped_on_this_connection=100000"
    ]));
    let lines = log_lines(&format!("peer={me} error=invalid message"));
    assert_eq!(
        lines.len(),
        6,
        "log lines for one flooding connection: {lines:#?}"
    );
    let pool = s.pool_stats();
    assert!(pool.bytes_held <= pool.max_held_bytes, "{pool:?}");
    let grown = rss_kib().saturating_sub(rss0);
    assert!(grown < RSS_MARGIN_KIB, "resident memory grew by {grown} KiB");
}

fn ten_thousand_connections(mode: IoMode) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = server_with(mode, "server", |c| c.transport.pool_max_bytes = 8 << 20);
    let (h, _) = Watcher::new();
    s.setup_endpoint("h", h).unwrap();
    let c = client_with(mode, "client", plain);
    let healthy: RpcEndpointRef<u64, u64> = c.setup_endpoint_ref(s.address().unwrap(), "h").unwrap();
    assert_eq!(healthy.ask_sync(1).unwrap(), 2);
    let (fds0, rss0) = (open_fds(), rss_kib());
    let addr = s.address().unwrap().to_socket_addr().unwrap();
    // 20 batches of 500 (each connection costs two descriptors here while open).
    for batch in 0..20 {
        let conns: Vec<TcpStream> = (0..500).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for (i, conn) in conns.into_iter().enumerate() {
            if batch % 4 != 0 || i % 2 == 0 {
                // Reset rather than close: no TIME_WAIT left on the port range.
                socket2::SockRef::from(&conn)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
        }
        assert_eq!(
            healthy.ask_sync(batch).unwrap(),
            batch + 1,
            "serving during batch {batch}"
        );
    }
    wait_until("the server has closed its side of every connection", || {
        open_fds() <= fds0 + 2
    });
    assert_eq!(healthy.ask_sync(7).unwrap(), 8, "serving normally afterwards");
    let late = client_with(mode, "late", plain);
    let again: RpcEndpointRef<u64, u64> = late.setup_endpoint_ref(s.address().unwrap(), "h").unwrap();
    assert_eq!(again.ask_sync(9).unwrap(), 10, "a new client is served");
    let pool = s.pool_stats();
    assert!(pool.bytes_held <= pool.max_held_bytes, "{pool:?}");
    let grown = rss_kib().saturating_sub(rss0);
    assert!(grown < RSS_MARGIN_KIB, "resident memory grew by {grown} KiB");
}

/// 200 connections each announce a 120 MiB frame (under the 128 MiB maximum)
/// and send a few bytes of it: the server must not commit 24 GiB for them.
fn large_frame_claims_commit_no_memory(mode: IoMode) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = server_with(mode, "server", plain);
    let (h, _) = Watcher::new();
    s.setup_endpoint("h", h).unwrap();
    let c = client_with(mode, "client", plain);
    let healthy: RpcEndpointRef<u64, u64> = c.setup_endpoint_ref(s.address().unwrap(), "h").unwrap();
    assert_eq!(healthy.ask_sync(1).unwrap(), 2);
    let rss0 = rss_kib();
    let addr = s.address().unwrap().to_string();
    let claim = [&(120i64 << 20).to_be_bytes()[..], &[3], &[0u8; 64]].concat();
    let raws: Vec<Raw> = (0..200)
        .map(|_| {
            let mut raw = Raw::connect(&addr);
            raw.send_bytes(&claim).unwrap();
            raw
        })
        .collect();
    assert_eq!(healthy.ask_sync(2).unwrap(), 3);
    std::thread::sleep(Duration::from_millis(200));
    let grown = rss_kib().saturating_sub(rss0);
    assert!(
        grown < RSS_MARGIN_KIB,
        "resident memory grew by {grown} KiB for 200 claims"
    );
    drop(raws);
    assert_eq!(healthy.ask_sync(3).unwrap(), 4);
}

both_io_modes!(
    tiny_frames_flood,
    ten_thousand_connections,
    large_frame_claims_commit_no_memory
);

#[test]
fn peer_process_main() {
    suite::peer::peer_main();
}

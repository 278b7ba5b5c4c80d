//! Heap allocations of a server that answers many connections at once, on
//! both backends, counted process-wide by a global allocator (this binary
//! holds this one test, so nothing else runs beside it).
//!
//! 256 connections, one request each per round; the server holds every
//! request of a round and answers all 256 from its event-loop thread when the
//! last one arrives, so that one loop turn flushes every connection and 256
//! sends are in flight together. Once warm, a round allocates nothing. On
//! io_uring each send in flight holds a scratch space (`iovec`s and
//! `msghdr`); the loop kept at most 64 of them between sends, so past 64
//! connections answering at once, every round dropped and re-allocated the
//! rest (two allocations each), as `rpc-bench --level rpc-loop --conns 256`
//! showed on io_uring and not on epoll.

#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::{
    BufferPool, ResponseHandler, RpcResponseListener, Transport, TransportClient, TransportConf,
    TransportError, TransportHandler,
};
use transport_epoll::EpollTransport;
use transport_uring::{UringConf, UringTransport};

static ALLOCS: AtomicU64 = AtomicU64::new(0);

struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; counting touches only an atomic.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CONNS: usize = 256;
const WARM_ROUNDS: usize = 8;
const ROUNDS: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(30);
static REPLY: &[u8] = b"pong";

/// Holds a round's requests and answers them all when the last one arrives.
struct AnswerTogether {
    held: Mutex<Vec<(TransportClient, i64)>>,
}

impl TransportHandler for AnswerTogether {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, _body: Bytes) {
        let mut held = self.held.lock().unwrap();
        held.push((client.clone(), request_id));
        if held.len() == CONNS {
            for (client, id) in held.drain(..) {
                client.send_response(id, Bytes::from_static(REPLY)).unwrap();
            }
        }
    }
    fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
}

struct Ignore;

impl TransportHandler for Ignore {
    fn receive_rpc(&self, _: &TransportClient, _: i64, _: Bytes) {}
    fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
}

/// Counts answers; a failed request is counted apart.
#[derive(Default)]
struct Answers {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

impl RpcResponseListener for Answers {
    fn on_response(self: Arc<Self>, _: i64, result: Result<Bytes, TransportError>) {
        match result {
            Ok(body) if &body[..] == REPLY => self.ok.fetch_add(1, Ordering::Release),
            _ => self.failed.fetch_add(1, Ordering::Release),
        };
    }
}

fn conf() -> TransportConf {
    TransportConf {
        server_threads: 1,
        client_threads: 1,
        connect_timeout_ms: 10_000,
        ..TransportConf::default()
    }
}

/// Heap allocations of the whole process in [`ROUNDS`] rounds, once warm.
fn allocations_in_rounds(transport: &dyn Transport) -> u64 {
    let handler = Arc::new(AnswerTogether {
        held: Mutex::new(Vec::with_capacity(CONNS)),
    });
    let server = transport
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)), handler)
        .unwrap();
    let clients: Vec<TransportClient> = (0..CONNS)
        .map(|_| transport.connect(server.local_addr(), Arc::new(Ignore)).unwrap())
        .collect();
    let answers = Arc::new(Answers::default());
    let round = |n: usize| {
        for c in &clients {
            let listener: Arc<dyn RpcResponseListener> = answers.clone();
            if c.send_rpc_with(Bytes::from_static(b"ping"), ResponseHandler::Listener(listener))
                .is_err()
            {
                panic!("a request could not be sent");
            }
        }
        let deadline = Instant::now() + TIMEOUT;
        while answers.ok.load(Ordering::Acquire) < n * CONNS {
            assert_eq!(answers.failed.load(Ordering::Acquire), 0, "a request failed");
            assert!(Instant::now() < deadline, "round {n} timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    for n in 1..=WARM_ROUNDS {
        round(n);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for n in WARM_ROUNDS + 1..=WARM_ROUNDS + ROUNDS {
        round(n);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    drop(clients);
    drop(server);
    transport.shutdown();
    allocs
}

#[test]
fn answering_every_connection_at_once_allocates_nothing_on_both_backends() {
    let uring = UringTransport::with_uring_conf(conf(), BufferPool::new(64 << 20), UringConf::default())
        .expect("io_uring is available on this machine");
    let epoll = EpollTransport::new(conf()).unwrap();
    let on_uring = allocations_in_rounds(&uring);
    let on_epoll = allocations_in_rounds(&epoll);
    // Zero is what a warm round makes; fewer than one per round leaves room
    // for a queue reaching a new high on a loaded machine. The scratch
    // spaces re-allocated past 64 sends in flight came to about 700 a round.
    assert!(
        on_uring < ROUNDS as u64 && on_epoll < ROUNDS as u64,
        "allocations in {ROUNDS} rounds of {CONNS} requests answered at once: \
         {on_uring} on io_uring, {on_epoll} on epoll (want fewer than one a round)"
    );
}

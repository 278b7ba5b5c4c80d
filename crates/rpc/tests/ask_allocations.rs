//! Heap allocations of `RpcEndpointRef::ask_with` in steady state, counted
//! process-wide by a global allocator (this binary holds this one test, so
//! nothing else runs beside it), on both IO modes one after the other.
//!
//! A client asks a remote inline endpoint in rounds of 64 asks in flight,
//! from one thread; once warm, a round allocates nothing: the asks' shared
//! state comes from the asking thread's recycler (Netty's `Recycler`), the
//! message is encoded into a per-thread buffer, the frames go out from the
//! connection's queue and the answers are read in place. Before the
//! recycler, every ask allocated its state (one allocation per ask).

#![allow(missing_docs)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc::{Msg, RpcEndpointRef, RpcEnv, RpcEnvConfig};
use support::endpoints::Increment;
use transport::IoMode;

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

/// Asks in flight per round.
const IN_FLIGHT: u64 = 64;
/// Rounds to warm up (connection, pools, queues reach their sizes), then to count.
const WARM_ROUNDS: u64 = 50;
const COUNTED_ROUNDS: u64 = 50;

/// Runs `rounds` rounds of [`IN_FLIGHT`] asks and waits for each round's answers;
/// panics on a wrong or failed answer.
fn ask_rounds(
    endpoint: &RpcEndpointRef<u64, u64>,
    rounds: u64,
    answered: &Arc<AtomicU64>,
    failed: &Arc<AtomicU64>,
) {
    let waiter = std::thread::current();
    for _ in 0..rounds {
        let target = answered.load(Ordering::Acquire) + IN_FLIGHT;
        for n in 0..IN_FLIGHT {
            let (answered, failed, waiter) = (answered.clone(), failed.clone(), waiter.clone());
            endpoint.ask_with(n, move |reply| {
                let right = match reply {
                    Ok(Msg::Remote(m)) => m.to_native() == n + 1,
                    Ok(Msg::Local(m)) => m == n + 1,
                    Err(_) => false,
                };
                if !right {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                answered.fetch_add(1, Ordering::Release);
                waiter.unpark();
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while answered.load(Ordering::Acquire) < target {
            assert!(
                Instant::now() < deadline,
                "a round's answers did not all come within 10 s"
            );
            std::thread::park_timeout(Duration::from_millis(100));
        }
        assert_eq!(
            failed.load(Ordering::Relaxed),
            0,
            "an ask failed or got a wrong answer"
        );
    }
}

/// Asks `count` times with `ask_sync`, one after another; panics on a wrong answer.
fn ask_sync_many(endpoint: &RpcEndpointRef<u64, u64>, count: u64) {
    for n in 0..count {
        assert_eq!(endpoint.ask_sync(n).map_err(|e| e.to_string()), Ok(n + 1));
    }
}

/// Allocations per ask over [`COUNTED_ROUNDS`] warm rounds on `mode`: of
/// `ask_with`, then of `ask_sync` (as many asks, one at a time).
fn allocations_per_ask(mode: IoMode) -> (f64, f64) {
    let mut server_conf = RpcEnvConfig::server("server", SocketAddr::from(([127, 0, 0, 1], 0)));
    server_conf.transport.io_mode = mode;
    let server = RpcEnv::create(server_conf).expect("server RpcEnv");
    server
        .setup_inline_endpoint("increment", Increment)
        .expect("register the endpoint");
    let mut client_conf = RpcEnvConfig::client("client");
    client_conf.transport.io_mode = mode;
    let client = RpcEnv::create(client_conf).expect("client RpcEnv");
    let endpoint = client
        .setup_endpoint_ref::<u64, u64>(server.address().expect("server address"), "increment")
        .expect("a reference to the endpoint");
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    ask_rounds(&endpoint, WARM_ROUNDS, &answered, &failed);
    let before = ALLOCS.load(Ordering::Relaxed);
    ask_rounds(&endpoint, COUNTED_ROUNDS, &answered, &failed);
    let with_allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let asks = COUNTED_ROUNDS * IN_FLIGHT;
    ask_sync_many(&endpoint, asks);
    let before = ALLOCS.load(Ordering::Relaxed);
    ask_sync_many(&endpoint, asks);
    let sync_allocs = ALLOCS.load(Ordering::Relaxed) - before;
    client.shutdown();
    server.shutdown();
    (with_allocs as f64 / asks as f64, sync_allocs as f64 / asks as f64)
}

#[test]
fn ask_with_and_ask_sync_allocate_nothing_once_warm_on_both_io_modes() {
    for mode in [IoMode::Epoll, IoMode::IoUring] {
        let (per_ask_with, per_ask_sync) = allocations_per_ask(mode);
        // Other threads of the process (timer, loops) may allocate now and
        // then; an allocation per ask would show as 1.0.
        assert!(
            per_ask_with < 0.01,
            "{mode:?}: {per_ask_with:.3} heap allocations per ask_with once warm (expected none)"
        );
        assert!(
            per_ask_sync < 0.01,
            "{mode:?}: {per_ask_sync:.3} heap allocations per ask_sync once warm (expected none)"
        );
    }
}

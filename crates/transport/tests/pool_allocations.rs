//! Heap allocations of the buffer pool's steady state, counted by a global
//! allocator that counts per thread (so tests running in parallel do not
//! count each other): allocate → fill → freeze → slice → drop cycles, on one
//! thread and with the last `Bytes` dropped on another, and a decoder fed
//! pooled chunks the way the backends' read loops feed it, allocate nothing
//! once the pool is warm.

#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use transport::{BufferPool, EncodedFrame, FrameDecoder};

struct CountingAlloc;

thread_local! {
    /// Allocations by this thread. Const-initialized, no destructor: reading
    /// it inside the allocator never allocates.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; counting touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
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

/// Allocations this thread makes while running `f`.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

fn cycle(pool: &BufferPool, size: usize, fill: usize) -> Bytes {
    let mut buf = pool.allocate(size);
    buf.spare_mut()[..fill].fill(7);
    buf.commit(fill);
    buf.freeze()
}

#[test]
fn freeze_drop_allocate_cycles_allocate_nothing() {
    for size in [512usize, 16 << 10, 64 << 10, 1 << 20] {
        let pool = BufferPool::new(64 << 20);
        drop(cycle(&pool, size, size / 2)); // warm: the buffer and its shared header
        let n = allocations_in(|| {
            for i in 0..1000 {
                let bytes = cycle(&pool, size, 1 + i % size);
                let head = bytes.slice(..1);
                let clone = bytes.clone();
                drop(bytes);
                assert_eq!(head[0], 7);
                drop((head, clone));
            }
        });
        assert_eq!(n, 0, "{size}-byte buffers: {n} allocations in 1000 cycles");
        assert_eq!(pool.stats().served_fresh, 1, "{:?}", pool.stats());
    }
}

#[test]
fn unfrozen_drops_allocate_nothing() {
    let pool = BufferPool::new(64 << 20);
    drop(pool.allocate(4096));
    let n = allocations_in(|| {
        for _ in 0..1000 {
            let mut b = pool.allocate(4096);
            b.put_slice(b"abc");
            drop(b);
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn bytes_dropped_on_another_thread_allocate_nothing() {
    const BATCH: usize = 32;
    let pool = BufferPool::new(64 << 20);
    let inbox: Arc<Mutex<Vec<Bytes>>> = Arc::new(Mutex::new(Vec::with_capacity(BATCH)));
    let emptied = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let dropper_allocs = Arc::new(AtomicU64::new(0));
    let dropper = {
        let (inbox, emptied, stop, allocs) = (
            inbox.clone(),
            emptied.clone(),
            stop.clone(),
            dropper_allocs.clone(),
        );
        std::thread::spawn(move || {
            let n = allocations_in(|| {
                while !stop.load(Ordering::Acquire) {
                    if !emptied.load(Ordering::Acquire) {
                        inbox.lock().unwrap().clear();
                        emptied.store(true, Ordering::Release);
                    }
                    std::thread::yield_now();
                }
            });
            allocs.store(n, Ordering::Relaxed);
        })
    };
    let round = |pool: &BufferPool| {
        while !emptied.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let mut inbox = inbox.lock().unwrap();
        for i in 0..BATCH {
            inbox.push(cycle(pool, 16 << 10, 100 + i));
        }
        drop(inbox);
        emptied.store(false, Ordering::Release);
    };
    round(&pool); // warm: BATCH buffers
    round(&pool); // the first batch may still be in flight: up to BATCH more
    while !emptied.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let fresh = pool.stats().served_fresh;
    let n = allocations_in(|| {
        for _ in 0..200 {
            round(&pool);
            while !emptied.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
        }
    });
    stop.store(true, Ordering::Release);
    dropper.join().unwrap();
    assert_eq!(n, 0, "freezing thread: {n} allocations in 200 rounds");
    assert_eq!(dropper_allocs.load(Ordering::Relaxed), 0, "dropping thread");
    assert_eq!(pool.stats().served_fresh, fresh, "{:?}", pool.stats());
}

#[test]
fn decoding_pooled_chunks_allocates_nothing() {
    let pool = BufferPool::new(64 << 20);
    let mut decoder = FrameDecoder::new(1 << 20, pool.clone());
    let mut wire = Vec::new();
    for i in 0..8u64 {
        let frame = EncodedFrame::rpc_request(i as i64, Bytes::from(vec![i as u8; 100])).unwrap();
        wire.extend_from_slice(frame.header());
        wire.extend_from_slice(frame.body());
    }
    let mut frames = 0u64;
    let feed = |decoder: &mut FrameDecoder, frames: &mut u64| {
        let mut buf = pool.allocate(16 << 10);
        buf.put_slice(&wire);
        decoder
            .decode(buf.freeze(), &mut |f| {
                *frames += 1;
                drop(f)
            })
            .unwrap();
    };
    feed(&mut decoder, &mut frames);
    let n = allocations_in(|| {
        for _ in 0..500 {
            feed(&mut decoder, &mut frames);
        }
    });
    assert_eq!(frames, 501 * 8);
    assert_eq!(n, 0, "{n} allocations decoding 500 pooled chunks");
}

#[test]
fn fresh_buffers_allocate_when_allocated_never_when_frozen() {
    let pool = BufferPool::new(64 << 20);
    drop(cycle(&pool, 16 << 10, 1)); // warm: this thread's cache of the pool
    let mut held = Vec::with_capacity(4);
    let allocate = allocations_in(|| {
        for _ in 0..4 {
            held.push(pool.allocate(16 << 10));
        }
    });
    // The warm buffer comes back: nothing. Each of the three fresh ones: its
    // memory and its shared header, both now.
    assert_eq!(allocate, 6, "{allocate} allocations for 3 fresh buffers");
    let n = allocations_in(|| {
        for mut buf in held.drain(..) {
            buf.put_slice(b"abc");
            assert_eq!(&buf.freeze()[..], b"abc");
        }
    });
    assert_eq!(n, 0, "{n} allocations freezing never-frozen buffers");
    assert_eq!(pool.stats().served_fresh, 4, "{:?}", pool.stats());
}

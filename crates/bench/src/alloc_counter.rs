//! Counts heap allocations, for the record's `allocs_per_op`.
//!
//! [`CountingAlloc`] wraps the system allocator and counts every `alloc`,
//! `alloc_zeroed` and `realloc` (a `realloc` may move the block, so it counts as one
//! allocation; frees are not counted). The `rpc-bench` binary installs it as its
//! `#[global_allocator]`; a process that does not (the unit tests) counts nothing and
//! [`allocations`] says `None`.
//!
//! Counting is sharded: each thread adds to one of [`SHARDS`] cache-line-sized counters
//! (picked round-robin on its first allocation), so the event-loop threads of a run never
//! bounce a shared counter between cores. A count is one relaxed `fetch_add` on a line the
//! thread usually owns.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters the threads of a process spread over.
pub const SHARDS: usize = 32;

/// One counter on a cache line (two, against adjacent-line prefetching) of its own.
#[repr(align(128))]
struct Shard(AtomicU64);

static COUNTS: [Shard; SHARDS] = [const { Shard(AtomicU64::new(0)) }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard; `usize::MAX` until its first allocation. Const-initialized and
    /// without a destructor, so reading it never allocates (it is read inside the allocator).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn count() {
    let shard = SHARD
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                s.set(i);
            }
            i
        })
        .unwrap_or(0);
    COUNTS[shard].0.fetch_add(1, Ordering::Relaxed);
}

/// The system allocator, counting allocations (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counting beside it only touches atomics and a const-initialized
// thread-local without destructor, so it never allocates, re-enters the allocator or unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), forwarded as is.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`: the caller's layout is forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds `new_size`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations counted since the process started, or `None` when [`CountingAlloc`] is not
/// the global allocator (then nothing is ever counted: a Rust process allocates before `main`).
pub fn allocations() -> Option<u64> {
    let total: u64 = COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_through_the_wrapper() {
        let before: u64 = COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a non-zero layout; the block is grown, then freed with its current layout.
        unsafe {
            let p = CountingAlloc.alloc(layout);
            assert!(!p.is_null());
            let p = CountingAlloc.realloc(p, layout, 128);
            assert!(!p.is_null());
            CountingAlloc.dealloc(p, Layout::from_size_align(128, 8).unwrap());
        }
        let after: u64 = COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
        assert!(after >= before + 2);
        assert!(allocations().is_some());
    }
}

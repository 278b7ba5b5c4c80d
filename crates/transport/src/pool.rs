//! A pooled buffer allocator in the spirit of Netty's `PooledByteBufAllocator`.
//!
//! Buffers come in power-of-two size classes from [`MIN_CLASS_SIZE`] (512 B)
//! to [`MAX_CLASS_SIZE`] (16 MiB); larger requests are served fresh and freed
//! on drop. Freed buffers go first to a small per-thread cache (Netty's
//! `PoolThreadCache`: no lock, no contention for a buffer freed on the thread
//! that will reuse it), then to a shared free list per class. The pool holds at
//! most [`BufferPool::max_held_bytes`] of buffers; a buffer given back past
//! that bound is left to the system allocator.
//!
//! A [`PooledBufMut`] is written into, then [`frozen`](PooledBufMut::freeze)
//! into a [`Bytes`](bytes::Bytes) over the same memory: slices of it share that
//! memory, and freezing allocates nothing. Each pooled buffer is one
//! [`BytesMut`] allocated once, with its shared header (two heap allocations,
//! both when the pool allocates it, none later); freezing cuts the filled bytes off
//! it (`split_to(..).freeze()`) and gives the emptied handle straight back to
//! the pool. The handle is reusable once every `Bytes` cut from it has dropped,
//! on whatever thread: [`BufferPool::allocate`] tries returned handles oldest
//! first with [`BytesMut::try_reclaim`], skips (and keeps) those still
//! referenced, and allocates fresh only when none of the first few is free.
//! So "held" means: buffers the pool keeps a handle to, whether idle or still
//! read through a `Bytes` frozen from them.

mod buf;
mod thread_cache;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

pub use buf::PooledBufMut;

/// Smallest size class, in bytes.
pub const MIN_CLASS_SIZE: usize = 512;
/// Largest pooled size class, in bytes (16 MiB); larger buffers are not pooled.
pub const MAX_CLASS_SIZE: usize = 16 << 20;
const NUM_CLASSES: usize = (MAX_CLASS_SIZE / MIN_CLASS_SIZE).trailing_zeros() as usize + 1;
/// Returned buffers [`BufferPool::allocate`] tries per list (thread cache, then
/// shared list) before it allocates fresh; a tried buffer that is still
/// referenced moves to the back of its list. Bounds the work of one allocate
/// when many returned buffers are still being read.
const RECLAIM_TRIES: usize = 8;

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Counters of a pool, read with [`BufferPool::stats`]. All counts since the pool was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers handed out from a free list (no system allocation).
    pub served_from_pool: u64,
    /// Buffers handed out freshly allocated (no returned buffer of the class
    /// was free, or larger than 16 MiB).
    pub served_fresh: u64,
    /// Buffers given back and kept for reuse: dropped unfrozen, or frozen (a
    /// frozen buffer comes back at once and is reused after its last `Bytes`
    /// drops).
    pub returned: u64,
    /// Buffers given back but not kept, because keeping them would pass the
    /// bound or they are larger than the largest class (their memory is freed
    /// when their last `Bytes` drops).
    pub released: u64,
    /// Returned buffers that `allocate` tried and passed over because a
    /// `Bytes` frozen from them was still alive (each try counts; the buffer
    /// stays in the pool and is tried again later).
    pub skipped_busy: u64,
    /// Bytes of buffers the pool holds now (shared lists and thread caches),
    /// by class size, whether idle or still read through a `Bytes`.
    pub bytes_held: u64,
    /// The bound on `bytes_held`, in bytes.
    pub max_held_bytes: u64,
}

/// Returned buffers of one class: emptied `BytesMut` handles of `class_size`
/// bytes each, oldest first.
type FreeList = VecDeque<BytesMut>;

struct Shared {
    id: u64,
    max_held: usize,
    held: AtomicUsize,
    classes: Vec<Mutex<FreeList>>,
    served_from_pool: AtomicU64,
    served_fresh: AtomicU64,
    returned: AtomicU64,
    released: AtomicU64,
    skipped_busy: AtomicU64,
}

/// A pool of byte buffers. Cheap to clone (an `Arc`); clones share one pool.
#[derive(Clone)]
pub struct BufferPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Size class index of a request of `size` bytes; `None` above [`MAX_CLASS_SIZE`].
fn class_of(size: usize) -> Option<usize> {
    if size > MAX_CLASS_SIZE {
        return None;
    }
    let rounded = size.max(MIN_CLASS_SIZE).next_power_of_two();
    Some((rounded / MIN_CLASS_SIZE).trailing_zeros() as usize)
}

fn class_size(class: usize) -> usize {
    MIN_CLASS_SIZE << class
}

/// Makes a returned handle of a `size`-byte buffer writable again, if no
/// `Bytes` cut from it is alive: then `true`, and `handle` spans `size`
/// initialized bytes (`len() == size`). `false` leaves it to be tried later.
fn reclaim(handle: &mut BytesMut, size: usize) -> bool {
    handle.clear();
    // `try_reclaim` never allocates: it succeeds when the handle's own spare
    // room already covers `size` (disjoint from every `Bytes` cut off it), or
    // when the handle is the last reference and resets it to the start of
    // the allocation.
    if !handle.try_reclaim(size) || handle.capacity() < size {
        return false;
    }
    // SAFETY: `len` becomes `size`, at most `capacity()` (checked above), so
    // the bytes lie inside the handle's own range of its allocation, which no
    // live `Bytes` overlaps (`try_reclaim` succeeded). They are initialized:
    // every pooled allocation is created by `BytesMut::zeroed(size)` in
    // `BufferPool::allocate`, `try_reclaim(_)` on a pooled handle keeps that
    // very allocation (it cannot allocate), and its bytes are only ever
    // written with initialized values (through `&mut [u8]` or by the kernel).
    unsafe { handle.set_len(size) };
    true
}

/// Takes the first reclaimable handle among the first [`RECLAIM_TRIES`] of
/// `list`, moving the busy ones it passes to the back. Returns it (if any)
/// and how many busy handles it passed.
fn take_reclaimable(list: &mut FreeList, size: usize) -> (Option<BytesMut>, u64) {
    let mut busy = 0;
    for _ in 0..list.len().min(RECLAIM_TRIES) {
        let Some(mut handle) = list.pop_front() else {
            break;
        };
        if reclaim(&mut handle, size) {
            return (Some(handle), busy);
        }
        busy += 1;
        list.push_back(handle);
    }
    (None, busy)
}

impl BufferPool {
    /// Creates a pool that holds at most `max_held_bytes` of buffers.
    pub fn new(max_held_bytes: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                max_held: max_held_bytes,
                held: AtomicUsize::new(0),
                classes: (0..NUM_CLASSES).map(|_| Mutex::new(VecDeque::new())).collect(),
                served_from_pool: AtomicU64::new(0),
                served_fresh: AtomicU64::new(0),
                returned: AtomicU64::new(0),
                released: AtomicU64::new(0),
                skipped_busy: AtomicU64::new(0),
            }),
        }
    }

    /// The bound on bytes held, in bytes.
    pub fn max_held_bytes(&self) -> usize {
        self.shared.max_held
    }

    /// A buffer with room for at least `size` bytes (its capacity is `size`
    /// rounded up to a power of two, at least 512 B), empty (`len() == 0`).
    /// Served from this thread's cache, then the shared list (a returned
    /// buffer some `Bytes` still reads is skipped), then the system allocator
    /// (zeroed memory and the shared header that lets it be frozen: two heap
    /// allocations; [`PooledBufMut::freeze`] then never allocates).
    pub fn allocate(&self, size: usize) -> PooledBufMut {
        let Some(class) = class_of(size) else {
            self.shared.served_fresh.fetch_add(1, Ordering::Relaxed);
            return PooledBufMut::new(BytesMut::zeroed(size), None);
        };
        let size = class_size(class);
        let (mut data, mut busy) = thread_cache::take_local(&self.shared, class);
        if data.is_none() {
            let mut list = self.shared.classes[class]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let (shared_data, shared_busy) = take_reclaimable(&mut list, size);
            data = shared_data;
            busy += shared_busy;
        }
        if busy > 0 {
            self.shared.skipped_busy.fetch_add(busy, Ordering::Relaxed);
        }
        let data = match data {
            Some(d) => {
                self.shared.held.fetch_sub(size, Ordering::Relaxed);
                self.shared.served_from_pool.fetch_add(1, Ordering::Relaxed);
                d
            }
            None => {
                self.shared.served_fresh.fetch_add(1, Ordering::Relaxed);
                let mut fresh = BytesMut::zeroed(size);
                // Share the memory now: an empty split promotes the new
                // `BytesMut` (allocating its shared header) and the empty half
                // drops at once, leaving this handle the only reference, as
                // after a reclaim. Left to the buffer's first freeze, that
                // allocation would come at a time nobody chose: the io_uring
                // backend fills its provided-buffer ring (256 slots) at start
                // and the kernel uses the slots in turn, so each slot's first
                // receive, hundreds of receives into a run, allocated.
                drop(fresh.split_to(0));
                fresh
            }
        };
        PooledBufMut::new(data, Some(self.shared.clone()))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            served_from_pool: s.served_from_pool.load(Ordering::Relaxed),
            served_fresh: s.served_fresh.load(Ordering::Relaxed),
            returned: s.returned.load(Ordering::Relaxed),
            released: s.released.load(Ordering::Relaxed),
            skipped_busy: s.skipped_busy.load(Ordering::Relaxed),
            bytes_held: s.held.load(Ordering::Relaxed) as u64,
            max_held_bytes: s.max_held as u64,
        }
    }
}

impl Default for BufferPool {
    /// A pool bounded at 64 MiB of held buffers.
    fn default() -> Self {
        Self::new(64 << 20)
    }
}

impl Shared {
    /// Takes back the handle of a `size`-byte buffer (some `Bytes` may still
    /// read it), keeping it if the bound allows.
    fn give_back(self: &Arc<Self>, data: BytesMut, size: usize) {
        let Some(class) = class_of(size).filter(|&c| class_size(c) == size) else {
            self.released.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Reserve room under the bound first, so concurrent returns cannot overshoot it.
        let reserved = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + size <= self.max_held).then_some(held + size)
            })
            .is_ok();
        if !reserved {
            self.released.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.returned.fetch_add(1, Ordering::Relaxed);
        let Some(data) = thread_cache::put_local(self, class, data) else {
            return;
        };
        self.classes[class]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(data);
    }
}

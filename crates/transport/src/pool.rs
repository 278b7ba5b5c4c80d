//! A pooled buffer allocator in the spirit of Netty's `PooledByteBufAllocator`.
//!
//! Buffers come in power-of-two size classes from [`MIN_CLASS_SIZE`] (512 B)
//! to [`MAX_CLASS_SIZE`] (16 MiB); larger requests are served fresh and freed
//! on drop. Freed buffers go first to a small per-thread cache (Netty's
//! `PoolThreadCache`: no lock, no contention for a buffer freed on the thread
//! that will reuse it), then to a shared free list per class. The pool holds at
//! most [`BufferPool::max_held_bytes`] of idle memory; a buffer freed past that
//! bound is released to the system allocator.
//!
//! A [`PooledBufMut`] is written into, then [`frozen`](PooledBufMut::freeze)
//! into a [`Bytes`] whose owner is the pooled buffer
//! ([`Bytes::from_owner`]): slices of it share the memory, and it goes back to
//! the pool when the last slice drops, on whatever thread that happens.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// Smallest size class, in bytes.
pub const MIN_CLASS_SIZE: usize = 512;
/// Largest pooled size class, in bytes (16 MiB); larger buffers are not pooled.
pub const MAX_CLASS_SIZE: usize = 16 << 20;
const NUM_CLASSES: usize = (MAX_CLASS_SIZE / MIN_CLASS_SIZE).trailing_zeros() as usize + 1;
/// Buffers of at most this size are kept in per-thread caches (Netty's
/// `maxCachedBufferCapacity`, 32 KiB there); larger ones go to the shared lists.
const THREAD_CACHE_MAX_CLASS: usize = 64 << 10;
/// Buffers kept per class in one thread's cache.
const THREAD_CACHE_PER_CLASS: usize = 64;

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Counters of a pool, read with [`BufferPool::stats`]. All counts since the pool was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers handed out from a free list (no system allocation).
    pub served_from_pool: u64,
    /// Buffers handed out freshly allocated (pool empty, or larger than 16 MiB).
    pub served_fresh: u64,
    /// Buffers given back and kept for reuse.
    pub returned: u64,
    /// Buffers given back but freed, because keeping them would pass the bound
    /// or they are larger than the largest class.
    pub released: u64,
    /// Bytes of idle buffers the pool holds now (shared lists and thread caches).
    pub bytes_held: u64,
    /// The bound on `bytes_held`, in bytes.
    pub max_held_bytes: u64,
}

struct Shared {
    id: u64,
    max_held: usize,
    held: AtomicUsize,
    classes: Vec<Mutex<Vec<Vec<u8>>>>,
    served_from_pool: AtomicU64,
    served_fresh: AtomicU64,
    returned: AtomicU64,
    released: AtomicU64,
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

impl BufferPool {
    /// Creates a pool that keeps at most `max_held_bytes` of idle buffers.
    pub fn new(max_held_bytes: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                max_held: max_held_bytes,
                held: AtomicUsize::new(0),
                classes: (0..NUM_CLASSES).map(|_| Mutex::new(Vec::new())).collect(),
                served_from_pool: AtomicU64::new(0),
                served_fresh: AtomicU64::new(0),
                returned: AtomicU64::new(0),
                released: AtomicU64::new(0),
            }),
        }
    }

    /// The bound on idle bytes held, in bytes.
    pub fn max_held_bytes(&self) -> usize {
        self.shared.max_held
    }

    /// A buffer with room for at least `size` bytes (its capacity is `size`
    /// rounded up to a power of two, at least 512 B), empty (`len() == 0`).
    /// Served from this thread's cache, then the shared list, then the system
    /// allocator.
    pub fn allocate(&self, size: usize) -> PooledBufMut {
        let Some(class) = class_of(size) else {
            self.shared.served_fresh.fetch_add(1, Ordering::Relaxed);
            return PooledBufMut {
                data: vec![0; size],
                filled: 0,
                pool: None,
            };
        };
        let data = self.take_local(class).or_else(|| {
            self.shared.classes[class]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
        });
        let data = match data {
            Some(d) => {
                self.shared.held.fetch_sub(d.len(), Ordering::Relaxed);
                self.shared.served_from_pool.fetch_add(1, Ordering::Relaxed);
                d
            }
            None => {
                self.shared.served_fresh.fetch_add(1, Ordering::Relaxed);
                vec![0; class_size(class)]
            }
        };
        PooledBufMut {
            data,
            filled: 0,
            pool: Some(self.shared.clone()),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            served_from_pool: s.served_from_pool.load(Ordering::Relaxed),
            served_fresh: s.served_fresh.load(Ordering::Relaxed),
            returned: s.returned.load(Ordering::Relaxed),
            released: s.released.load(Ordering::Relaxed),
            bytes_held: s.held.load(Ordering::Relaxed) as u64,
            max_held_bytes: s.max_held as u64,
        }
    }

    fn take_local(&self, class: usize) -> Option<Vec<u8>> {
        if class_size(class) > THREAD_CACHE_MAX_CLASS {
            return None;
        }
        let id = self.shared.id;
        THREAD_CACHES
            .try_with(|caches| {
                let mut caches = caches.borrow_mut();
                caches.iter_mut().find(|c| c.pool_id == id)?.lists[class].pop()
            })
            .ok()
            .flatten()
    }
}

impl Default for BufferPool {
    /// A pool bounded at 64 MiB of idle buffers.
    fn default() -> Self {
        Self::new(64 << 20)
    }
}

impl Shared {
    /// Takes back `data`, keeping it if the bound allows.
    fn give_back(self: &Arc<Self>, data: Vec<u8>) {
        let size = data.len();
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
        let data = if size <= THREAD_CACHE_MAX_CLASS {
            match put_local(self, class, data) {
                None => return,
                Some(d) => d,
            }
        } else {
            data
        };
        self.classes[class]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(data);
    }
}

/// Puts `data` in this thread's cache for the pool; gives it back when the cache is full
/// or the thread is exiting.
fn put_local(shared: &Arc<Shared>, class: usize, data: Vec<u8>) -> Option<Vec<u8>> {
    let mut data = Some(data);
    let _ = THREAD_CACHES.try_with(|caches| {
        let mut caches = caches.borrow_mut();
        let idx = match caches.iter().position(|c| c.pool_id == shared.id) {
            Some(i) => i,
            None => {
                // Forget caches of pools that are gone before adding one.
                caches.retain(|c| c.pool.strong_count() > 0);
                caches.push(ThreadCache {
                    pool_id: shared.id,
                    pool: Arc::downgrade(shared),
                    lists: (0..NUM_CLASSES).map(|_| Vec::new()).collect(),
                });
                caches.len() - 1
            }
        };
        let list = &mut caches[idx].lists[class];
        if list.len() < THREAD_CACHE_PER_CLASS {
            list.push(data.take().expect("taken once"));
        }
    });
    data
}

/// One thread's cache of one pool's small buffers.
struct ThreadCache {
    pool_id: u64,
    pool: Weak<Shared>,
    lists: Vec<Vec<Vec<u8>>>,
}

impl Drop for ThreadCache {
    /// On thread exit, hands cached buffers to the shared lists so other threads reuse them.
    fn drop(&mut self) {
        let Some(shared) = self.pool.upgrade() else {
            return;
        };
        for (class, list) in self.lists.iter_mut().enumerate() {
            if !list.is_empty() {
                shared.classes[class]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .append(list);
            }
        }
    }
}

thread_local! {
    static THREAD_CACHES: RefCell<Vec<ThreadCache>> = const { RefCell::new(Vec::new()) };
}

/// A writable buffer from a [`BufferPool`]: `capacity()` bytes of memory, of
/// which the first `len()` are filled. Returns to its pool when dropped, or,
/// after [`freeze`](Self::freeze), when the last [`Bytes`] of it drops.
pub struct PooledBufMut {
    /// Always fully initialized: `data.len()` is the capacity.
    data: Vec<u8>,
    filled: usize,
    pool: Option<Arc<Shared>>,
}

impl std::fmt::Debug for PooledBufMut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBufMut")
            .field("len", &self.filled)
            .field("capacity", &self.data.len())
            .finish()
    }
}

impl PooledBufMut {
    /// Bytes filled so far.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether nothing is filled yet.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Total bytes of memory, filled or not.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Bytes that can still be written.
    pub fn remaining_mut(&self) -> usize {
        self.data.len() - self.filled
    }

    /// The filled bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.filled]
    }

    /// The unfilled part, to read into (for example with `read(2)`); follow
    /// with [`commit`](Self::commit) of the bytes written.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.filled..]
    }

    /// Marks `n` more bytes of the spare part as filled.
    ///
    /// # Panics
    /// If `n` exceeds [`remaining_mut`](Self::remaining_mut).
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.remaining_mut(), "commit({n}) past capacity");
        self.filled += n;
    }

    /// Appends `src`.
    ///
    /// # Panics
    /// If `src` does not fit in [`remaining_mut`](Self::remaining_mut).
    pub fn put_slice(&mut self, src: &[u8]) {
        let end = self.filled + src.len();
        assert!(end <= self.data.len(), "put_slice past capacity");
        self.data[self.filled..end].copy_from_slice(src);
        self.filled = end;
    }

    /// Empties the buffer (keeps its memory).
    pub fn clear(&mut self) {
        self.filled = 0;
    }

    /// Turns the filled bytes into a [`Bytes`] without copying; the memory
    /// returns to the pool when the last clone or slice of it drops.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBufMut {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for PooledBufMut {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_powers_of_two() {
        assert_eq!(class_of(0), Some(0));
        assert_eq!(class_of(512), Some(0));
        assert_eq!(class_of(513), Some(1));
        assert_eq!(class_size(class_of(100_000).unwrap()), 131_072);
        assert_eq!(class_of(MAX_CLASS_SIZE), Some(NUM_CLASSES - 1));
        assert_eq!(class_of(MAX_CLASS_SIZE + 1), None);
    }

    #[test]
    fn reuses_a_returned_buffer() {
        let pool = BufferPool::new(1 << 20);
        let mut b = pool.allocate(1000);
        assert_eq!(b.capacity(), 1024);
        b.put_slice(b"hello");
        let ptr = b.as_slice().as_ptr();
        drop(b);
        let s = pool.stats();
        assert_eq!((s.served_fresh, s.returned, s.bytes_held), (1, 1, 1024));
        let b = pool.allocate(700);
        assert_eq!(b.as_slice().as_ptr(), ptr, "same memory back");
        assert!(b.is_empty());
        let s = pool.stats();
        assert_eq!((s.served_from_pool, s.bytes_held), (1, 0));
    }

    #[test]
    fn frozen_bytes_return_on_last_drop() {
        let pool = BufferPool::new(1 << 20);
        let mut b = pool.allocate(64);
        b.put_slice(&[1, 2, 3, 4]);
        let bytes = b.freeze();
        let tail = bytes.slice(2..);
        drop(bytes);
        assert_eq!(pool.stats().returned, 0, "a slice still holds it");
        assert_eq!(&tail[..], &[3, 4]);
        drop(tail);
        assert_eq!(pool.stats().returned, 1);
    }

    #[test]
    fn bound_on_held_bytes_holds() {
        let pool = BufferPool::new(4096);
        let bufs: Vec<_> = (0..10).map(|_| pool.allocate(1024)).collect();
        drop(bufs);
        let s = pool.stats();
        assert_eq!(s.bytes_held, 4096);
        assert_eq!((s.returned, s.released), (4, 6));
        assert!(s.bytes_held <= s.max_held_bytes);
    }

    #[test]
    fn oversized_buffers_are_not_pooled() {
        let pool = BufferPool::new(usize::MAX);
        let b = pool.allocate(MAX_CLASS_SIZE + 1);
        assert_eq!(b.capacity(), MAX_CLASS_SIZE + 1);
        drop(b);
        assert_eq!(pool.stats().bytes_held, 0);
        assert_eq!(pool.stats().served_fresh, 1);
    }

    #[test]
    fn return_from_another_thread_is_reused() {
        let pool = BufferPool::new(1 << 20);
        let mut b = pool.allocate(2048);
        b.put_slice(b"x");
        let bytes = b.freeze();
        std::thread::spawn(move || drop(bytes)).join().unwrap();
        // The freeing thread exited, so its cache handed the buffer to the shared list.
        let s = pool.stats();
        assert_eq!((s.returned, s.bytes_held), (1, 2048));
        let _again = pool.allocate(2048);
        assert_eq!(pool.stats().served_from_pool, 1);
        assert_eq!(pool.stats().bytes_held, 0);
    }

    #[test]
    fn large_classes_skip_thread_cache() {
        let pool = BufferPool::new(8 << 20);
        drop(pool.allocate(1 << 20));
        let p2 = pool.clone();
        let served = std::thread::spawn(move || {
            let _b = p2.allocate(1 << 20);
            p2.stats().served_from_pool
        })
        .join()
        .unwrap();
        assert_eq!(served, 1, "a 1 MiB buffer is shared across threads at once");
    }
}

//! Per-thread caches of a pool's small buffers (Netty's `PoolThreadCache`):
//! a buffer given back on a thread is reused by that thread without a lock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use bytes::BytesMut;

use super::{FreeList, NUM_CLASSES, Shared, class_size, take_reclaimable};

/// Buffers of at most this size are kept in per-thread caches (Netty's
/// `maxCachedBufferCapacity`, 32 KiB there); larger ones go to the shared lists.
const THREAD_CACHE_MAX_CLASS: usize = 64 << 10;
/// Buffers kept per class in one thread's cache.
const THREAD_CACHE_PER_CLASS: usize = 64;

/// One thread's cache of one pool's small buffers.
struct ThreadCache {
    pool_id: u64,
    pool: Weak<Shared>,
    lists: Vec<FreeList>,
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

/// A reclaimable buffer of `class` from this thread's cache of `shared`, and
/// how many busy ones it passed over.
pub(super) fn take_local(shared: &Shared, class: usize) -> (Option<BytesMut>, u64) {
    let size = class_size(class);
    if size > THREAD_CACHE_MAX_CLASS {
        return (None, 0);
    }
    THREAD_CACHES
        .try_with(|caches| {
            let mut caches = caches.borrow_mut();
            match caches.iter_mut().find(|c| c.pool_id == shared.id) {
                Some(cache) => take_reclaimable(&mut cache.lists[class], size),
                None => (None, 0),
            }
        })
        .unwrap_or((None, 0))
}

/// Puts `data` in this thread's cache for the pool; gives it back when the
/// class is too large for caches, the cache is full or the thread is exiting.
pub(super) fn put_local(shared: &Arc<Shared>, class: usize, data: BytesMut) -> Option<BytesMut> {
    if class_size(class) > THREAD_CACHE_MAX_CLASS {
        return Some(data);
    }
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
                    lists: (0..NUM_CLASSES).map(|_| VecDeque::new()).collect(),
                });
                caches.len() - 1
            }
        };
        let list = &mut caches[idx].lists[class];
        if list.len() < THREAD_CACHE_PER_CLASS {
            list.push_back(data.take().expect("taken once"));
        }
    });
    data
}

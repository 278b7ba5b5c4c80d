//! Per-thread pools of shared objects that are done with, so that a steady
//! stream of them allocates nothing: Netty's `io.netty.util.Recycler`, which
//! Spark's transport relies on for its per-message objects, done with `Arc`.
//!
//! [`recycled`] hands out an `Arc<T>` whose allocation, where it can, is one
//! used before on this thread: the pool keeps a clone of every `Arc` it hands
//! out, and one whose other clones have all been dropped (the pool's is the
//! only one left, which `Arc::get_mut` tells) is overwritten with the new
//! value and handed out again. No `unsafe`: uniqueness is `Arc`'s own check.
//!
//! A pool holds at most [`CAPACITY`] objects per type and thread; a thread
//! with more of one type in use at once allocates the rest as `Arc::new`
//! does. An object waiting in a pool holds its memory (`size_of::<T>()` plus
//! the two counts) until the thread exits, and whatever its last value holds:
//! users clear a value's references to other objects when they are done with
//! it (`CallbackAsk` drops its callback and origin when it answers).

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use rustc_hash::FxHasher;

/// Most objects of one type a thread's pool keeps, a count.
pub(crate) const CAPACITY: usize = 256;
/// Pooled objects [`recycled`] looks at, oldest first, before it allocates
/// a new one, a count. Objects are mostly done with in the order they were
/// handed out (answers come back in the order asked), so the oldest is
/// almost always free.
const SCAN: usize = 8;

type Pools = HashMap<TypeId, Box<dyn Any>, BuildHasherDefault<FxHasher>>;

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(HashMap::default());
}

/// Runs `f` on this thread's pool of `T`s; `None` if the thread is exiting
/// (its pools are gone) or the pools are in use further up the stack.
fn with_pool<T: 'static, O>(f: impl FnOnce(&mut VecDeque<Arc<T>>) -> O) -> Option<O> {
    POOLS
        .try_with(|pools| {
            let mut pools = pools.try_borrow_mut().ok()?;
            let pool = pools
                .entry(TypeId::of::<T>())
                .or_insert_with(|| Box::new(VecDeque::<Arc<T>>::new()))
                .downcast_mut::<VecDeque<Arc<T>>>()
                .expect("pools are keyed by their element's TypeId");
            Some(f(pool))
        })
        .ok()
        .flatten()
}

/// `Arc::new(value)`, in the allocation of a pooled `Arc<T>` that nothing
/// else refers to any more if one of the oldest [`SCAN`] is, and pooled for
/// reuse once every clone handed out is dropped (while the pool holds fewer
/// than [`CAPACITY`]). The old value is dropped after the pool is let go, so
/// its `Drop` may use the pools.
pub(crate) fn recycled<T: Send + Sync + 'static>(value: T) -> Arc<T> {
    let mut value = Some(value);
    let pooled = with_pool::<T, _>(|pool| {
        let value = value.take().expect("taken once");
        for _ in 0..SCAN.min(pool.len()) {
            let Some(mut candidate) = pool.pop_front() else {
                break;
            };
            if let Some(slot) = Arc::get_mut(&mut candidate) {
                // Unique: no one else holds it, so no one can clone it either.
                let old = std::mem::replace(slot, value);
                pool.push_back(candidate.clone());
                return (candidate, Some(old));
            }
            pool.push_back(candidate);
        }
        let fresh = Arc::new(value);
        if pool.len() < CAPACITY {
            pool.push_back(fresh.clone());
        }
        (fresh, None)
    });
    match pooled {
        Some((arc, old)) => {
            drop(old);
            arc
        }
        // No pool on this thread now: a plain, unpooled `Arc`.
        None => Arc::new(value.take().expect("not taken when no pool ran")),
    }
}

/// How many `T`s this thread's pool holds, free or in use.
#[cfg(test)]
pub(crate) fn pooled<T: 'static>() -> usize {
    with_pool::<T, _>(|pool| pool.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{CAPACITY, SCAN, pooled, recycled};

    #[test]
    fn a_dropped_object_s_allocation_is_reused() {
        struct Value(#[allow(dead_code)] u64);
        let first = recycled(Value(1));
        let at = Arc::as_ptr(&first);
        drop(first);
        let second = recycled(Value(2));
        assert_eq!(
            Arc::as_ptr(&second),
            at,
            "the free allocation is handed out again"
        );
        assert_eq!(second.0, 2, "with the new value");
        assert_eq!(pooled::<Value>(), 1);
    }

    #[test]
    fn an_object_still_referred_to_is_not_reused() {
        struct Value(u64);
        let held = recycled(Value(1));
        let other = recycled(Value(2));
        assert_ne!(Arc::as_ptr(&held), Arc::as_ptr(&other));
        assert_eq!((held.0, other.0), (1, 2), "neither value was overwritten");
        assert_eq!(pooled::<Value>(), 2);
    }

    #[test]
    fn a_weak_reference_keeps_an_object_from_reuse() {
        struct Value(u64);
        let first = recycled(Value(1));
        let weak = Arc::downgrade(&first);
        drop(first);
        let second = recycled(Value(2));
        assert_eq!(
            weak.upgrade().map(|v| v.0),
            Some(1),
            "the weakly held value is intact"
        );
        assert_eq!(second.0, 2);
    }

    #[test]
    fn the_pool_stops_growing_at_its_capacity() {
        struct Value(#[allow(dead_code)] usize);
        let held: Vec<_> = (0..CAPACITY + 10).map(|i| recycled(Value(i))).collect();
        assert_eq!(pooled::<Value>(), CAPACITY);
        drop(held);
        let again: Vec<_> = (0..CAPACITY).map(|i| recycled(Value(i))).collect();
        assert_eq!(
            pooled::<Value>(),
            CAPACITY,
            "freed objects were reused, not added"
        );
        drop(again);
    }

    #[test]
    fn a_free_object_behind_busy_ones_is_found_within_the_scan() {
        struct Value(#[allow(dead_code)] usize);
        let mut held: Vec<_> = (0..SCAN).map(|i| recycled(Value(i))).collect();
        let freed = Arc::as_ptr(&held[SCAN - 1]);
        held.pop();
        let reused = recycled(Value(99));
        assert_eq!(Arc::as_ptr(&reused), freed, "the last of {SCAN} scanned is free");
    }

    #[test]
    fn a_value_is_dropped_when_its_allocation_is_reused() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(recycled(Counted));
        assert_eq!(
            DROPS.load(Ordering::Relaxed),
            0,
            "a pooled value lives on in the pool"
        );
        let again = recycled(Counted);
        assert_eq!(
            DROPS.load(Ordering::Relaxed),
            1,
            "overwriting dropped the old value"
        );
        drop(again);
    }
}

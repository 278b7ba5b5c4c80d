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
//! A pool hands out its oldest free object. The ones it finds still in use
//! on the way it sets aside, and looks at one of those again per call, in
//! turn, taking it back once free: objects in use for long (asks to a slow
//! peer, say) are not looked at over and over while quick ones go round, so
//! a call costs a few `Arc::get_mut` checks on average, and a pool grows
//! only when every object it has is in use: to the most of one type in use
//! at once, at most [`CAPACITY`] objects per type and thread. A thread with
//! more of one type in use at once allocates the rest as `Arc::new` does.
//! An object waiting in a pool holds its memory (`size_of::<T>()` plus
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
/// One thread's objects of one type.
struct Pool<T> {
    /// In the order they were last handed out, oldest first. Objects are
    /// mostly done with in that order (answers come back in the order
    /// asked), so the first is almost always free.
    ready: VecDeque<Arc<T>>,
    /// Objects found still in use when their turn in `ready` came: looked at
    /// again one per call, in turn, and put back in `ready` once free.
    parked: VecDeque<Arc<T>>,
}

impl<T> Pool<T> {
    fn len(&self) -> usize {
        self.ready.len() + self.parked.len()
    }
}

type Pools = HashMap<TypeId, Box<dyn Any>, BuildHasherDefault<FxHasher>>;

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(HashMap::default());
}

/// Runs `f` on this thread's pool of `T`s; `None` if the thread is exiting
/// (its pools are gone) or the pools are in use further up the stack.
fn with_pool<T: 'static, O>(f: impl FnOnce(&mut Pool<T>) -> O) -> Option<O> {
    POOLS
        .try_with(|pools| {
            let mut pools = pools.try_borrow_mut().ok()?;
            let pool = pools
                .entry(TypeId::of::<T>())
                .or_insert_with(|| {
                    Box::new(Pool::<T> {
                        ready: VecDeque::new(),
                        parked: VecDeque::new(),
                    })
                })
                .downcast_mut::<Pool<T>>()
                .expect("pools are keyed by their element's TypeId");
            Some(f(pool))
        })
        .ok()
        .flatten()
}

/// `Arc::new(value)`, in the allocation of a pooled `Arc<T>` that nothing
/// else refers to any more if the pool has one in `ready` (or the parked
/// object whose turn it is), and pooled for reuse once every clone handed
/// out is dropped (while the pool holds fewer than [`CAPACITY`]). Each
/// object found in use in `ready` is parked, so the checks average out to a
/// few per call. The old value is dropped after the pool is let go, so its
/// `Drop` may use the pools.
pub(crate) fn recycled<T: Send + Sync + 'static>(value: T) -> Arc<T> {
    let mut value = Some(value);
    let pooled = with_pool::<T, _>(|pool| {
        let value = value.take().expect("taken once");
        if let Some(mut parked) = pool.parked.pop_front() {
            if Arc::get_mut(&mut parked).is_some() {
                pool.ready.push_front(parked);
            } else {
                pool.parked.push_back(parked);
            }
        }
        while let Some(mut candidate) = pool.ready.pop_front() {
            if let Some(slot) = Arc::get_mut(&mut candidate) {
                // Unique: no one else holds it, so no one can clone it either.
                let old = std::mem::replace(slot, value);
                pool.ready.push_back(candidate.clone());
                return (candidate, Some(old));
            }
            pool.parked.push_back(candidate);
        }
        let fresh = Arc::new(value);
        if pool.len() < CAPACITY {
            pool.ready.push_back(fresh.clone());
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

    use super::{CAPACITY, pooled, recycled};

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
    fn a_free_object_behind_busy_ones_is_found() {
        struct Value(#[allow(dead_code)] usize);
        let mut held: Vec<_> = (0..100).map(|i| recycled(Value(i))).collect();
        let freed = Arc::as_ptr(&held[99]);
        held.pop();
        let reused = recycled(Value(999));
        assert_eq!(Arc::as_ptr(&reused), freed, "the last of 100 is free");
        assert_eq!(pooled::<Value>(), 100, "nothing was allocated");
    }

    #[test]
    fn objects_in_use_for_long_do_not_make_a_stream_allocate_or_grow_the_pool() {
        struct Value(#[allow(dead_code)] usize);
        // Asks outstanding for long (to a slow peer, say) beside a stream of
        // quick ones from the same thread and call site, from 8 to nearly the
        // pool's capacity. Each count on a thread, so on a pool, of its own.
        for long_lived in [8, 9, 16, 64, CAPACITY - 56] {
            let (unpooled, pool) = std::thread::spawn(move || {
                let held: Vec<_> = (0..long_lived).map(|i| recycled(Value(i))).collect();
                for i in 0..10_000 {
                    drop(recycled(Value(i)));
                }
                // An object the pool keeps has two owners while handed out.
                let unpooled = (0..10_000)
                    .filter(|&i| Arc::strong_count(&recycled(Value(i))) == 1)
                    .count();
                let pool = pooled::<Value>();
                drop(held);
                (unpooled, pool)
            })
            .join()
            .expect("the counting thread");
            assert_eq!(
                unpooled, 0,
                "{long_lived} held: quick objects were allocated outside the pool"
            );
            assert_eq!(
                pool,
                long_lived + 1,
                "{long_lived} held: the pool keeps one more than are in use"
            );
        }
    }

    #[test]
    fn parked_objects_are_taken_back_once_free() {
        struct Value(#[allow(dead_code)] usize);
        let held: Vec<_> = (0..20).map(|i| recycled(Value(i))).collect();
        // The quick one parks all 20 on its way.
        drop(recycled(Value(20)));
        drop(held);
        let again: Vec<_> = (0..21).map(|i| recycled(Value(i))).collect();
        assert_eq!(
            pooled::<Value>(),
            21,
            "the 20 parked ones were reused, none allocated"
        );
        drop(again);
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

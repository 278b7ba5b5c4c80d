//! `TimerQueue`: the deadlines of the asks in flight, in order, with no heap
//! allocation per timer once its buffer has grown.
//!
//! Asks on one env mostly share one timeout, so their deadlines arrive in
//! increasing order and most asks are answered in the order they were made.
//! The queue is a `VecDeque` sorted by key: a new deadline is pushed at the
//! back (or, rarely, inserted in order); a cancelled one leaves a tombstone
//! that is popped as soon as it reaches the front. A `BTreeMap` allocates and
//! frees a node every few inserts; this allocates only when the number of
//! live timers reaches a new high. Tombstones stuck behind one long-lived
//! timer are swept once they outnumber the live timers four to one, so the
//! queue stays within a constant factor of the live count.

use std::collections::VecDeque;
use std::time::Instant;

/// A timer's position in the order: its deadline, then a unique sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey(pub(crate) Instant, pub(crate) u64);

/// Timers ordered by key; each holds an action `A` until it is due or cancelled.
#[derive(Debug)]
pub(crate) struct TimerQueue<A> {
    entries: VecDeque<(TimerKey, Option<A>)>,
    live: usize,
}

impl<A> Default for TimerQueue<A> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            live: 0,
        }
    }
}

impl<A> TimerQueue<A> {
    /// Adds a timer; keys are unique (the sequence number sees to it).
    pub(crate) fn insert(&mut self, key: TimerKey, action: A) {
        if self.entries.back().is_none_or(|(last, _)| *last < key) {
            self.entries.push_back((key, Some(action)));
        } else {
            let at = self.entries.partition_point(|(k, _)| *k < key);
            self.entries.insert(at, (key, Some(action)));
        }
        self.live += 1;
    }

    /// Removes the timer `key`; its action if it was still pending.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<A> {
        // Asks are mostly answered in the order they were made: their timer
        // is then the first, found without a search.
        let at = if self.entries.front().is_some_and(|(k, _)| *k == key) {
            0
        } else {
            self.entries.binary_search_by(|(k, _)| k.cmp(&key)).ok()?
        };
        let action = self.entries[at].1.take()?;
        self.live -= 1;
        self.pop_tombstones();
        if self.entries.len() > 64 && self.entries.len() > 4 * self.live {
            self.entries.retain(|(_, a)| a.is_some());
        }
        Some(action)
    }

    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries.front().map(|(k, _)| k.0)
    }

    /// Takes the earliest pending action if its deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<A> {
        let (key, _) = self.entries.front()?;
        if key.0 > now {
            return None;
        }
        let (_, action) = self.entries.pop_front()?;
        self.live -= 1;
        self.pop_tombstones();
        action
    }

    /// Pending timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Takes every pending action, in deadline order.
    pub(crate) fn drain(&mut self) -> Vec<A> {
        self.live = 0;
        self.entries.drain(..).filter_map(|(_, a)| a).collect()
    }

    /// Keeps a pending timer, if any, at the front.
    fn pop_tombstones(&mut self) {
        while self.entries.front().is_some_and(|(_, a)| a.is_none()) {
            self.entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn key(base: Instant, ms: u64, seq: u64) -> TimerKey {
        TimerKey(base + Duration::from_millis(ms), seq)
    }

    #[test]
    fn due_timers_come_out_in_deadline_order() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        for (seq, ms) in [30u64, 10, 20, 10].into_iter().enumerate() {
            q.insert(key(base, ms, seq as u64), ms);
        }
        assert_eq!(q.next_deadline(), Some(base + Duration::from_millis(10)));
        assert_eq!(q.pop_due(base + Duration::from_millis(5)), None);
        let due: Vec<_> = std::iter::from_fn(|| q.pop_due(base + Duration::from_millis(25))).collect();
        assert_eq!(due, [10, 10, 20]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn cancelled_timers_never_fire_and_leave_nothing_behind() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        let keys: Vec<_> = (0..1000).map(|i| key(base, 1000 + i, i)).collect();
        for (i, k) in keys.iter().enumerate() {
            q.insert(*k, i);
        }
        // One long-lived timer at the front; every later one is cancelled.
        for k in &keys[1..] {
            assert!(q.cancel(*k).is_some());
            assert!(q.cancel(*k).is_none(), "cancelled twice");
        }
        assert_eq!(q.len(), 1);
        assert!(q.entries.len() <= 65, "tombstones are swept: {}", q.entries.len());
        assert_eq!(q.pop_due(base + Duration::from_secs(5)), Some(0));
        assert!(q.entries.is_empty());
    }

    #[test]
    fn steady_state_reuses_the_buffer() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        for seq in 0..64 {
            q.insert(key(base, seq, seq), seq);
        }
        let capacity = q.entries.capacity();
        for seq in 64..100_000u64 {
            assert!(q.cancel(key(base, seq - 64, seq - 64)).is_some());
            q.insert(key(base, seq, seq), seq);
        }
        assert_eq!(q.entries.capacity(), capacity, "no growth in steady state");
    }

    proptest! {
        /// Against a sorted model: whatever the order of inserts, cancels and
        /// pops, the queue yields exactly the model's pending timers, in order.
        #[test]
        fn matches_a_sorted_model(ops in proptest::collection::vec((0u8..3, 0u64..50), 1..300)) {
            let base = Instant::now();
            let mut q = TimerQueue::default();
            let mut model: std::collections::BTreeMap<TimerKey, u64> = Default::default();
            let mut seq = 0;
            for (op, ms) in ops {
                match op {
                    0 => {
                        let k = key(base, ms, seq);
                        seq += 1;
                        q.insert(k, seq);
                        model.insert(k, seq);
                    }
                    1 => {
                        let victim = model.keys().nth(ms as usize % (model.len().max(1))).copied();
                        if let Some(k) = victim {
                            prop_assert_eq!(q.cancel(k), model.remove(&k));
                        }
                    }
                    _ => {
                        let now = base + Duration::from_millis(ms);
                        let expect = model.first_key_value().filter(|(k, _)| k.0 <= now).map(|(k, v)| (*k, *v));
                        let got = q.pop_due(now);
                        if let Some((k, v)) = expect {
                            model.remove(&k);
                            prop_assert_eq!(got, Some(v));
                        } else {
                            prop_assert_eq!(got, None);
                        }
                    }
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.next_deadline(), model.keys().next().map(|k| k.0));
            }
        }
    }
}

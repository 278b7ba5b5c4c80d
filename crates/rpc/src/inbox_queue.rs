//! `InboxQueue`: an inbox's messages, with its capacity and what waits on it.
//!
//! Every message an inbox holds goes through here, so whatever takes one out
//! (`Inbox::process`, on a MessageLoop thread) also releases what a full inbox
//! held back, with no extra call: once the queue is below its capacity again,
//! the read pauses taken on connections whose messages arrived over it are
//! dropped (their backends read again), and local senders blocked for room are
//! woken. Callers hold the inbox's state lock throughout.
//!
//! Also here: which inbox the current thread is processing, so that a handler
//! that sends to its own full inbox fails at once instead of waiting for
//! itself.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar};

use transport::ReadPause;

use crate::inbox_limits::{InboxFullPolicy, InboxStats};

/// The messages of one inbox (FIFO) and its bound.
pub(crate) struct InboxQueue<T> {
    items: VecDeque<T>,
    /// Messages, at least 1.
    capacity: usize,
    /// Reads paused on connections whose messages were accepted while the
    /// queue was full (wait policy), until it is below capacity again.
    paused: Vec<ReadPause>,
    /// Local senders blocked on `room`.
    pub(crate) waiting: usize,
    /// Notified when the queue gets below capacity while someone waits; used
    /// with the inbox's state mutex.
    room: Arc<Condvar>,
    peak: usize,
    pauses_taken: u64,
}

impl<T> InboxQueue<T> {
    /// A queue holding `items`, bounded at `capacity` messages (at least 1);
    /// `room` is the inbox's condvar its blocked senders wait on.
    pub(crate) fn new(items: VecDeque<T>, capacity: usize, room: Arc<Condvar>) -> Self {
        Self {
            peak: items.len(),
            items,
            capacity: capacity.max(1),
            paused: Vec::new(),
            waiting: 0,
            room,
            pauses_taken: 0,
        }
    }

    /// Whether it holds its capacity or more (a message may be held back).
    pub(crate) fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }

    /// Queues `item` last (bounds are checked by the caller: events and
    /// `OnStop`, and messages accepted under the wait policy, may pass them).
    pub(crate) fn push_back(&mut self, item: T) {
        self.items.push_back(item);
        self.peak = self.peak.max(self.items.len());
    }

    /// Takes the first message. Once fewer than `capacity` are left, drops the
    /// read pauses held (waking those connections' readers) and wakes blocked senders.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let item = self.items.pop_front()?;
        if self.items.len() < self.capacity {
            // A no-op unless something was held back.
            self.paused.clear();
            if self.waiting > 0 {
                self.room.notify_all();
            }
        }
        Some(item)
    }

    /// Keeps `pause` (taken on the connection of a message just accepted over
    /// capacity) until the queue is below capacity.
    pub(crate) fn hold(&mut self, pause: ReadPause) {
        self.pauses_taken += 1;
        self.paused.push(pause);
    }

    /// A snapshot for [`InboxStats`].
    pub(crate) fn stats(&self, when_full: InboxFullPolicy) -> InboxStats {
        InboxStats {
            len: self.items.len(),
            peak_len: self.peak,
            capacity: self.capacity,
            when_full,
            read_pauses_held: self.paused.len(),
            read_pauses_taken: self.pauses_taken,
            waiting_senders: self.waiting,
        }
    }
}

thread_local! {
    /// The inbox this thread is running a handler of (its address), 0 for none.
    static PROCESSING: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as running a handler of inbox `key` until dropped.
pub(crate) struct ProcessingMark {
    previous: usize,
}

impl ProcessingMark {
    /// Enters inbox `key` (a non-zero address identifying it).
    pub(crate) fn enter(key: usize) -> Self {
        Self {
            previous: PROCESSING.replace(key),
        }
    }
}

impl Drop for ProcessingMark {
    fn drop(&mut self) {
        PROCESSING.set(self.previous);
    }
}

/// Whether the current thread is running a handler of inbox `key`.
pub(crate) fn is_processing(key: usize) -> bool {
    PROCESSING.get() == key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_below_capacity_wakes_and_releases_nothing_it_does_not_hold() {
        let mut q = InboxQueue::new(VecDeque::from([0]), 2, Arc::new(Condvar::new()));
        assert!(!q.is_full());
        q.push_back(1);
        q.push_back(2);
        assert!(q.is_full());
        assert_eq!(q.stats(InboxFullPolicy::Wait).peak_len, 3);
        assert_eq!(q.pop_front(), Some(0));
        assert!(q.is_full(), "2 left of capacity 2");
        assert_eq!(q.pop_front(), Some(1));
        assert!(!q.is_full());
        let s = q.stats(InboxFullPolicy::Fail);
        assert_eq!((s.len, s.peak_len, s.capacity, s.read_pauses_held), (1, 3, 2, 0));
    }

    /// A connection's sink that only counts reader wake-ups.
    struct Wakes(Arc<std::sync::atomic::AtomicUsize>);

    impl transport::FrameSink for Wakes {
        fn send(&self, _frame: transport::EncodedFrame) -> Result<(), transport::TransportError> {
            Ok(())
        }
        fn close(&self) {}
        fn is_active(&self) -> bool {
            true
        }
        fn wake_reader(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn pauses_are_held_until_the_queue_is_below_capacity() {
        let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
        let conf = transport::TransportConf::default();
        let conn = transport::TransportClient::new(
            transport::ConnectionId(1),
            addr,
            addr,
            &conf,
            Box::new(Wakes(wakes.clone())),
        );
        let mut q = InboxQueue::new(VecDeque::new(), 2, Arc::new(Condvar::new()));
        for i in 0..4 {
            if q.is_full() {
                q.hold(conn.pause_reading());
            }
            q.push_back(i);
        }
        assert_eq!(
            (
                conn.read_pauses(),
                q.stats(InboxFullPolicy::Wait).read_pauses_taken
            ),
            (2, 2)
        );
        assert_eq!(q.pop_front(), Some(0));
        assert_eq!(q.pop_front(), Some(1));
        assert!(conn.should_pause_reading(), "2 left: still full");
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(q.pop_front(), Some(2));
        assert!(conn.may_resume_reading(), "below capacity: released");
        assert_eq!(
            wakes.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one wake-up for both pauses"
        );
        assert_eq!(q.stats(InboxFullPolicy::Wait).read_pauses_held, 0);
    }

    #[test]
    fn the_processing_mark_is_per_thread_and_nests() {
        assert!(!is_processing(7));
        {
            let _outer = ProcessingMark::enter(7);
            assert!(is_processing(7));
            {
                let _inner = ProcessingMark::enter(9);
                assert!(is_processing(9) && !is_processing(7));
            }
            assert!(is_processing(7));
            std::thread::spawn(|| assert!(!is_processing(7))).join().unwrap();
        }
        assert!(!is_processing(7));
    }
}

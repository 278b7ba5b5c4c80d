//! The Inbox's scheduling state machine (Spark's `Inbox` fields `messages`,
//! `stopped`, `enableConcurrent`, `numActiveThreads`, plus our `scheduled`
//! and `queued`) and the three operations on it, written once for any lock
//! so that the real `Inbox` runs them over a
//! `std::sync::Mutex` and the loom model check (`tests/loom_inbox.rs`, cargo
//! feature `loom`) over loom's, under every interleaving.
//!
//! The operations hold the lock only for the transitions below and call out
//! (to schedule the inbox, to handle a message) with it released:
//!
//! - [`enqueue`]: refuse when stopped; when the queue is full (sends and asks
//!   only) let the caller's full-queue policy decide (refuse, pause the
//!   connection, or wait for room); else queue the message and schedule the
//!   inbox: a thread-safe endpoint unless it is scheduled already, a
//!   concurrent one while fewer than `parallelism` threads are queued for it
//!   or processing it (the token count `queued`);
//! - [`process`]: take messages one by one (or, once a concurrent endpoint
//!   has started, alongside other threads) until the queue is empty;
//!   `OnStart` makes a cloneable endpoint concurrent, `OnStop` ends
//!   processing; a panic in `OnStart` stops the endpoint, hands every queued
//!   message back to be refused and runs `OnStop`;
//! - [`stop`]: mark stopped, end concurrency, queue `OnStop` and schedule.
//!
//! Not in here: how the wait policy blocks a local sender (the Inbox's
//! `Condvar`, with a timeout) — [`enqueue`] hands the locked state to the
//! caller's `when_full`, which may release and retake the lock.

use std::ops::DerefMut;
use std::sync::{Mutex, MutexGuard};

/// What the state machine needs to know of a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `OnStart`: queued first, processed alone.
    Start,
    /// `OnStop`: queued by [`stop`], processed last and alone.
    Stop,
    /// A send or an ask: subject to the queue's capacity.
    Message,
    /// A network event: never held back for room (it is small and nobody waits on it).
    Event,
}

/// A value the inbox queues: tells its [`MessageKind`].
pub trait Queued {
    /// The kind of this message.
    fn kind(&self) -> MessageKind;
}

/// A FIFO of messages with a capacity (the Inbox's `InboxQueue`; a plain
/// bounded `VecDeque` in the model check).
pub trait Queue {
    /// The messages held.
    type Item: Queued;
    /// Queues `item` last; never refuses (the caller checked [`Queue::is_full`]).
    fn push_back(&mut self, item: Self::Item);
    /// Takes the first message, if any.
    fn pop_front(&mut self) -> Option<Self::Item>;
    /// Whether it holds its capacity (in messages) or more.
    fn is_full(&self) -> bool;
}

/// Why [`enqueue`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused<E> {
    /// The endpoint is stopped (or stopping): `RpcError::EndpointStopped`.
    Stopped,
    /// The queue was full and the caller's policy refused it with `E`
    /// (`RpcError::InboxFull` and the like).
    Full(E),
}

/// An inbox's queue and scheduling flags.
#[derive(Debug)]
pub struct State<Q> {
    messages: Q,
    stopped: bool,
    /// Several threads may process at once (a concurrent endpoint, after `OnStart`, before stop).
    concurrent: bool,
    /// Threads processing now.
    active: usize,
    /// The inbox is in its loop's queue or being processed (thread-safe mode).
    scheduled: bool,
    /// Items for this inbox in its loop's queue (or inline calls) not yet
    /// taken by a thread: the tokens that bound a concurrent endpoint's wake-ups.
    queued: usize,
}

impl<Q: Queue> State<Q> {
    /// A new inbox's state: `messages` holds `OnStart`, and the inbox counts
    /// as scheduled once (its creator schedules it, or processes it inline).
    pub fn new(messages: Q) -> Self {
        Self {
            messages,
            stopped: false,
            concurrent: false,
            active: 0,
            scheduled: true,
            queued: 1,
        }
    }

    /// The queue, for statistics.
    pub fn queue(&self) -> &Q {
        &self.messages
    }

    /// The queue, for the full-queue policy (holding a read pause, counting waiters).
    pub fn queue_mut(&mut self) -> &mut Q {
        &mut self.messages
    }

    /// Whether [`stop`] has run, or `OnStart` panicked.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }
}

/// Read-only views for the model check and unit tests.
#[cfg(any(test, feature = "loom"))]
impl<Q> State<Q> {
    /// Whether the inbox is scheduled or being processed (thread-safe mode).
    pub fn is_scheduled(&self) -> bool {
        self.scheduled
    }

    /// Whether several threads may process it now (a concurrent endpoint, started, not stopped).
    pub fn is_concurrent(&self) -> bool {
        self.concurrent
    }

    /// Threads processing the inbox now.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Scheduling items (loop-queue entries) not yet taken by a thread.
    pub fn queued(&self) -> usize {
        self.queued
    }
}

/// A lock around a [`State`]: a `std::sync::Mutex` in the Inbox, loom's in its model check.
pub trait Guarded {
    /// What the lock guards.
    type State;
    /// The held lock.
    type Guard<'a>: DerefMut<Target = Self::State>
    where
        Self: 'a;
    /// Takes the lock; a poisoned lock is taken anyway (transitions do not
    /// call out, so a panic elsewhere leaves the state consistent).
    fn guard(&self) -> Self::Guard<'_>;
}

impl<S> Guarded for Mutex<S> {
    type State = S;
    type Guard<'a>
        = MutexGuard<'a, S>
    where
        S: 'a;
    fn guard(&self) -> MutexGuard<'_, S> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(feature = "loom")]
impl<S> Guarded for loom::sync::Mutex<S> {
    type State = S;
    type Guard<'a>
        = loom::sync::MutexGuard<'a, S>
    where
        S: 'a;
    fn guard(&self) -> loom::sync::MutexGuard<'_, S> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Queues `msg` unless the inbox is stopped, and schedules the inbox if it
/// needs a thread: `schedule` runs with the lock released (it may process
/// the inbox inline).
///
/// When `msg` is a [`MessageKind::Message`], the inbox is not stopped and the
/// queue is full, `when_full` gets the held lock and `msg` and returns the
/// lock (possibly released and retaken while waiting for room) and `Some`
/// error to refuse the message, or `None` to queue it (over capacity, with
/// its connection paused, or once there is room). A stop seen after
/// `when_full` refuses the message as [`Refused::Stopped`].
///
/// `parallelism` (at least 1) is the number of threads serving the inbox's
/// loop: a concurrent endpoint is scheduled only while `queued + active` is
/// below it, as the threads already there take every queued message.
///
/// # Errors
/// The reason and the message itself, so that the caller can answer an ask:
/// nothing refused is dropped silently.
pub fn enqueue<'a, G, Q, E>(
    state: &'a G,
    msg: Q::Item,
    parallelism: usize,
    when_full: impl FnOnce(G::Guard<'a>, &Q::Item) -> (G::Guard<'a>, Option<E>),
    schedule: impl FnOnce(),
) -> Result<(), (Refused<E>, Q::Item)>
where
    G: Guarded<State = State<Q>>,
    Q: Queue,
{
    let mut st = state.guard();
    let mut refused = None;
    if msg.kind() == MessageKind::Message && !st.stopped && st.messages.is_full() {
        let error;
        (st, error) = when_full(st, &msg);
        refused = error.map(Refused::Full);
    }
    if st.stopped {
        refused = Some(Refused::Stopped);
    }
    if let Some(why) = refused {
        return Err((why, msg));
    }
    st.messages.push_back(msg);
    let schedule_now = if st.concurrent {
        // Threads already processing, or queued to, will take this message.
        st.queued + st.active < parallelism
    } else {
        !std::mem::replace(&mut st.scheduled, true)
    };
    if schedule_now {
        st.queued += 1;
    }
    drop(st);
    if schedule_now {
        schedule();
    }
    Ok(())
}

/// Processes queued messages (Spark's `Inbox.process`): the body of one
/// MessageLoop turn for this inbox, taking one scheduling item (`queued`).
///
/// `prepare(concurrent)` runs once, lock released, before the first message
/// (the Inbox clones a concurrent endpoint there); `handle` runs each
/// message, lock released, and returns whether the endpoint panicked.
/// `cloneable` says whether the endpoint turns concurrent after `OnStart`.
///
/// When `OnStart` panics the endpoint is stopped: every message still queued
/// is taken out and given to `fail_start` (lock released), which must refuse
/// them (answer asks) and run `OnStop`.
///
/// Returns true when this call ended the endpoint (`OnStop` ran), so that
/// the caller can stop a dedicated loop.
pub fn process<G, Q, C>(
    state: &G,
    cloneable: bool,
    prepare: impl FnOnce(bool) -> C,
    mut handle: impl FnMut(&mut C, Q::Item) -> bool,
    fail_start: impl FnOnce(&mut C, Vec<Q::Item>),
) -> bool
where
    G: Guarded<State = State<Q>>,
    Q: Queue,
{
    let first = {
        let mut st = state.guard();
        st.queued = st.queued.saturating_sub(1);
        if !st.concurrent && st.active != 0 {
            None
        } else if let Some(msg) = st.messages.pop_front() {
            st.active += 1;
            Some((msg, st.concurrent))
        } else {
            st.scheduled = false;
            None
        }
    };
    let Some((mut msg, concurrent)) = first else {
        return false;
    };
    let mut ctx = prepare(concurrent);
    loop {
        let kind = msg.kind();
        let panicked = handle(&mut ctx, msg);
        if kind == MessageKind::Start && panicked {
            let queued: Vec<Q::Item> = {
                let mut st = state.guard();
                st.stopped = true;
                st.concurrent = false;
                std::iter::from_fn(|| st.messages.pop_front()).collect()
            };
            fail_start(&mut ctx, queued);
            let mut st = state.guard();
            st.active -= 1;
            st.scheduled = false;
            return true;
        }
        let mut st = state.guard();
        if kind == MessageKind::Start && cloneable && !st.stopped {
            st.concurrent = true;
        }
        if kind == MessageKind::Stop {
            st.active -= 1;
            st.scheduled = false;
            return true;
        }
        if !st.concurrent && st.active != 1 {
            // Stopping a concurrent endpoint: the last thread left processes the rest.
            st.active -= 1;
            return false;
        }
        match st.messages.pop_front() {
            Some(m) => msg = m,
            None => {
                st.active -= 1;
                st.scheduled = false;
                return false;
            }
        }
    }
}

/// Marks the inbox stopped and queues `on_stop` (Spark's `Inbox.stop`),
/// calling `schedule` (lock released) unless the inbox is scheduled already.
/// Returns false, dropping `on_stop`, when the inbox was stopped before.
pub fn stop<G, Q>(state: &G, on_stop: Q::Item, schedule: impl FnOnce()) -> bool
where
    G: Guarded<State = State<Q>>,
    Q: Queue,
{
    let mut st = state.guard();
    if st.stopped {
        return false;
    }
    st.stopped = true;
    st.concurrent = false;
    st.messages.push_back(on_stop);
    let schedule_now = !std::mem::replace(&mut st.scheduled, true);
    if schedule_now {
        st.queued += 1;
    }
    drop(st);
    if schedule_now {
        schedule();
    }
    true
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    impl Queued for MessageKind {
        fn kind(&self) -> MessageKind {
            *self
        }
    }

    /// A queue of kinds, full at 2 messages.
    struct Tiny(VecDeque<MessageKind>);

    impl Queue for Tiny {
        type Item = MessageKind;
        fn push_back(&mut self, item: MessageKind) {
            self.0.push_back(item);
        }
        fn pop_front(&mut self) -> Option<MessageKind> {
            self.0.pop_front()
        }
        fn is_full(&self) -> bool {
            self.0.len() >= 2
        }
    }

    fn new() -> Mutex<State<Tiny>> {
        Mutex::new(State::new(Tiny(VecDeque::from([MessageKind::Start]))))
    }

    /// The fail policy: a full queue refuses.
    fn refuse<'a>(
        g: MutexGuard<'a, State<Tiny>>,
        _: &MessageKind,
    ) -> (MutexGuard<'a, State<Tiny>>, Option<&'static str>) {
        (g, Some("full"))
    }

    #[test]
    fn refuses_when_full_or_stopped_and_hands_the_message_back() {
        let st = new();
        let mut scheduled = 0;
        enqueue(&st, MessageKind::Message, 1, refuse, || scheduled += 1).unwrap();
        assert_eq!(scheduled, 0, "already scheduled by its creator");
        let refused = enqueue(&st, MessageKind::Message, 1, refuse, || scheduled += 1).unwrap_err();
        assert_eq!(refused, (Refused::Full("full"), MessageKind::Message));
        enqueue(&st, MessageKind::Event, 1, refuse, || scheduled += 1).unwrap();
        assert!(stop(&st, MessageKind::Stop, || scheduled += 1));
        assert!(!stop(&st, MessageKind::Stop, || scheduled += 1));
        let refused = enqueue(&st, MessageKind::Event, 1, refuse, || scheduled += 1).unwrap_err();
        assert_eq!(refused.0, Refused::Stopped);
        assert_eq!(scheduled, 0);
    }

    #[test]
    fn processes_in_order_and_stops_last() {
        let st = new();
        enqueue(&st, MessageKind::Message, 1, refuse, || {}).unwrap();
        stop(&st, MessageKind::Stop, || {});
        let mut seen = Vec::new();
        let ended = process(
            &st,
            true,
            |concurrent| assert!(!concurrent),
            |_, m| {
                seen.push(m);
                false
            },
            |_, _| unreachable!("OnStart did not panic"),
        );
        assert!(ended);
        assert_eq!(
            seen,
            [MessageKind::Start, MessageKind::Message, MessageKind::Stop]
        );
        let s = st.guard();
        assert!(s.queue().0.is_empty() && !s.is_scheduled() && s.active() == 0 && s.is_stopped());
    }

    #[test]
    fn a_concurrent_endpoint_is_scheduled_up_to_parallelism() {
        let st = new();
        assert!(!process(&st, true, |_| (), |_, _| false, |_, _| {}));
        assert!(st.guard().is_concurrent());
        let mut scheduled = 0;
        for _ in 0..2 {
            enqueue(&st, MessageKind::Event, 2, refuse, || scheduled += 1).unwrap();
        }
        enqueue(&st, MessageKind::Event, 2, refuse, || scheduled += 1).unwrap();
        assert_eq!((scheduled, st.guard().queued()), (2, 2), "3 messages, 2 tokens");
        let mut seen = 0;
        process(
            &st,
            true,
            |concurrent| assert!(concurrent),
            |_, _| {
                seen += 1;
                false
            },
            |_, _| {},
        );
        assert_eq!((seen, st.guard().queued()), (3, 1), "one thread takes all three");
        assert!(!process(
            &st,
            true,
            |_| (),
            |_, _| unreachable!("queue empty"),
            |_, _| {}
        ));
        assert_eq!(st.guard().queued(), 0);
    }

    #[test]
    fn a_panic_in_on_start_hands_the_queue_to_fail_start_and_stops() {
        let st = new();
        enqueue(&st, MessageKind::Message, 1, refuse, || {}).unwrap();
        let mut refused = Vec::new();
        let ended = process(
            &st,
            true,
            |_| (),
            |_, m| {
                assert_eq!(m, MessageKind::Start, "nothing else is handled");
                true
            },
            |_, queued| refused = queued,
        );
        assert!(ended);
        assert_eq!(refused, [MessageKind::Message]);
        let s = st.guard();
        assert!(s.is_stopped() && !s.is_concurrent() && !s.is_scheduled() && s.active() == 0);
        drop(s);
        assert_eq!(
            enqueue(&st, MessageKind::Message, 1, refuse, || {})
                .unwrap_err()
                .0,
            Refused::Stopped
        );
        assert!(!stop(&st, MessageKind::Stop, || {}));
    }
}

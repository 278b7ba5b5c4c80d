//! The Inbox's scheduling state machine (Spark's `Inbox` fields `messages`,
//! `stopped`, `enableConcurrent`, `numActiveThreads`, plus our `scheduled`)
//! and the three operations on it, written once for any lock so that the
//! real Inbox runs them over a `std::sync::Mutex` and the loom model check
//! (`tests/loom_inbox.rs`) over loom's, under every interleaving.
//!
//! The operations hold the lock only for the transitions below and call out
//! (to schedule the inbox, to handle a message) with it released:
//!
//! - [`enqueue`]: refuse when stopped, or when full (sends and asks only);
//!   else queue and schedule the inbox unless it is scheduled already;
//! - [`process`]: take messages one by one (or, once a concurrent endpoint
//!   has started, alongside other threads) until the queue is empty;
//!   `OnStart` makes a cloneable endpoint concurrent, `OnStop` ends processing;
//! - [`stop`]: mark stopped, end concurrency, queue `OnStop` and schedule.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// What the state machine needs to know of a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `OnStart`: queued first, processed alone.
    Start,
    /// `OnStop`: queued by [`stop`], processed last and alone.
    Stop,
    /// A send or an ask: refused when the queue is full.
    Message,
    /// A network event: never refused for room (it is small and nobody waits on it).
    Event,
}

/// A value the inbox queues: tells its [`MessageKind`].
pub trait Queued {
    /// The kind of this message.
    fn kind(&self) -> MessageKind;
}

/// Why [`enqueue`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The endpoint is stopped (or stopping): `RpcError::EndpointStopped`.
    Stopped,
    /// The queue holds `capacity` messages already: `RpcError::InboxFull`.
    Full,
}

/// An inbox's queue and scheduling flags.
#[derive(Debug)]
pub struct State<T> {
    messages: VecDeque<T>,
    stopped: bool,
    /// Several threads may process at once (a concurrent endpoint, after `OnStart`, before stop).
    concurrent: bool,
    /// Threads processing now.
    active: usize,
    /// The inbox is in its loop's queue or being processed (thread-safe mode).
    scheduled: bool,
}

impl<T: Queued> State<T> {
    /// A new inbox's state: `on_start` queued and the inbox counted as
    /// scheduled (its creator schedules it once).
    pub fn new(on_start: T) -> Self {
        Self {
            messages: VecDeque::from([on_start]),
            stopped: false,
            concurrent: false,
            active: 0,
            scheduled: true,
        }
    }
}

/// Read-only views for the model check and unit tests.
#[cfg(any(test, feature = "fuzzing"))]
impl<T> State<T> {
    /// Messages queued, not yet taken for processing.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Whether [`stop`] has run.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Whether the inbox is scheduled or being processed (thread-safe mode).
    pub fn is_scheduled(&self) -> bool {
        self.scheduled
    }

    /// Threads processing the inbox now.
    pub fn active(&self) -> usize {
        self.active
    }
}

/// Access to a [`State`] under a lock: a `std::sync::Mutex` in the Inbox, loom's in its model check.
pub trait Guarded<T> {
    /// Runs `f` with the state locked.
    fn with<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> R;
}

impl<T> Guarded<T> for Mutex<State<T>> {
    fn with<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> R {
        // A panic while locked leaves the state consistent: transitions do not call out.
        let mut guard: MutexGuard<'_, State<T>> = self.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

/// Queues `msg` unless the inbox is stopped or (for a [`MessageKind::Message`])
/// holds `capacity` messages; calls `schedule` (lock released) when the inbox
/// must be put in its loop's queue.
///
/// # Errors
/// The reason and the message itself, so that the caller can answer an ask:
/// nothing refused is dropped silently.
pub fn enqueue<T: Queued>(
    state: &impl Guarded<T>,
    msg: T,
    capacity: usize,
    schedule: impl FnOnce(),
) -> Result<(), (Refused, T)> {
    let schedule_now = state.with(|st| {
        if st.stopped {
            return Err((Refused::Stopped, msg));
        }
        if msg.kind() == MessageKind::Message && st.messages.len() >= capacity {
            return Err((Refused::Full, msg));
        }
        st.messages.push_back(msg);
        Ok(st.concurrent || !std::mem::replace(&mut st.scheduled, true))
    })?;
    if schedule_now {
        schedule();
    }
    Ok(())
}

/// Processes queued messages (Spark's `Inbox.process`): the body of one
/// MessageLoop turn for this inbox.
///
/// `prepare(concurrent)` runs once, lock released, before the first message
/// (the Inbox clones a concurrent endpoint there); `handle` runs each message,
/// lock released. `cloneable` says whether the endpoint may turn concurrent
/// after `OnStart`. Returns true when this call processed `OnStop`.
pub fn process<T: Queued, C>(
    state: &impl Guarded<T>,
    cloneable: bool,
    prepare: impl FnOnce(bool) -> C,
    mut handle: impl FnMut(&mut C, T),
) -> bool {
    let first = state.with(|st| {
        if !st.concurrent && st.active != 0 {
            return None;
        }
        let Some(msg) = st.messages.pop_front() else {
            st.scheduled = false;
            return None;
        };
        st.active += 1;
        Some((msg, st.concurrent))
    });
    let Some((mut msg, concurrent)) = first else {
        return false;
    };
    let mut ctx = prepare(concurrent);
    loop {
        let kind = msg.kind();
        handle(&mut ctx, msg);
        let next = state.with(|st| {
            if kind == MessageKind::Start && cloneable && !st.stopped {
                st.concurrent = true;
            }
            if kind == MessageKind::Stop {
                st.active -= 1;
                st.scheduled = false;
                return None;
            }
            if !st.concurrent && st.active != 1 {
                // Stopping a concurrent endpoint: the last thread left processes the rest.
                st.active -= 1;
                return None;
            }
            match st.messages.pop_front() {
                Some(m) => Some(m),
                None => {
                    st.active -= 1;
                    st.scheduled = false;
                    None
                }
            }
        });
        match next {
            Some(m) => msg = m,
            None => return kind == MessageKind::Stop,
        }
    }
}

/// Marks the inbox stopped and queues `on_stop` (Spark's `Inbox.stop`),
/// calling `schedule` (lock released) unless the inbox is scheduled already.
/// Returns false, dropping `on_stop`, when the inbox was stopped before.
pub fn stop<T: Queued>(state: &impl Guarded<T>, on_stop: T, schedule: impl FnOnce()) -> bool {
    let outcome = state.with(|st| {
        if st.stopped {
            return None;
        }
        st.stopped = true;
        st.concurrent = false;
        st.messages.push_back(on_stop);
        Some(!std::mem::replace(&mut st.scheduled, true))
    });
    match outcome {
        None => false,
        Some(schedule_now) => {
            if schedule_now {
                schedule();
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Queued for MessageKind {
        fn kind(&self) -> MessageKind {
            *self
        }
    }

    #[test]
    fn refuses_when_full_or_stopped_and_hands_the_message_back() {
        let st = Mutex::new(State::new(MessageKind::Start));
        let mut scheduled = 0;
        enqueue(&st, MessageKind::Message, 2, || scheduled += 1).unwrap();
        assert_eq!(scheduled, 0, "already scheduled by its creator");
        let refused = enqueue(&st, MessageKind::Message, 2, || scheduled += 1).unwrap_err();
        assert_eq!(refused, (Refused::Full, MessageKind::Message));
        enqueue(&st, MessageKind::Event, 2, || scheduled += 1).unwrap();
        assert!(stop(&st, MessageKind::Stop, || scheduled += 1));
        assert!(!stop(&st, MessageKind::Stop, || scheduled += 1));
        let refused = enqueue(&st, MessageKind::Event, 9, || scheduled += 1).unwrap_err();
        assert_eq!(refused.0, Refused::Stopped);
        assert_eq!(scheduled, 0);
    }

    #[test]
    fn processes_in_order_and_stops_last() {
        let st = Mutex::new(State::new(MessageKind::Start));
        enqueue(&st, MessageKind::Message, 9, || {}).unwrap();
        stop(&st, MessageKind::Stop, || {});
        let mut seen = Vec::new();
        assert!(process(
            &st,
            true,
            |concurrent| assert!(!concurrent),
            |_, m| seen.push(m)
        ));
        assert_eq!(
            seen,
            [MessageKind::Start, MessageKind::Message, MessageKind::Stop]
        );
        st.with(|s| {
            assert!(s.is_empty() && !s.is_scheduled() && s.active() == 0 && s.is_stopped());
            assert_eq!(s.len(), 0);
        });
    }

    #[test]
    fn a_cloneable_endpoint_turns_concurrent_after_start() {
        let st = Mutex::new(State::new(MessageKind::Start));
        assert!(!process(&st, true, |_| (), |_, _| {}));
        let mut scheduled = 0;
        enqueue(&st, MessageKind::Message, 9, || scheduled += 1).unwrap();
        enqueue(&st, MessageKind::Message, 9, || scheduled += 1).unwrap();
        assert_eq!(scheduled, 2, "a concurrent inbox is scheduled per message");
        process(&st, true, |concurrent| assert!(concurrent), |_, _| {});
    }
}

//! `TimeoutScheduler`: one thread that fails asks whose deadline passed
//! (Spark's `NettyRpcEnv.timeoutScheduler`, with remove-on-cancel so that
//! answered asks leave no entry behind).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Identifies a scheduled timeout, for [`TimeoutScheduler::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey(Instant, u64);

/// Runs with `true` at the deadline, or with `false` when the scheduler stops first.
/// What a timer does when its deadline passes (`timed_out` true) or the
/// scheduler stops first (`false`). Shared, not boxed: an ask's promise is
/// its own timer action, so arming a timeout allocates nothing per ask.
pub(crate) trait Expire: Send + Sync {
    /// Runs once, on the timer thread or the thread that stops the scheduler.
    fn expire(&self, timed_out: bool);
}

type Action = Arc<dyn Expire>;

#[derive(Default)]
struct State {
    entries: BTreeMap<TimerKey, Action>,
    stopped: bool,
}

/// A timer thread running actions at their deadlines.
pub(crate) struct TimeoutScheduler {
    state: Mutex<State>,
    cond: Condvar,
    seq: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl TimeoutScheduler {
    /// Starts the timer thread.
    pub(crate) fn start() -> Arc<Self> {
        let sched = Arc::new(Self {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            seq: AtomicU64::new(0),
            thread: Mutex::new(None),
        });
        let me = sched.clone();
        let thread = std::thread::Builder::new()
            .name("rpc-timeout".into())
            .spawn(move || me.run())
            .expect("spawning the rpc-timeout thread");
        *sched.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        sched
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `action` at `deadline` unless cancelled first.
    pub(crate) fn schedule(&self, deadline: Instant, action: Action) -> TimerKey {
        let key = TimerKey(deadline, self.seq.fetch_add(1, Ordering::Relaxed));
        let mut st = self.lock();
        let earliest = st.entries.keys().next().is_none_or(|first| key < *first);
        st.entries.insert(key, action);
        drop(st);
        if earliest {
            self.cond.notify_one();
        }
        key
    }

    /// Drops a scheduled action; no effect if it already ran.
    pub(crate) fn cancel(&self, key: TimerKey) {
        let action = self.lock().entries.remove(&key);
        drop(action);
    }

    /// Actions scheduled and not yet run or cancelled.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Stops the thread; pending actions run at once with `false` (not timed out: stopped).
    pub(crate) fn stop(&self) {
        let pending = {
            let mut st = self.lock();
            st.stopped = true;
            std::mem::take(&mut st.entries)
        };
        for (_, action) in pending {
            action.expire(false);
        }
        self.cond.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }

    fn run(&self) {
        let mut st = self.lock();
        loop {
            if st.stopped {
                return;
            }
            let now = Instant::now();
            match st.entries.first_key_value().map(|(k, _)| *k) {
                Some(key) if key.0 <= now => {
                    let action = st.entries.remove(&key).expect("present");
                    drop(st);
                    action.expire(true);
                    st = self.lock();
                }
                Some(key) => {
                    st = self
                        .cond
                        .wait_timeout(st, key.0 - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

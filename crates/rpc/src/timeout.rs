//! `TimeoutScheduler`: one thread that fails asks whose deadline passed
//! (Spark's `NettyRpcEnv.timeoutScheduler`, with remove-on-cancel so that
//! answered asks leave no entry behind).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

pub(crate) use crate::timer_queue::TimerKey;
use crate::timer_queue::TimerQueue;

/// What a timer does when its deadline passes (`timed_out` true) or the
/// scheduler stops first (`false`). Shared, not boxed: an ask's promise is
/// its own timer action, so arming a timeout allocates nothing per ask.
pub(crate) trait Expire: Send + Sync {
    /// Runs once, on the timer thread or the thread that stops the scheduler.
    fn expire(&self, timed_out: bool);
}

type Action = Arc<dyn Expire>;

/// One ask's timer once armed: what cancelling it needs. Both kinds of ask
/// (`AskFuture`'s promise and `ask_with`'s callback) keep one.
#[derive(Default)]
pub(crate) struct ArmedTimer(Mutex<Option<(Arc<TimeoutScheduler>, TimerKey)>>);

impl ArmedTimer {
    /// Schedules `action` at `deadline` and keeps its key, or cancels it at
    /// once if `still_pending()` says the ask was answered while arming.
    /// `still_pending` runs with this timer locked, so an answer that lands
    /// during arming either sees the key (and [`cancel`](Self::cancel)s it)
    /// or is seen by `still_pending`.
    pub(crate) fn arm(
        &self,
        sched: &Arc<TimeoutScheduler>,
        deadline: Instant,
        action: Action,
        still_pending: impl FnOnce() -> bool,
    ) {
        let key = sched.schedule(deadline, action);
        let mut timer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if still_pending() {
            *timer = Some((sched.clone(), key));
        } else {
            sched.cancel(key);
        }
    }

    /// Cancels the timer if it is armed; no effect otherwise.
    pub(crate) fn cancel(&self) {
        let timer = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((sched, key)) = timer {
            sched.cancel(key);
        }
    }
}

#[derive(Default)]
struct State {
    entries: TimerQueue<Action>,
    stopped: bool,
    /// When the timer thread will wake by itself: `None` while it runs or
    /// waits with nothing scheduled. A new deadline after this one needs no
    /// wake-up: the thread looks again then. (Asks' deadlines mostly grow, so
    /// arming one almost never wakes the timer thread, which would cost a
    /// cross-thread wake-up per ask.)
    wakes_at: Option<Instant>,
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
        let wake = st.wakes_at.is_none_or(|at| deadline < at);
        st.entries.insert(key, action);
        drop(st);
        if wake {
            self.cond.notify_one();
        }
        key
    }

    /// Drops a scheduled action; no effect if it already ran.
    pub(crate) fn cancel(&self, key: TimerKey) {
        let action = self.lock().entries.cancel(key);
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
            st.entries.drain()
        };
        for action in pending {
            expire_contained(&*action, false);
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
            st.wakes_at = None;
            if let Some(action) = st.entries.pop_due(now) {
                drop(st);
                expire_contained(&*action, true);
                st = self.lock();
                continue;
            }
            match st.entries.next_deadline() {
                Some(deadline) => {
                    st.wakes_at = Some(deadline);
                    st = self
                        .cond
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Runs `action`'s expiry, containing a panic of the asker's callback it
/// calls: logged at `error`, and the other asks still expire (the timer
/// thread is one per RpcEnv; had it ended, no ask of the RpcEnv would ever
/// time out again).
fn expire_contained(action: &dyn Expire, timed_out: bool) {
    let expired = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| action.expire(timed_out)));
    if expired.is_err() {
        tracing::error!(
            "an ask's callback panicked as the ask expired; the other asks still expire \
             (the panic is a bug in that callback)"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;

    struct Flag(AtomicBool);

    impl Expire for Flag {
        fn expire(&self, timed_out: bool) {
            self.0.store(timed_out, Ordering::SeqCst);
        }
    }

    fn flag() -> Arc<Flag> {
        Arc::new(Flag(AtomicBool::new(false)))
    }

    fn wait_for(f: &Flag) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if f.0.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_nearer_deadline_wakes_a_thread_sleeping_until_a_later_one() {
        let sched = TimeoutScheduler::start();
        let (far, near) = (flag(), flag());
        sched.schedule(Instant::now() + Duration::from_secs(3600), far.clone());
        std::thread::sleep(Duration::from_millis(20)); // the thread now sleeps until the far one
        sched.schedule(Instant::now() + Duration::from_millis(10), near.clone());
        assert!(wait_for(&near), "the near deadline fired");
        assert!(!far.0.load(Ordering::SeqCst));
        sched.stop();
    }

    #[test]
    fn later_deadlines_fire_in_order_without_a_wake_up_each() {
        let sched = TimeoutScheduler::start();
        let flags: Vec<_> = (1..=5u64)
            .map(|i| {
                let f = flag();
                sched.schedule(Instant::now() + Duration::from_millis(10 * i), f.clone());
                f
            })
            .collect();
        for f in &flags {
            assert!(wait_for(f));
        }
        assert_eq!(sched.len(), 0);
        sched.stop();
    }
}

//! Spin-then-park for a tokio event loop: before the loop's thread parks in
//! `epoll_wait`, a spinner task keeps polling the IO driver without blocking
//! for up to `spin_before_park_us`, as long as the loop's
//! [`SpinPolicy`] says recent idle gaps were shorter than that.
//!
//! tokio's current-thread scheduler calls the runtime's `on_thread_park` hook
//! when it has nothing to run, and does not block if the hook made a task
//! runnable. The hook wakes the spinner task; the spinner yields with
//! `tokio::task::yield_now`, which tokio defers until it has polled the IO
//! driver with a zero timeout, so each round of the spin is one non-blocking
//! `epoll_wait` that runs whatever became ready. The connection tasks call
//! [`mark_activity`] when they get work; the spinner stops at the first
//! activity or at the deadline, and the next idle moment decides again.
//! Every round also yields the CPU (`sched_yield`), so a thread waiting for
//! this core runs at once; a yield that took longer than the budget (another
//! thread had the CPU) stops the spin and pauses spinning (see [`SpinPolicy`]).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use transport::SpinPolicy;

thread_local! {
    /// Work seen by this thread's connection tasks, a count.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// This thread's spin state, when it runs a spinning event loop.
    static STATE: RefCell<Option<LoopSpin>> = const { RefCell::new(None) };
}

/// Counts one piece of work (bytes read, frames to write) on the calling
/// thread; a spinning loop stops spinning when it sees it. A few ns.
pub(crate) fn mark_activity() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
}

/// CPUs the calling thread may run on (`sched_getaffinity`); 0 when the call
/// fails. A loop confined to one CPU does not spin (see [`SpinPolicy`]).
fn cpus_allowed() -> usize {
    rustix::thread::sched_getaffinity(None).map_or(0, |set| set.count() as usize)
}

fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

struct LoopSpin {
    policy: SpinPolicy,
    /// When the loop last ran out of work, until work arrives.
    idle_since: Option<Instant>,
    /// The spinner's waker while it waits to be started.
    spinner: Option<Waker>,
    /// Set by the park hook to start the spinner; taken by the spinner.
    started: bool,
    /// The spin of this idle period has run out: park until work arrives.
    spun_out: bool,
    /// The last park hook let the thread block.
    parked: bool,
    /// When the running spin stops.
    deadline: Instant,
}

/// Installs the spin state on the calling thread (the loop's thread, before
/// `block_on`). A zero `budget` installs nothing, and the hooks do nothing.
pub(crate) fn install(budget: Duration) {
    if budget.is_zero() {
        return;
    }
    STATE.with(|s| {
        *s.borrow_mut() = Some(LoopSpin {
            policy: SpinPolicy::new(budget),
            idle_since: None,
            spinner: None,
            started: false,
            spun_out: false,
            parked: false,
            deadline: Instant::now(),
        });
    });
}

/// The runtime's `on_thread_park` hook: the loop has nothing to run. Starts
/// the spinner if the policy says so and this idle period has not spun out
/// yet; otherwise lets the thread park.
pub(crate) fn before_park() {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let Some(st) = s.as_mut() else { return };
        let now = Instant::now();
        if st.policy.affinity_due(now) {
            st.policy.set_cpus_allowed(cpus_allowed(), now);
        }
        let idle_since = *st.idle_since.get_or_insert(now);
        let spin = st.policy.spin_for(now);
        match st.spinner.take() {
            Some(waker) if !st.spun_out && !spin.is_zero() => {
                st.started = true;
                st.parked = false;
                st.deadline = idle_since + spin;
                waker.wake();
            }
            waker => {
                st.spinner = waker;
                st.parked = true;
            }
        }
    });
}

/// The runtime's `on_thread_unpark` hook: after a park that blocked, the
/// idle period is over; its length goes to the policy.
pub(crate) fn after_unpark() {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let Some(st) = s.as_mut() else { return };
        if std::mem::take(&mut st.parked) {
            end_idle(st);
        }
    });
}

fn end_idle(st: &mut LoopSpin) {
    if let Some(since) = st.idle_since.take() {
        st.policy.record_idle_gap(since.elapsed());
    }
    st.spun_out = false;
}

/// The spinner task of a loop whose state [`install`] set up; spawn it on the
/// loop. Without that state it returns at once.
pub(crate) async fn spinner() {
    if STATE.with(|s| s.borrow().is_none()) {
        return;
    }
    loop {
        // Wait for the park hook to start a spin.
        poll_fn(|cx| {
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                let st = s.as_mut().expect("installed");
                if std::mem::take(&mut st.started) {
                    Poll::Ready(())
                } else {
                    st.spinner = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await;
        let seen = activity();
        let mut lost_cpu = false;
        loop {
            // Deferred by tokio until the IO driver has been polled without
            // blocking and what it made ready has run.
            tokio::task::yield_now().await;
            let done = STATE.with(|s| {
                let mut s = s.borrow_mut();
                let st = s.as_mut().expect("installed");
                if activity() != seen {
                    end_idle(st);
                    true
                } else if lost_cpu || Instant::now() >= st.deadline {
                    // Lost the CPU, or nothing came in time: park this idle period.
                    st.spun_out = true;
                    true
                } else {
                    false
                }
            });
            if done {
                break;
            }
            // A yield that comes back late means another thread had this CPU
            // that long: the policy pauses spinning, whether or not work came
            // in meanwhile (timing the whole round, which runs the work that
            // came, could not tell the two apart; checking for work first hid
            // the lost CPU under contention).
            let before = Instant::now();
            std::thread::yield_now();
            let after = Instant::now();
            lost_cpu = STATE.with(|s| {
                s.borrow_mut()
                    .as_mut()
                    .expect("installed")
                    .policy
                    .check_round(before, after)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use rustix::thread::CpuSet;

    use super::STATE;
    use crate::event_loop::EventLoopGroup;

    /// Runs `f` on the loop's thread and returns its result.
    fn on_loop<T: Send + 'static>(group: &EventLoopGroup, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        group.next().spawn(async move {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the loop ran the task")
    }

    /// Whether the loop's policy last saw its thread confined to one CPU.
    fn confined(group: &EventLoopGroup) -> bool {
        on_loop(group, || {
            STATE.with(|s| {
                let s = s.borrow();
                s.as_ref()
                    .expect("the loop installed its spin state")
                    .policy
                    .confined_to_one_cpu()
            })
        })
    }

    /// Waits (up to 5 s, polling every 20 ms: each poll is an idle moment at
    /// which the loop may re-read its affinity) until `confined` says `want`.
    fn wait_confined(group: &EventLoopGroup, want: bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while confined(group) != want {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_loop_pinned_to_one_cpu_stops_spinning_and_one_on_more_spins() {
        let group = EventLoopGroup::new("spin-test", 1, Duration::from_micros(100)).unwrap();
        let allowed = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
        let first = (0..CpuSet::MAX_CPU)
            .find(|&c| allowed.is_set(c))
            .expect("some CPU is allowed");
        if allowed.count() > 1 {
            wait_confined(
                &group,
                false,
                "a loop free to use several CPUs counts as confined",
            );
        }
        on_loop(&group, move || {
            let mut one = CpuSet::new();
            one.set(first);
            rustix::thread::sched_setaffinity(None, &one).expect("pin the loop thread");
        });
        // The loop re-reads its affinity at an idle moment at most every 100 ms.
        wait_confined(&group, true, "a loop pinned to one CPU does not see it");
        on_loop(&group, || {
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                let st = s.as_mut().expect("installed");
                assert_eq!(
                    st.policy.spin_for(Instant::now()),
                    Duration::ZERO,
                    "a confined loop spins"
                );
            })
        });
        if allowed.count() > 1 {
            on_loop(&group, move || {
                rustix::thread::sched_setaffinity(None, &allowed).expect("unpin the loop thread");
            });
            wait_confined(&group, false, "an unpinned loop still counts as confined");
        }
        group.shutdown();
    }
}

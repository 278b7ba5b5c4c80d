//! `Scheduler`: one timer thread running delayed and periodic tasks (Spark's
//! `forwardMessageThread` / `ThreadUtils.newDaemonSingleThreadScheduledExecutor`).
//!
//! Tasks are short: they post a message to an endpoint and return. One
//! scheduler can serve many workers in a process, so 200 workers need one
//! timer thread, not 200.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Result, StandaloneError};

enum Task {
    Once(Box<dyn FnOnce() + Send>),
    /// Runs every period while it returns true.
    Every(Duration, Box<dyn FnMut() -> bool + Send>),
}

struct Entry {
    at: Instant,
    seq: u64,
    task: Task,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that the max-heap pops the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
    stopped: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    cond: Condvar,
}

struct Owner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopped = true;
        self.shared.cond.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

/// A timer thread; cheap to clone. The thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct Scheduler {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scheduler")
    }
}

impl Scheduler {
    /// Starts the timer thread, named `name`.
    ///
    /// # Errors
    /// [`StandaloneError::Io`] when the thread cannot be started.
    pub fn new(name: &str) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
        });
        let run = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run_loop(&run))
            .map_err(|e| StandaloneError::Io {
                what: "cannot start the timer thread".into(),
                source: e,
            })?;
        Ok(Self {
            owner: Arc::new(Owner {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn push(&self, at: Instant, task: Task) {
        let shared = &self.owner.shared;
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.seq += 1;
        let seq = q.seq;
        q.heap.push(Entry { at, seq, task });
        drop(q);
        shared.cond.notify_one();
    }

    /// Runs `f` once after `delay`.
    pub fn schedule_once(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        self.push(Instant::now() + delay, Task::Once(Box::new(f)));
    }

    /// Runs `f` every `period` (first after one period) for as long as it returns true.
    pub fn schedule_every(&self, period: Duration, f: impl FnMut() -> bool + Send + 'static) {
        self.push(Instant::now() + period, Task::Every(period, Box::new(f)));
    }
}

fn run_loop(shared: &Shared) {
    let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if q.stopped {
            return;
        }
        let now = Instant::now();
        match q.heap.peek().map(|e| e.at) {
            Some(at) if at <= now => {
                let Some(entry) = q.heap.pop() else { continue };
                drop(q);
                let again = match entry.task {
                    Task::Once(f) => {
                        f();
                        None
                    }
                    Task::Every(period, mut f) => f().then(|| Task::Every(period, f)).map(|t| (period, t)),
                };
                q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((period, task)) = again {
                    q.seq += 1;
                    let seq = q.seq;
                    q.heap.push(Entry {
                        at: (entry.at + period).max(now),
                        seq,
                        task,
                    });
                }
            }
            Some(at) => {
                q = shared
                    .cond
                    .wait_timeout(q, at - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            None => q = shared.cond.wait(q).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering as O};

    #[test]
    fn once_and_every() {
        let s = Scheduler::new("t").unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = crossbeam_channel::bounded(1);
        s.schedule_once(Duration::from_millis(20), move || tx.send(()).unwrap());
        let m = n.clone();
        s.schedule_every(Duration::from_millis(5), move || m.fetch_add(1, O::SeqCst) < 3);
        rx.recv_timeout(Duration::from_secs(2)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(n.load(O::SeqCst), 4);
    }
}

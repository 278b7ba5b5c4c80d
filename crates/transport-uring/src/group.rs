//! `EventLoopGroup`: a fixed set of event-loop threads, each running its own
//! ring ([`EventLoop`](crate::ring_loop::EventLoop)); connections are spread
//! over them round robin and stay on one thread for their whole life.
//!
//! Other threads talk to a loop through its [`LoopHandle`]: a command queue
//! under a short lock, and an eventfd the loop keeps a read pending on. The
//! eventfd is written only when the loop may be asleep in `io_uring_enter`
//! (the `awake` flag), so a busy loop takes commands without a system call.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::{JoinHandle, ThreadId};

use crate::ring_loop::{Command, EventLoop, LoopConf};

/// The shared face of one event loop.
pub(crate) struct LoopHandle {
    /// `None` once the loop has ended: commands sent then are dropped at once
    /// (dropping a connect's reply channel tells the caller).
    commands: Mutex<Option<Vec<Command>>>,
    /// False only while the loop is (about to be) parked in `io_uring_enter`.
    awake: AtomicBool,
    eventfd: OwnedFd,
    thread: OnceLock<ThreadId>,
}

impl LoopHandle {
    fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no memory arguments; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            commands: Mutex::new(Some(Vec::new())),
            awake: AtomicBool::new(true),
            // SAFETY: `fd` was just created and is owned by nothing else.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            thread: OnceLock::new(),
        })
    }

    /// Queues `cmd` for the loop and wakes it if it may be parked. Never blocks
    /// for long: a short lock, and at most one 8-byte eventfd write.
    pub(crate) fn send(&self, cmd: Command) {
        match self.commands.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(q) => q.push(cmd),
            None => return,
        }
        if !self.awake.swap(true, Ordering::SeqCst) {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
            let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }

    /// The eventfd the loop reads to be woken.
    pub(crate) fn eventfd(&self) -> &OwnedFd {
        &self.eventfd
    }

    /// Moves the queued commands into `out`.
    pub(crate) fn take_commands(&self, out: &mut Vec<Command>) {
        if let Some(q) = self.commands.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            std::mem::swap(q, out);
        }
    }

    /// Called by the loop as it ends: drops queued and future commands.
    pub(crate) fn close(&self) {
        let left = self.commands.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(left);
    }

    /// Called by the loop before parking: returns whether it may park (no
    /// command arrived). Senders after this write the eventfd.
    pub(crate) fn prepare_park(&self) -> bool {
        self.awake.store(false, Ordering::SeqCst);
        let idle = !self.has_commands();
        if !idle {
            self.awake.store(true, Ordering::SeqCst);
        }
        idle
    }

    /// Whether commands are queued (a cheap check for a spinning loop).
    pub(crate) fn has_commands(&self) -> bool {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|q| !q.is_empty())
    }

    /// Called by the loop once it runs again.
    pub(crate) fn unpark(&self) {
        self.awake.store(true, Ordering::SeqCst);
    }

    /// Whether the calling thread is this loop's.
    pub(crate) fn is_current(&self) -> bool {
        self.thread.get() == Some(&std::thread::current().id())
    }
}

/// Hands out a group's loops round robin; loops hold one to place accepted connections.
#[derive(Clone)]
pub(crate) struct Picker {
    loops: Arc<[Arc<LoopHandle>]>,
    next: Arc<AtomicUsize>,
}

impl Picker {
    /// The next loop, round robin.
    pub(crate) fn next(&self) -> &Arc<LoopHandle> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.loops.len();
        &self.loops[i]
    }
}

/// A group of event-loop threads.
pub(crate) struct EventLoopGroup {
    picker: Picker,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl EventLoopGroup {
    /// Starts `threads` loops named `{name}-{i}`, each with its own ring and
    /// provided-buffer ring, and waits until every one is ready.
    ///
    /// # Errors
    /// The first loop's setup error (ring setup, buffer ring registration).
    pub(crate) fn new(name: &str, threads: usize, conf: &Arc<LoopConf>) -> io::Result<Self> {
        let handles: Vec<Arc<LoopHandle>> = (0..threads.max(1))
            .map(|_| LoopHandle::new().map(Arc::new))
            .collect::<io::Result<_>>()?;
        let picker = Picker {
            loops: handles.into(),
            next: Arc::new(AtomicUsize::new(0)),
        };
        let group = Self {
            picker: picker.clone(),
            threads: Mutex::new(Vec::new()),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for (i, handle) in picker.loops.iter().enumerate() {
            let (handle, picker, conf, ready) =
                (handle.clone(), picker.clone(), conf.clone(), ready_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let _ = handle.thread.set(std::thread::current().id());
                    // The ring is created on its own thread: SINGLE_ISSUER binds it to its creator.
                    match EventLoop::new(handle, picker, conf) {
                        Ok(event_loop) => {
                            let _ = ready.send(Ok(()));
                            event_loop.run();
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    }
                })?;
            group
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(thread);
        }
        drop(ready_tx);
        for _ in 0..picker.loops.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    group.shutdown();
                    return Err(e);
                }
                Err(_) => {
                    group.shutdown();
                    return Err(io::Error::other("an event-loop thread died while starting"));
                }
            }
        }
        Ok(group)
    }

    /// The next loop, round robin.
    pub(crate) fn next(&self) -> &Arc<LoopHandle> {
        self.picker.next()
    }

    /// Whether the calling thread is one of this group's loops.
    pub(crate) fn is_loop_thread(&self) -> bool {
        self.picker.loops.iter().any(|l| l.is_current())
    }

    /// Tells every loop to close its connections and servers and stop, then
    /// joins the threads (all but the calling thread's own, which stops once
    /// the current callback returns). Idempotent.
    pub(crate) fn shutdown(&self) {
        for l in self.picker.loops.iter() {
            l.send(Command::Shutdown);
        }
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

/// CPUs the calling thread may run on (`sched_getaffinity`); 0 when the call
/// fails. An event loop confined to one CPU does not spin before parking.
pub(crate) fn cpus_allowed() -> usize {
    rustix::thread::sched_getaffinity(None).map_or(0, |set| set.count() as usize)
}

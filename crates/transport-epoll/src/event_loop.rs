//! `EventLoopGroup`: a fixed set of event-loop threads, each running one
//! single-threaded tokio runtime (Netty's `EpollEventLoopGroup`: one thread
//! owns each connection for its whole life, so the handler calls and response
//! callbacks of a connection never run concurrently and never change thread).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::spin;

struct EventLoop {
    handle: Handle,
    thread_id: ThreadId,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A group of event-loop threads; connections are handed out round robin.
pub(crate) struct EventLoopGroup {
    loops: Vec<EventLoop>,
    next: AtomicUsize,
}

impl EventLoopGroup {
    /// Starts `threads` event loops named `{name}-{i}`, each polling for up to
    /// `spin_before_park` before it parks (adaptive; zero parks at once; see
    /// [`crate::spin`]).
    pub(crate) fn new(name: &str, threads: usize, spin_before_park: Duration) -> std::io::Result<Self> {
        let mut loops = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(spin::before_park)
                .on_thread_unpark(spin::after_unpark)
                .build()?;
            let handle = runtime.handle().clone();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    spin::install(spin_before_park);
                    // Runs spawned tasks until told to stop; dropping the runtime then
                    // drops every task left, which closes their sockets.
                    let _ = runtime.block_on(async {
                        tokio::spawn(spin::spinner());
                        stop_rx.await
                    });
                    drop(runtime);
                })?;
            loops.push(EventLoop {
                handle,
                thread_id: thread.thread().id(),
                stop: Mutex::new(Some(stop_tx)),
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(Self {
            loops,
            next: AtomicUsize::new(0),
        })
    }

    /// The runtime handle of the next loop, round robin.
    pub(crate) fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.loops.len();
        &self.loops[i].handle
    }

    /// Whether the calling thread is one of this group's loops.
    pub(crate) fn is_loop_thread(&self) -> bool {
        let me = std::thread::current().id();
        self.loops.iter().any(|l| l.thread_id == me)
    }

    /// Stops every loop and joins its thread (except the calling thread's own
    /// loop, which stops once the current task returns). Idempotent.
    pub(crate) fn shutdown(&self) {
        let me = std::thread::current().id();
        for l in &self.loops {
            if let Some(stop) = l.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = stop.send(());
            }
        }
        for l in &self.loops {
            if l.thread_id == me {
                continue;
            }
            if let Some(t) = l.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = t.join();
            }
        }
    }
}

//! `EventLoop`: one thread, one ring. Each turn it takes the commands other
//! threads queued, pushes one send per connection with frames waiting (every
//! frame queued on a connection goes out in that one submission), then makes
//! one `io_uring_enter` that submits everything and waits for a completion,
//! and handles the completions it got.
//!
//! Connections live in a slab owned by the loop (`connection.rs`), listeners
//! in another (`server.rs`); in-flight operations in [`Ops`].

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use io_uring::{opcode, types};
use slab::Slab;
use transport::{BufferPool, ConnectionId, SpinPolicy, TransportClient, TransportConf, TransportError};

use crate::buf_ring::BufRing;
use crate::conf::UringConf;
use crate::connection::{Connection, ConnectionParams};
use crate::files::FileTable;
use crate::group::{LoopHandle, Picker};
use crate::ops::{Completion, IGNORED, Op, Ops};
use crate::probe::build_ring;
use crate::server::{Listen, Listener, ServerShared};

/// Buffer group id of each loop's provided-buffer ring.
const BUF_GROUP: u16 = 0;

/// What every loop of a transport shares.
pub(crate) struct LoopConf {
    pub(crate) transport: TransportConf,
    pub(crate) uring: UringConf,
    pub(crate) pool: BufferPool,
}

/// Work handed to a loop from another thread (or from itself).
pub(crate) enum Command {
    /// Serve an established connection on this loop; `reply` gets its client.
    Adopt(Box<Adopt>),
    /// Accept on a listening socket.
    Listen(Box<Listen>),
    /// Stop accepting on this server's socket.
    StopListen(Arc<ServerShared>),
    /// Frames were queued on connection `key` (with id `id`, against slot reuse).
    Flush(usize, ConnectionId),
    /// Close connection `key`.
    Close(usize, ConnectionId),
    /// Close everything and stop the loop once every operation has completed.
    Shutdown,
}

/// A connected socket to serve, with where to report the result.
pub(crate) struct Adopt {
    pub(crate) stream: TcpStream,
    pub(crate) params: ConnectionParams,
    pub(crate) reply: Option<SyncSender<Result<TransportClient, TransportError>>>,
}

/// One event-loop thread's state. Field order is drop order: the ring closes
/// before the buffer ring's memory is freed.
pub(crate) struct EventLoop {
    pub(crate) ops: Ops,
    pub(crate) buf_ring: BufRing,
    /// Registered sockets (empty unless `fixed_files`).
    pub(crate) files: FileTable,
    pub(crate) conns: Slab<Connection>,
    pub(crate) listeners: Slab<Listener>,
    pub(crate) handle: Arc<LoopHandle>,
    pub(crate) picker: Picker,
    pub(crate) conf: Arc<LoopConf>,
    /// Connections with frames to flush or a recv to arm, handled before the next submit.
    pub(crate) dirty: Vec<usize>,
    /// The list `flush_dirty` works through, kept for its capacity.
    dirty_spare: Vec<usize>,
    /// `iovec` arrays and `msghdr`s of finished sends, for the next ones.
    pub(crate) send_scratch: Vec<crate::send::SendScratch>,
    pub(crate) stopping: bool,
    wake_op: Option<usize>,
    wake_buf: Option<Box<[u8; 8]>>,
    /// Whether to poll before parking, from the idle gaps seen so far.
    spin: SpinPolicy,
    /// When the loop last waited with nothing to do, until work from outside
    /// arrives (see [`brings_work`](Self::brings_work)): one idle period may
    /// span several turns of the loop that only complete its own operations.
    idle_since: Option<Instant>,
}

impl EventLoop {
    /// Sets up the ring and the provided-buffer ring. Call on the loop's own thread.
    ///
    /// # Errors
    /// Ring setup or buffer-ring registration failures.
    pub(crate) fn new(handle: Arc<LoopHandle>, picker: Picker, conf: Arc<LoopConf>) -> io::Result<Self> {
        let (ring, _) = build_ring(conf.uring.ring_entries)?;
        let buf_ring = BufRing::new(
            &ring,
            conf.pool.clone(),
            conf.uring.buf_ring_entries,
            conf.uring.buf_size,
            BUF_GROUP,
        )?;
        let files = FileTable::new(&ring, conf.uring.fixed_files);
        let spin = SpinPolicy::new(conf.transport.spin_before_park());
        Ok(Self {
            ops: Ops::new(ring),
            buf_ring,
            files,
            conns: Slab::new(),
            listeners: Slab::new(),
            handle,
            picker,
            conf,
            dirty: Vec::new(),
            dirty_spare: Vec::new(),
            send_scratch: Vec::new(),
            stopping: false,
            wake_op: None,
            wake_buf: Some(Box::new([0; 8])),
            spin,
            idle_since: None,
        })
    }

    /// Runs until a `Shutdown` command has closed everything and every
    /// operation has completed.
    pub(crate) fn run(mut self) {
        let mut commands = Vec::new();
        let mut completions = Vec::new();
        self.arm_wake();
        loop {
            self.handle.take_commands(&mut commands);
            for cmd in commands.drain(..) {
                self.command(cmd);
            }
            self.flush_dirty();
            if self.stopping && self.ops.len() == 0 {
                break;
            }
            let idle_since = *self.idle_since.get_or_insert_with(Instant::now);
            let want = if self.spin_until_work(idle_since) {
                0
            } else {
                usize::from(self.handle.prepare_park())
            };
            if let Err(e) = self.ops.submit_and_wait(want) {
                tracing::error!(error = %e, "io_uring_enter failed; the event loop stops");
                break;
            }
            self.handle.unpark();
            self.ops.drain_completions(&mut completions);
            // Only work from outside ends the idle period: the completion of
            // a send the loop just made is not a gap between pieces of work,
            // and counting it as one (near zero) kept the average under the
            // budget for peers that are far slower (the epoll backend, whose
            // writes complete inline, never sees such a gap).
            if (completions.iter().any(|c| self.brings_work(c)) || self.handle.has_commands())
                && let Some(since) = self.idle_since.take()
            {
                self.spin.record_idle_gap(since.elapsed());
            }
            for c in completions.drain(..) {
                self.complete(c);
            }
        }
        self.handle.close();
        if self.ops.len() == 0 {
            let _ = self
                .ops
                .ring()
                .submitter()
                .unregister_buf_ring(self.buf_ring.group());
        } else {
            // Only after a fatal `io_uring_enter` error: recvs may still be in
            // flight, so the kernel may yet write into the provided buffers.
            let EventLoop { ops, buf_ring, .. } = self;
            drop(ops);
            std::mem::forget(buf_ring);
        }
    }

    /// Submits what is queued, then polls the completion queue (no system
    /// call) for as long as the loop's [`SpinPolicy`] says (up to
    /// `spin_before_park_us`, only while recent idle gaps were shorter, and
    /// not while backing off after a round that lost the CPU):
    /// waking a parked vCPU costs ~30 µs here, so a reply that comes back
    /// within that is caught without one. Each round yields the CPU
    /// (`sched_yield`), so a thread waiting for this core (the peer of a
    /// loopback connection, another process) runs at once instead of at the
    /// end of a time slice. The spin ends `spin_before_park_us` after
    /// `idle_since`, when the loop's idle period began. Returns whether work
    /// (or a completion) arrived.
    fn spin_until_work(&mut self, idle_since: Instant) -> bool {
        let start = Instant::now();
        if self.spin.affinity_due(start) {
            self.spin.set_cpus_allowed(crate::group::cpus_allowed(), start);
        }
        let spin = self.spin.spin_for(start);
        let deadline = idle_since + spin;
        if spin.is_zero() || start >= deadline {
            // Not spinning, or this idle period already spun out: park with
            // the one `io_uring_enter` that also submits.
            return false;
        }
        if let Err(e) = self.ops.submit_and_wait(0) {
            tracing::warn!(error = %e, "io_uring submit failed");
        }
        loop {
            if self.ops.work_ready() || self.handle.has_commands() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // A yield that comes back late means another thread had this CPU
            // that long: the policy pauses spinning, whether or not work came
            // in meanwhile (checking for work first hid it under contention).
            std::thread::yield_now();
            if self.spin.check_round(now, Instant::now()) {
                return self.ops.work_ready() || self.handle.has_commands();
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Adopt(a) => self.adopt(*a),
            Command::Listen(l) => self.listen(*l),
            Command::StopListen(server) => self.stop_listen(&server),
            Command::Flush(key, id) => {
                if self.conns.get(key).is_some_and(|c| c.id == id) {
                    self.mark_dirty(key);
                }
            }
            Command::Close(key, id) => {
                if self.conns.get(key).is_some_and(|c| c.id == id) {
                    self.close_connection(key, None, None);
                }
            }
            Command::Shutdown => self.shutdown(),
        }
    }

    fn shutdown(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let listeners: Vec<_> = self.listeners.iter().map(|(_, l)| l.server.clone()).collect();
        for server in listeners {
            self.stop_listen(&server);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close_connection(key, Some("the transport is shutting down".into()), None);
        }
        if let Some(op) = self.wake_op {
            self.ops.cancel(op);
        }
    }

    /// Keeps a read pending on the eventfd so other threads can wake the ring.
    fn arm_wake(&mut self) {
        if self.stopping {
            return;
        }
        let Some(mut buf) = self.wake_buf.take() else {
            return;
        };
        let fd = types::Fd(self.handle.eventfd().as_raw_fd());
        let sqe = opcode::Read::new(fd, buf.as_mut_ptr(), 8).build();
        // SAFETY: the 8-byte buffer is a Box moved into the op entry; its heap
        // memory stays put until the entry is finished at the read's CQE.
        self.wake_op = Some(unsafe { self.ops.start(sqe, Op::Wake(buf)) });
    }

    /// Whether completion `c` is work from outside the loop: a wake-up for
    /// commands, an accepted connection, received bytes (or the end of a
    /// recv). The loop's own sends and their notifications, accept back-off
    /// timers and cancels are not.
    fn brings_work(&self, c: &Completion) -> bool {
        c.user_data != IGNORED
            && matches!(
                self.ops.get(c.user_data as usize),
                Some(Op::Wake(_) | Op::Accept(_) | Op::Recv(_) | Op::RecvDirect(_))
            )
    }

    fn complete(&mut self, c: Completion) {
        if c.user_data == IGNORED {
            return;
        }
        let key = c.user_data as usize;
        match self.ops.get_mut(key) {
            Some(Op::Wake(_)) => {
                if let Some(Op::Wake(buf)) = self.ops.finish(key) {
                    self.wake_buf = Some(buf);
                }
                self.wake_op = None;
                self.arm_wake();
            }
            Some(Op::Accept(_)) => self.on_accept(key, c),
            Some(Op::AcceptBackoff(..)) => self.on_accept_backoff(key),
            Some(Op::Recv(_)) => self.on_recv(key, c, false),
            Some(Op::RecvDirect(_)) => self.on_recv(key, c, true),
            Some(Op::Send(..) | Op::ZcNotify(..)) => self.on_send(key, c),
            Some(Op::Taken) | None => {
                tracing::warn!(user_data = c.user_data, "completion for an unknown operation");
            }
        }
    }

    /// Queues `key` to be flushed (and its recv armed) before the next submit.
    pub(crate) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn flush_dirty(&mut self) {
        // Two lists swapped back and forth: flushing may mark more connections
        // dirty, and neither list is reallocated once it has grown.
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty_spare);
            std::mem::swap(&mut dirty, &mut self.dirty);
            for &key in &dirty {
                self.flush(key);
            }
            dirty.clear();
            self.dirty_spare = dirty;
        }
    }
}

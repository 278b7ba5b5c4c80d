//! `UringServer`: a listening socket with a multishot accept on one loop of
//! the server group; each accepted connection goes to the next loop of the
//! group, round robin (Netty's boss / worker split, with one group).
//!
//! A connection accepted while the server already has `max_connections` open
//! is closed at once (and logged); the others are unaffected.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use io_uring::{opcode, types};
use transport::{
    BufferPool, ConnectionId, ConnectionRegistry, TransportConf, TransportHandler, TransportServer,
};

use crate::connection::ConnectionParams;
use crate::group::LoopHandle;
use crate::ops::{Completion, Op};
use crate::ring_loop::{Adopt, Command, EventLoop};
use crate::socket;

/// Pause before accepting again after running out of descriptors or memory, in nanoseconds.
const ACCEPT_BACKOFF_NS: u32 = 10_000_000;

/// What a server shares between its handle, the transport and its loop.
pub(crate) struct ServerShared {
    pub(crate) local_addr: SocketAddr,
    pub(crate) connections: ConnectionRegistry,
    closed: AtomicBool,
    /// The listening socket, until `close` shuts it down; the loop holds it too
    /// until its accept has completed, so the descriptor is never reused early.
    listener: Mutex<Option<Arc<TcpListener>>>,
    home: Weak<LoopHandle>,
    /// Accepted connections open now (held by their [`ConnectionPermit`]s).
    open: Arc<AtomicUsize>,
    /// Connections closed for being over `max_connections`, for the log.
    refused: AtomicU64,
}

impl ServerShared {
    pub(crate) fn new(
        local_addr: SocketAddr,
        listener: Arc<TcpListener>,
        home: Weak<LoopHandle>,
    ) -> Arc<Self> {
        Arc::new(Self {
            local_addr,
            connections: ConnectionRegistry::new(),
            closed: AtomicBool::new(false),
            listener: Mutex::new(Some(listener)),
            home,
            open: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
        })
    }

    /// Stops listening at once (new connects are refused when this returns),
    /// has the loop drop its accept, and closes the accepted connections. Idempotent.
    pub(crate) fn close(self: &Arc<Self>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(listener) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // SAFETY: shutdown(2) on a descriptor kept open by the `Arc` we hold.
            // On a listening socket it stops listening: queued and new connects are refused.
            unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
        }
        if let Some(home) = self.home.upgrade() {
            home.send(Command::StopListen(self.clone()));
        }
        // What is queued goes out first (bounded by `CLOSE_GRACE`), as
        // Spark's TransportServer.close lets Netty finish the writes before it.
        self.connections.close_all_after_flush(transport::CLOSE_GRACE);
    }
}

/// The handle returned by `bind`.
pub(crate) struct ServerHandle(pub(crate) Arc<ServerShared>);

impl TransportServer for ServerHandle {
    fn local_addr(&self) -> SocketAddr {
        self.0.local_addr
    }

    fn close(&self) {
        self.0.close();
    }
}

/// Asks a loop to accept on a listening socket.
pub(crate) struct Listen {
    pub(crate) listener: Arc<TcpListener>,
    pub(crate) server: Arc<ServerShared>,
    pub(crate) handler: Arc<dyn TransportHandler>,
    pub(crate) registries: Vec<ConnectionRegistry>,
    pub(crate) ids: Arc<AtomicU64>,
    pub(crate) pool: BufferPool,
    pub(crate) conf: TransportConf,
}

/// A listening socket on its loop.
pub(crate) struct Listener {
    pub(crate) server: Arc<ServerShared>,
    listen: Listen,
    op: Option<usize>,
    closing: bool,
}

impl EventLoop {
    /// Starts accepting on `l.listener`.
    pub(crate) fn listen(&mut self, l: Listen) {
        let closed = self.stopping || l.server.closed.load(Ordering::Acquire);
        let key = self.listeners.insert(Listener {
            server: l.server.clone(),
            listen: l,
            op: None,
            closing: closed,
        });
        if !closed {
            self.arm_accept(key);
        } else {
            self.listeners.remove(key);
        }
    }

    fn arm_accept(&mut self, key: usize) {
        let Some(l) = self.listeners.get_mut(key) else {
            return;
        };
        let fd = types::Fd(l.listen.listener.as_raw_fd());
        let sqe = opcode::AcceptMulti::new(fd).flags(libc::SOCK_CLOEXEC).build();
        // SAFETY: no pointer (multishot accept asks for no peer address); the
        // listener's descriptor is held open by the `Listener` until the
        // accept's last CQE.
        l.op = Some(unsafe { self.ops.start(sqe, Op::Accept(key)) });
    }

    /// Stops accepting on `server`; the listener goes when its accept ends.
    pub(crate) fn stop_listen(&mut self, server: &Arc<ServerShared>) {
        server.close_flag();
        let found = self
            .listeners
            .iter_mut()
            .find(|(_, l)| Arc::ptr_eq(&l.server, server));
        let Some((key, l)) = found else { return };
        l.closing = true;
        match l.op {
            Some(op) => self.ops.cancel(op),
            None => {
                self.listeners.remove(key);
            }
        }
    }

    /// Handles an accept completion: a new connection, or the accept's end.
    pub(crate) fn on_accept(&mut self, op: usize, c: Completion) {
        let Some(&mut Op::Accept(key)) = self.ops.get_mut(op) else {
            return;
        };
        if !c.more() {
            self.ops.finish(op);
        }
        let Some(l) = self.listeners.get_mut(key) else {
            return;
        };
        if !c.more() {
            l.op = None;
        }
        if c.result >= 0 {
            // SAFETY: a successful accept's result is a new descriptor nobody else owns.
            let stream = unsafe { TcpStream::from_raw_fd(c.result) };
            if l.closing || self.stopping {
                drop(stream);
            } else {
                self.place(key, stream);
            }
        } else if l.server.closed.load(Ordering::Acquire) {
            // `close` shut the listening socket down from another thread before this
            // loop saw it (the accept then ends with EINVAL): not an error.
            l.closing = true;
        } else if !l.closing {
            let err = std::io::Error::from_raw_os_error(-c.result);
            tracing::warn!(addr = %l.server.local_addr, error = %err, "accept failed; retrying");
            let starved = matches!(
                -c.result,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
            );
            if starved && l.op.is_none() {
                let ts = Box::new(types::Timespec::new().nsec(ACCEPT_BACKOFF_NS));
                let sqe = opcode::Timeout::new(&*ts).build();
                // SAFETY: the timespec is boxed in the op entry, alive until the timeout's CQE.
                l.op = Some(unsafe { self.ops.start(sqe, Op::AcceptBackoff(key, ts)) });
            }
        }
        self.rearm_or_drop(key);
    }

    /// The pause after a starved accept is over (or cancelled).
    pub(crate) fn on_accept_backoff(&mut self, op: usize) {
        let Some(Op::AcceptBackoff(key, _)) = self.ops.finish(op) else {
            return;
        };
        if let Some(l) = self.listeners.get_mut(key) {
            l.op = None;
        }
        self.rearm_or_drop(key);
    }

    /// With no operation left on listener `key`: re-arms its accept, or drops it when closing.
    fn rearm_or_drop(&mut self, key: usize) {
        let Some(l) = self.listeners.get(key) else { return };
        if l.op.is_none() {
            if l.closing || self.stopping {
                self.listeners.remove(key);
            } else {
                self.arm_accept(key);
            }
        }
    }

    /// Hands an accepted stream to the next loop of the group, or closes it
    /// when the server is at `max_connections`.
    fn place(&mut self, key: usize, stream: TcpStream) {
        let l = &self.listeners[key].listen;
        let limit = l.conf.connection_limit();
        let Some(permit) = transport::ConnectionPermit::try_take(&l.server.open, limit) else {
            // Dropping the stream closes it at once.
            return transport::log_refused_connection(&l.server.refused, stream.peer_addr().ok(), limit);
        };
        if let Err(e) = socket::configure(&stream, &l.conf) {
            tracing::warn!(error = %e, "dropping an accepted connection");
            return;
        }
        let adopt = Adopt {
            stream,
            params: ConnectionParams {
                id: ConnectionId(l.ids.fetch_add(1, Ordering::Relaxed)),
                pool: l.pool.clone(),
                handler: l.handler.clone(),
                registries: l.registries.clone(),
                permit: Some(permit),
            },
            reply: None,
        };
        let target = self.picker.next().clone();
        if Arc::ptr_eq(&target, &self.handle) {
            self.adopt(adopt);
        } else {
            target.send(Command::Adopt(Box::new(adopt)));
        }
    }
}

impl ServerShared {
    fn close_flag(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

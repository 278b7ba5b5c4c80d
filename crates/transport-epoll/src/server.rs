//! `EpollServer`: a listening socket whose accept loop runs on the first
//! server event loop and hands each accepted connection to the next loop of
//! the group (Netty's boss / worker split, with one group).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::AbortHandle;
use transport::{ConnectionId, ConnectionRegistry, TransportServer};

use crate::event_loop::EventLoopGroup;

/// A bound server; closing it stops accepting and closes what it accepted.
pub(crate) struct EpollServer {
    pub(crate) local_addr: SocketAddr,
    pub(crate) accept: Mutex<Option<AbortHandle>>,
    /// Receives once the accept task, and with it the listening socket, is dropped.
    pub(crate) listener_closed: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// The loops the accept task may run on (close cannot wait for it from there).
    pub(crate) group: Arc<EventLoopGroup>,
    pub(crate) connections: ConnectionRegistry,
    pub(crate) closed: AtomicBool,
}

impl EpollServer {
    pub(crate) fn new(local_addr: SocketAddr, group: Arc<EventLoopGroup>) -> Arc<Self> {
        Arc::new(Self {
            local_addr,
            accept: Mutex::new(None),
            listener_closed: Mutex::new(None),
            group,
            connections: ConnectionRegistry::new(),
            closed: AtomicBool::new(false),
        })
    }
}

/// The handle returned by `bind`; shares the server with the transport, which closes it on shutdown.
pub(crate) struct ServerHandle(pub(crate) Arc<EpollServer>);

impl TransportServer for ServerHandle {
    fn local_addr(&self) -> SocketAddr {
        self.0.local_addr
    }

    fn close(&self) {
        self.0.close();
    }
}

impl EpollServer {
    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(accept) = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take() {
            accept.abort();
        }
        // Wait until the listening socket is really closed, so that the port
        // refuses connections once `close` returns (as Spark's TransportServer.close does).
        let on_accept_thread = self.group.is_loop_thread();
        if let Some(closed) = self
            .listener_closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            && !on_accept_thread
        {
            let _ = closed.recv_timeout(Duration::from_secs(5));
        }
        // What is queued goes out first, as Spark's TransportServer.close lets
        // Netty finish the writes before it (not waiting on a loop thread,
        // which those writes need).
        let grace = if on_accept_thread {
            Duration::ZERO
        } else {
            transport::CLOSE_GRACE
        };
        self.connections.close_all_after_flush(grace);
    }
}

/// Signals when dropped, together with the listener it travels with.
pub(crate) struct ClosedSignal(pub(crate) std::sync::mpsc::SyncSender<()>);

impl Drop for ClosedSignal {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

/// Accepts until aborted; `serve` starts each accepted stream on an event loop.
/// `closed` fires after the listener is dropped.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    ids: Arc<AtomicU64>,
    mut serve: impl FnMut(ConnectionId, tokio::net::TcpStream),
    closed: ClosedSignal,
) {
    // Dropped in declaration order reversed: the listener first, then the signal.
    let _closed = closed;
    let listener = listener;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                crate::spin::mark_activity();
                serve(ConnectionId(ids.fetch_add(1, Ordering::Relaxed)), stream)
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays up.
                tracing::warn!(addr = ?listener.local_addr().ok(), error = %e, "accept failed; retrying in 10 ms");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

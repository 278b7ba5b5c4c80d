//! `EpollServer`: a listening socket whose accept loop runs on the first
//! server event loop and hands each accepted connection to the next loop of
//! the group (Netty's boss / worker split, with one group).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
        self.connections.close_all();
    }
}

/// A connection's place under its server's `max_connections`: taken when the
/// connection is accepted, given back when it is dropped (after the connection
/// has ended).
pub(crate) struct ConnectionPermit(Arc<AtomicUsize>);

impl ConnectionPermit {
    /// Takes a place if fewer than `limit` are taken in `open`.
    pub(crate) fn try_take(open: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(open.clone()))
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Logs a connection closed for being over `max_connections`: the 1st, 10th,
/// 100th, ... of a server at `warn` (a flood of connections cannot flood the
/// log), the others at `debug`.
pub(crate) fn log_refused(refused: &AtomicU64, peer: Option<SocketAddr>, limit: usize) {
    let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
    let peer = peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
    if is_power_of_ten(n) {
        tracing::warn!(
            %peer, limit, refused_so_far = n,
            "closing a new connection: the server already has `max_connections` connections open; \
             raise `max_connections` (RPC_MAX_CONNECTIONS) if this load is legitimate"
        );
    } else {
        tracing::debug!(%peer, limit, refused_so_far = n, "closing a new connection over `max_connections`");
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
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
            Ok((stream, _)) => serve(ConnectionId(ids.fetch_add(1, Ordering::Relaxed)), stream),
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays up.
                tracing::warn!(addr = ?listener.local_addr().ok(), error = %e, "accept failed; retrying in 10 ms");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_stop_at_the_limit_and_come_back_when_dropped() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = ConnectionPermit::try_take(&open, 2).unwrap();
        let _b = ConnectionPermit::try_take(&open, 2).unwrap();
        assert!(ConnectionPermit::try_take(&open, 2).is_none());
        drop(a);
        assert!(ConnectionPermit::try_take(&open, 2).is_some());
        assert_eq!(
            open.load(Ordering::Acquire),
            1,
            "the permit taken above was dropped at once"
        );
    }

    #[test]
    fn refusals_are_logged_at_powers_of_ten() {
        let logged: Vec<u64> = (1..=1000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(logged, [1, 10, 100, 1000]);
    }
}

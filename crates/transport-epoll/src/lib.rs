//! The epoll backend of the Spark-style RPC transport, on tokio.
//!
//! [`EpollTransport`] implements [`transport::Transport`] the way Netty's
//! EPOLL transport serves Spark's `TransportContext`: a group of server
//! event-loop threads and a group of client event-loop threads
//! (`server_threads`, `client_threads` in [`TransportConf`]), each thread a
//! single-threaded tokio runtime that owns its connections for their whole
//! life. Reads go into pooled buffers and frames are cut out of them without
//! copying; every frame queued on a connection goes out with vectored writes.
//! A loop that runs out of work polls for more (non-blocking `epoll_wait`)
//! for up to [`TransportConf::spin_before_park_us`] before its thread blocks,
//! while its recent idle gaps were that short ([`transport::SpinPolicy`];
//! `spin.rs` has how it rides on tokio's park hooks).
//! See `connection.rs` for the data path and `transport::Transport` for the
//! contract this backend keeps.
//!
//! # Example
//!
//! An echo server and one RPC over loopback:
//!
//! ```
//! use std::sync::{Arc, mpsc};
//! use bytes::Bytes;
//! use transport::{Transport, TransportClient, TransportConf, TransportHandler};
//! use transport_epoll::EpollTransport;
//!
//! struct Echo;
//! impl TransportHandler for Echo {
//!     fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
//!         client.send_response(request_id, body).unwrap();
//!     }
//!     fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
//! }
//!
//! let transport = EpollTransport::new(TransportConf::default()).unwrap();
//! let server = transport.bind("127.0.0.1:0".parse().unwrap(), Arc::new(Echo)).unwrap();
//! let client = transport.connect(server.local_addr(), Arc::new(Echo)).unwrap();
//! let (tx, rx) = mpsc::channel();
//! client.send_rpc(Bytes::from_static(b"ping"), move |r| tx.send(r).unwrap()).unwrap();
//! assert_eq!(&rx.recv().unwrap().unwrap()[..], b"ping");
//! transport.shutdown();
//! ```

mod connection;
mod event_loop;
mod server;
mod socket;
mod spin;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use transport::{
    BufferPool, ConnectionId, ConnectionRegistry, IoMode, Transport, TransportClient, TransportConf,
    TransportError, TransportHandler, TransportServer,
};

use crate::connection::ConnectionParams;
use crate::event_loop::EventLoopGroup;
use crate::server::{EpollServer, ServerHandle};
use transport::ConnectionPermit;

/// How long `connect` waits past the connect timeout for the event loop to answer.
const CONNECT_GRACE: Duration = Duration::from_secs(5);

/// The epoll (tokio) transport. Dropping it shuts it down.
pub struct EpollTransport {
    conf: TransportConf,
    /// `conf`, shared with every connection.
    shared_conf: Arc<TransportConf>,
    pool: BufferPool,
    server_group: Mutex<Option<Arc<EventLoopGroup>>>,
    client_group: Mutex<Option<Arc<EventLoopGroup>>>,
    connections: ConnectionRegistry,
    servers: Mutex<Vec<Arc<EpollServer>>>,
    ids: Arc<AtomicU64>,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for EpollTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollTransport")
            .field("conf", &self.conf)
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl EpollTransport {
    /// A transport with its own buffer pool bounded at `conf.pool_max_bytes`.
    /// Event-loop threads start on first use: server threads at the first
    /// `bind`, client threads at the first `connect`. `conf.io_mode` is not
    /// consulted: choosing this backend is the caller's decision.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] when `conf` does not validate.
    pub fn new(conf: TransportConf) -> Result<Self, TransportError> {
        let pool = BufferPool::new(conf.pool_max_bytes);
        Self::with_pool(conf, pool)
    }

    /// A transport reading into buffers from `pool` (shared, for example, with the layer above).
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] when `conf` does not validate.
    pub fn with_pool(conf: TransportConf, pool: BufferPool) -> Result<Self, TransportError> {
        conf.validate()?;
        Ok(Self {
            shared_conf: Arc::new(conf.clone()),
            conf,
            pool,
            server_group: Mutex::new(None),
            client_group: Mutex::new(None),
            connections: ConnectionRegistry::new(),
            servers: Mutex::new(Vec::new()),
            ids: Arc::new(AtomicU64::new(0)),
            shut_down: AtomicBool::new(false),
        })
    }

    /// Connections open now, accepted and outgoing.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    fn group(&self, server: bool, addr: SocketAddr) -> Result<Arc<EventLoopGroup>, TransportError> {
        let (slot, name) = if server {
            (&self.server_group, "epoll-server")
        } else {
            (&self.client_group, "epoll-client")
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if self.shut_down.load(Ordering::Acquire) {
            return Err(TransportError::Shutdown);
        }
        if let Some(g) = slot.as_ref() {
            return Ok(g.clone());
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if server {
            self.conf.resolved_server_threads(cores)
        } else {
            self.conf.resolved_client_threads(cores)
        };
        let group = Arc::new(
            EventLoopGroup::new(name, threads, self.conf.spin_before_park())
                .map_err(|e| TransportError::io("start event loops for", addr, &e))?,
        );
        *slot = Some(group.clone());
        Ok(group)
    }

    fn params(
        &self,
        id: ConnectionId,
        handler: Arc<dyn TransportHandler>,
        extra: Option<ConnectionRegistry>,
    ) -> ConnectionParams {
        let mut registries = vec![self.connections.clone()];
        registries.extend(extra);
        ConnectionParams {
            id,
            conf: self.shared_conf.clone(),
            pool: self.pool.clone(),
            handler,
            registries,
            permit: None,
        }
    }
}

impl Transport for EpollTransport {
    fn io_mode(&self) -> IoMode {
        IoMode::Epoll
    }

    fn conf(&self) -> &TransportConf {
        &self.conf
    }

    fn pool(&self) -> &BufferPool {
        &self.pool
    }

    fn bind(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn TransportHandler>,
    ) -> Result<Box<dyn TransportServer>, TransportError> {
        let handler = transport::auth::server_handler(&self.conf, handler);
        let group = self.group(true, addr)?;
        let std_listener = socket::listen(addr).map_err(|e| TransportError::io("bind", addr, &e))?;
        let local_addr = std_listener
            .local_addr()
            .map_err(|e| TransportError::io("bind", addr, &e))?;
        let server = EpollServer::new(local_addr, group.clone());
        let accept_handle = group.next().clone();
        let listener = {
            let _in_runtime = accept_handle.enter();
            TcpListener::from_std(std_listener).map_err(|e| TransportError::io("bind", addr, &e))?
        };
        let conf = self.conf.clone();
        let template = self.params(ConnectionId(0), handler, Some(server.connections.clone()));
        let (open, limit) = (Arc::new(AtomicUsize::new(0)), self.conf.connection_limit());
        let refused = AtomicU64::new(0);
        let serve = move |id: ConnectionId, stream: TcpStream| {
            let Some(permit) = ConnectionPermit::try_take(&open, limit) else {
                // Dropping the stream closes it at once.
                return transport::log_refused_connection(&refused, stream.peer_addr().ok(), limit);
            };
            let std_stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "dropping an accepted connection"),
            };
            let params = ConnectionParams {
                id,
                conf: template.conf.clone(),
                pool: template.pool.clone(),
                handler: template.handler.clone(),
                registries: template.registries.clone(),
                permit: Some(permit),
            };
            let conf = conf.clone();
            group.next().spawn(async move {
                let started = TcpStream::from_std(std_stream).and_then(|s| {
                    socket::configure(&s, &conf)?;
                    connection::start(s, params)
                });
                if let Err(e) = started {
                    tracing::warn!(error = %e, "could not start an accepted connection");
                }
            });
        };
        let (closed_tx, closed_rx) = mpsc::sync_channel(1);
        *server.listener_closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(closed_rx);
        let signal = server::ClosedSignal(closed_tx);
        let task = accept_handle.spawn(server::accept_loop(listener, self.ids.clone(), serve, signal));
        *server.accept.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(server.clone());
        if self.shut_down.load(Ordering::Acquire) {
            server.close();
            return Err(TransportError::Shutdown);
        }
        Ok(Box::new(ServerHandle(server)))
    }

    fn connect(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn TransportHandler>,
    ) -> Result<TransportClient, TransportError> {
        transport::auth::connect(&self.conf, handler, |h| self.connect_raw(addr, h))
    }

    fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        for server in self.servers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            server.close();
        }
        // What is queued goes out first (bounded by `CLOSE_GRACE`).
        let grace = if self.on_loop_thread() {
            Duration::ZERO
        } else {
            transport::CLOSE_GRACE
        };
        self.connections.close_all_after_flush(grace);
        for slot in [&self.server_group, &self.client_group] {
            if let Some(group) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                group.shutdown();
            }
        }
    }
}

impl Drop for EpollTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl EpollTransport {
    /// Whether the calling thread is one of this transport's event loops.
    fn on_loop_thread(&self) -> bool {
        [&self.server_group, &self.client_group].iter().any(|slot| {
            slot.lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|g| g.is_loop_thread())
        })
    }

    /// `Transport::connect` without the authentication handshake: the TCP
    /// connection and its registration on a loop.
    fn connect_raw(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn TransportHandler>,
    ) -> Result<TransportClient, TransportError> {
        let group = self.group(false, addr)?;
        if group.is_loop_thread()
            || self
                .server_group
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|g| g.is_loop_thread())
        {
            return Err(TransportError::BlockingCallOnEventLoop {
                call: "Transport::connect",
            });
        }
        let timeout = self.conf.connect_timeout();
        let id = ConnectionId(self.ids.fetch_add(1, Ordering::Relaxed));
        let params = self.params(id, handler, None);
        let conf = self.conf.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        group.next().spawn(async move {
            let result = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Err(_) => Err(TransportError::ConnectTimeout { addr, timeout }),
                Ok(Err(e)) => Err(TransportError::io("connect to", addr, &e)),
                Ok(Ok(stream)) => socket::configure(&stream, &conf)
                    .and_then(|()| connection::start(stream, params))
                    .map_err(|e| TransportError::io("connect to", addr, &e)),
            };
            let _ = tx.send(result);
        });
        match rx.recv_timeout(timeout + CONNECT_GRACE) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(TransportError::ConnectTimeout { addr, timeout }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(TransportError::Shutdown),
        }
    }
}

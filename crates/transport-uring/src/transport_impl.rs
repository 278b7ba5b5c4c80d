//! [`UringTransport`]: the lazily started loop groups, the registries of live
//! connections and servers, `bind`, `connect` and `shutdown`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use transport::{
    BufferPool, ConnectionId, ConnectionRegistry, IoMode, Transport, TransportClient, TransportConf,
    TransportError, TransportHandler, TransportServer,
};

use crate::conf::UringConf;
use crate::connection::ConnectionParams;
use crate::group::EventLoopGroup;
use crate::probe::probe;
use crate::ring_loop::{Adopt, Command, LoopConf};
use crate::server::{Listen, ServerHandle, ServerShared};
use crate::socket;

/// How long `connect` waits for the loop to take a connected socket.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The io_uring transport. Dropping it shuts it down. See the [crate docs](crate).
pub struct UringTransport {
    loop_conf: Arc<LoopConf>,
    server_group: Mutex<Option<Arc<EventLoopGroup>>>,
    client_group: Mutex<Option<Arc<EventLoopGroup>>>,
    connections: ConnectionRegistry,
    servers: Mutex<Vec<Arc<ServerShared>>>,
    ids: Arc<AtomicU64>,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for UringTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringTransport")
            .field("conf", &self.loop_conf.transport)
            .field("uring", &self.loop_conf.uring)
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl UringTransport {
    /// A transport with its own buffer pool bounded at `conf.pool_max_bytes`
    /// and the default [`UringConf`] with its environment overrides
    /// ([`UringConf::with_env`]). Event-loop threads (and their rings)
    /// start on first use: server threads at the first `bind`, client threads
    /// at the first `connect`. `conf.io_mode` is not consulted.
    ///
    /// # Errors
    /// [`TransportError::IoModeUnavailable`] when [`probe`](crate::probe) fails
    /// (its reason says why and what to do); [`TransportError::InvalidConfig`]
    /// when `conf` does not validate.
    pub fn new(conf: TransportConf) -> Result<Self, TransportError> {
        let pool = BufferPool::new(conf.pool_max_bytes);
        Self::with_pool(conf, pool)
    }

    /// A transport reading into buffers from `pool` (shared, for example, with the layer above).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_pool(conf: TransportConf, pool: BufferPool) -> Result<Self, TransportError> {
        Self::with_uring_conf(conf, pool, UringConf::default().with_env())
    }

    /// A transport with io_uring tuning `uring` (buffer ring size, zero-copy threshold).
    ///
    /// # Errors
    /// As [`new`](Self::new); [`TransportError::IoModeUnavailable`] also when
    /// `uring.buf_ring_entries` is not a power of two.
    pub fn with_uring_conf(
        conf: TransportConf,
        pool: BufferPool,
        uring: UringConf,
    ) -> Result<Self, TransportError> {
        conf.validate()?;
        probe().map_err(|e| TransportError::IoModeUnavailable {
            mode: IoMode::IoUring,
            reason: e.to_string(),
        })?;
        if !uring.buf_ring_entries.is_power_of_two() || uring.buf_ring_entries > 32768 {
            return Err(TransportError::IoModeUnavailable {
                mode: IoMode::IoUring,
                reason: format!(
                    "UringConf::buf_ring_entries must be a power of two up to 32768, not {}",
                    uring.buf_ring_entries
                ),
            });
        }
        Ok(Self {
            loop_conf: Arc::new(LoopConf {
                transport: conf,
                uring,
                pool,
            }),
            server_group: Mutex::new(None),
            client_group: Mutex::new(None),
            connections: ConnectionRegistry::new(),
            servers: Mutex::new(Vec::new()),
            ids: Arc::new(AtomicU64::new(0)),
            shut_down: AtomicBool::new(false),
        })
    }

    /// The io_uring tuning in force.
    pub fn uring_conf(&self) -> &UringConf {
        &self.loop_conf.uring
    }

    /// Connections open now, accepted and outgoing.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    fn group(&self, server: bool, addr: SocketAddr) -> Result<Arc<EventLoopGroup>, TransportError> {
        let (slot, name) = if server {
            (&self.server_group, "uring-server")
        } else {
            (&self.client_group, "uring-client")
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if self.shut_down.load(Ordering::Acquire) {
            return Err(TransportError::Shutdown);
        }
        if let Some(g) = slot.as_ref() {
            return Ok(g.clone());
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let conf = &self.loop_conf.transport;
        let threads = if server {
            conf.resolved_server_threads(cores)
        } else {
            conf.resolved_client_threads(cores)
        };
        let group = Arc::new(
            EventLoopGroup::new(name, threads, &self.loop_conf)
                .map_err(|e| TransportError::io("start event loops for", addr, &e))?,
        );
        *slot = Some(group.clone());
        Ok(group)
    }

    fn on_loop_thread(&self) -> bool {
        [&self.server_group, &self.client_group].iter().any(|slot| {
            slot.lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|g| g.is_loop_thread())
        })
    }
}

impl Transport for UringTransport {
    fn io_mode(&self) -> IoMode {
        IoMode::IoUring
    }

    fn conf(&self) -> &TransportConf {
        &self.loop_conf.transport
    }

    fn pool(&self) -> &BufferPool {
        &self.loop_conf.pool
    }

    fn bind(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn TransportHandler>,
    ) -> Result<Box<dyn TransportServer>, TransportError> {
        let handler = transport::auth::server_handler(&self.loop_conf.transport, handler);
        let group = self.group(true, addr)?;
        let listener = Arc::new(socket::listen(addr).map_err(|e| TransportError::io("bind", addr, &e))?);
        let local_addr = listener
            .local_addr()
            .map_err(|e| TransportError::io("bind", addr, &e))?;
        let home = group.next().clone();
        let server = ServerShared::new(local_addr, listener.clone(), Arc::downgrade(&home));
        home.send(Command::Listen(Box::new(Listen {
            listener,
            server: server.clone(),
            handler,
            registries: vec![self.connections.clone(), server.connections.clone()],
            ids: self.ids.clone(),
            pool: self.loop_conf.pool.clone(),
            conf: self.loop_conf.transport.clone(),
        })));
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
        transport::auth::connect(&self.loop_conf.transport, handler, |h| self.connect_raw(addr, h))
    }

    fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        for server in self.servers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            server.close();
        }
        // What is queued goes out first (bounded by `CLOSE_GRACE`), but not
        // waited for on a loop thread, which those writes need.
        let grace = if self.on_loop_thread() {
            std::time::Duration::ZERO
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

impl Drop for UringTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl UringTransport {
    /// `Transport::connect` without the authentication handshake: the TCP
    /// connection and its registration on a loop.
    fn connect_raw(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn TransportHandler>,
    ) -> Result<TransportClient, TransportError> {
        if self.on_loop_thread() {
            return Err(TransportError::BlockingCallOnEventLoop {
                call: "Transport::connect",
            });
        }
        let group = self.group(false, addr)?;
        let conf = &self.loop_conf.transport;
        let timeout = conf.connect_timeout();
        let stream = socket::connect(addr, timeout).map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                TransportError::ConnectTimeout { addr, timeout }
            }
            _ => TransportError::io("connect to", addr, &e),
        })?;
        socket::configure(&stream, conf).map_err(|e| TransportError::io("connect to", addr, &e))?;
        let (tx, rx) = mpsc::sync_channel(1);
        group.next().send(Command::Adopt(Box::new(Adopt {
            stream,
            params: ConnectionParams {
                id: ConnectionId(self.ids.fetch_add(1, Ordering::Relaxed)),
                pool: self.loop_conf.pool.clone(),
                handler,
                registries: vec![self.connections.clone()],
                permit: None,
            },
            reply: Some(tx),
        })));
        match rx.recv_timeout(ADOPT_TIMEOUT) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(TransportError::ConnectTimeout { addr, timeout }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(TransportError::Shutdown),
        }
    }
}

//! Closed-loop load over the [`Transport`] trait: an echo server and
//! `conns × inflight` request chains, each sending its next request from the
//! previous one's response callback, on the connection's event-loop thread.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use transport::{Transport, TransportClient, TransportConf, TransportError, TransportHandler};

use crate::drive::{self, ConnChain};
use crate::error::BenchError;
use crate::host::ThreadPins;
use crate::measure::{Control, Measurement, OpenSlots, Phase, SharedStats};
use crate::remote_load::Expected;
use crate::run::RunSpec;

/// Answers every RpcRequest with the same response body (cloned, never reallocated).
struct EchoHandler {
    response: Bytes,
}

impl TransportHandler for EchoHandler {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, _body: Bytes) {
        if let Err(error) = client.send_response(request_id, self.response.clone()) {
            tracing::debug!(%error, request_id, "server could not answer");
        }
    }

    fn receive_one_way(&self, _client: &TransportClient, _body: Bytes) {}
}

/// The client side expects no requests from the server; it refuses any that come.
struct ClientHandler;

impl TransportHandler for ClientHandler {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, _body: Bytes) {
        let _ = client.send_failure(request_id, "rpc-bench clients serve no requests");
    }

    fn receive_one_way(&self, _client: &TransportClient, _body: Bytes) {}
}

/// One connection's load: its request chains share it.
struct ConnLoad {
    client: TransportClient,
    payload: Bytes,
    control: Arc<Control>,
    stats: SharedStats,
    /// Chains still running; 0 once the connection has drained.
    live_chains: AtomicUsize,
    /// What every response must be (`load --verify`); a mismatch counts as an error.
    expected: Option<Arc<Expected>>,
    /// Open loop (`--rate`): the connection's outstanding requests and the ones waiting;
    /// `None` for a closed loop.
    open: Option<OpenSlots>,
}

impl ConnLoad {
    /// A chain ended (closed loop), or a request's slot came free (open loop).
    fn end_chain(&self) {
        match &self.open {
            Some(slots) => slots.release(),
            None => {
                self.live_chains.fetch_sub(1, Ordering::Release);
            }
        }
    }

    /// Whether every request of this connection has finished.
    fn drained(&self) -> bool {
        match &self.open {
            Some(slots) => slots.outstanding() == 0,
            None => self.live_chains.load(Ordering::Acquire) == 0,
        }
    }
}

impl ConnChain for ConnLoad {
    fn send_next(self: Arc<Self>) {
        send_next(self);
    }

    fn send_at(self: Arc<Self>, due: Instant) {
        send_at(self, due);
    }

    fn open_slots(&self) -> Option<&OpenSlots> {
        self.open.as_ref()
    }

    fn drained(&self) -> bool {
        ConnLoad::drained(self)
    }

    fn stats(&self) -> &SharedStats {
        &self.stats
    }
}

/// Sends the next request of a chain; its callback sends the one after.
fn send_next(load: Arc<ConnLoad>) {
    send_at(load, Instant::now());
}

/// Sends a request whose latency counts from `start`: now (closed loop), or when it was due
/// on the timetable (open loop).
fn send_at(load: Arc<ConnLoad>, start: Instant) {
    let this = Arc::clone(&load);
    let callback = move |result| on_response(load, start, result);
    if let Err(error) = this.client.send_rpc(this.payload.clone(), callback) {
        tracing::debug!(%error, "send_rpc failed; the chain ends");
        this.stats.lock().fail(this.control.phase(), 1);
        this.end_chain();
    }
}

fn on_response(load: Arc<ConnLoad>, sent: Instant, result: Result<Bytes, TransportError>) {
    let phase = load.control.phase();
    let keep_going = {
        let mut stats = load.stats.lock();
        match result {
            Ok(body) if load.expected.as_ref().is_some_and(|e| !e.matches(&body)) => {
                stats.fail(phase, 1);
                true
            }
            Ok(_) => {
                stats.complete(phase, sent);
                true
            }
            Err(error) => {
                tracing::debug!(%error, "request failed");
                stats.fail(phase, 1);
                load.client.is_active()
            }
        }
    };
    if let Some(slots) = &load.open {
        if let Some(due) = slots.finish(keep_going && phase < Phase::Drain) {
            send_at(load, due);
        }
    } else if keep_going && phase < Phase::Drain {
        send_next(load);
    } else {
        load.end_chain();
    }
}

/// Runs `spec` on the backend of `spec.system`'s IO mode (chosen by
/// [`rpc::create_transport`], as an RpcEnv would) and shuts it down.
///
/// # Errors
/// [`BenchError::Transport`] when the backend cannot be built (e.g. `io_uring`),
/// cannot bind, or a connection cannot be made.
pub fn run(conf: TransportConf, spec: &RunSpec) -> Result<Measurement, BenchError> {
    let pins = ThreadPins::start();
    let transport = rpc::create_transport(&conf)?;
    let result = drive(transport.as_ref(), spec, pins);
    transport.shutdown();
    result
}

fn drive(transport: &dyn Transport, spec: &RunSpec, mut pins: ThreadPins) -> Result<Measurement, BenchError> {
    let w = &spec.workload;
    let echo = Arc::new(EchoHandler {
        response: Bytes::from(vec![0u8; w.response]),
    });
    let server = transport.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), echo)?;
    // `bind` started the server's event loops: they are the threads new since `pins` began.
    pins.pin_new(spec.server_cpus.as_ref())
        .map_err(|e| BenchError::io("pin the server's threads to --server-cpus", e))?;
    let payload = Bytes::from(vec![0u8; w.payload]);
    let result = load(transport, server.local_addr(), spec, payload, None);
    server.close();
    result
}

/// The client half: `spec`'s connections to the echo server at `addr`, each
/// running `inflight` request chains of `payload` (or, with a rate, an open loop of at most
/// `inflight` outstanding), checked against `expected` if given. Threads started by the
/// connects (the client's event loops) are pinned to `spec.client_cpus`.
///
/// # Errors
/// [`BenchError::Transport`] when a connection cannot be made, [`BenchError::Io`] when a
/// thread cannot be pinned or the pacer cannot start.
pub fn load(
    transport: &dyn Transport,
    addr: SocketAddr,
    spec: &RunSpec,
    payload: Bytes,
    expected: Option<Arc<Expected>>,
) -> Result<Measurement, BenchError> {
    let w = &spec.workload;
    let mut pins = ThreadPins::start();
    let control = Control::new();
    let handler: Arc<dyn TransportHandler> = Arc::new(ClientHandler);
    let loads = (0..w.conns)
        .map(|_| {
            Ok(Arc::new(ConnLoad {
                client: transport.connect(addr, Arc::clone(&handler))?,
                payload: payload.clone(),
                control: Arc::clone(&control),
                stats: SharedStats::default(),
                live_chains: AtomicUsize::new(if w.rate.is_some() { 0 } else { w.inflight }),
                expected: expected.clone(),
                open: w.rate.map(|_| OpenSlots::new(w.inflight)),
            }))
        })
        .collect::<Result<Vec<_>, TransportError>>()?;
    pins.pin_new(spec.client_cpus.as_ref())
        .map_err(|e| BenchError::io("pin the client's threads to --client-cpus", e))?;
    let (elapsed, stats) = drive::drive(&loads, &control, spec, "requests")?;
    Ok(Measurement::merge(transport.io_mode().as_str(), elapsed, &stats)
        .with_allocs(control.allocs_measured()))
}

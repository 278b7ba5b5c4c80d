//! Closed-loop load over the [`Transport`] trait: an echo server and
//! `conns × inflight` request chains, each sending its next request from the
//! previous one's response callback, on the connection's event-loop thread.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use transport::{
    RequestIdMap, ResponseHandler, RpcResponseListener, Transport, TransportClient, TransportConf,
    TransportError, TransportHandler,
};

use crate::drive::{self, ConnChain, LoadState, Next};
use crate::error::BenchError;
use crate::host::ThreadPins;
use crate::measure::{Control, Measurement};
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

/// One connection's load: its request chains share it. It is itself the
/// listener of every request it sends ([`RpcResponseListener`]), with each
/// request's start time kept by request id, so that a request costs the
/// client no heap allocation.
struct ConnLoad {
    client: TransportClient,
    payload: Bytes,
    state: LoadState,
    /// When each outstanding request's latency started counting, by request id
    /// (capacity reserved up front: no allocation per request).
    started: Mutex<RequestIdMap<Instant>>,
}

impl ConnChain for ConnLoad {
    /// Sends a request whose latency counts from `start`; its answer sends the next.
    fn send_at(self: Arc<Self>, start: Instant) {
        // Held until the id is recorded: the answer may arrive on another thread first.
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        let listener: Arc<dyn RpcResponseListener> = self.clone();
        match self
            .client
            .send_rpc_with(self.payload.clone(), ResponseHandler::Listener(listener))
        {
            Ok(request_id) => {
                started.insert(request_id, start);
            }
            Err((error, _)) => {
                drop(started);
                tracing::debug!(%error, "send_rpc failed; the chain ends");
                self.state.send_failed();
            }
        }
    }

    fn state(&self) -> &LoadState {
        &self.state
    }
}

impl RpcResponseListener for ConnLoad {
    fn on_response(self: Arc<Self>, request_id: i64, result: Result<Bytes, TransportError>) {
        let sent = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request_id);
        let Some(sent) = sent else {
            tracing::warn!(request_id, "an answer to a request this load did not send");
            return;
        };
        let next = self
            .state
            .answered(sent, result.as_deref(), || self.client.is_active());
        if let Next::Send(start) = next {
            self.send_at(start);
        }
    }
}

/// Runs `spec` on the backend of `spec.system`'s IO mode (chosen by
/// [`rpc::create_transport`], as an RpcEnv would) and shuts it down.
///
/// # Errors
/// [`BenchError::Transport`] when the backend cannot be built (e.g. `io_uring`),
/// cannot bind, or a connection cannot be made.
pub fn run(conf: TransportConf, spec: &RunSpec) -> Result<Measurement, BenchError> {
    run_on(spec, || rpc::create_transport(&conf))
}

/// As [`run`], on the transport `make` builds (e.g. io_uring with zero-copy sends).
///
/// # Errors
/// As [`run`].
pub fn run_on(
    spec: &RunSpec,
    make: impl FnOnce() -> Result<Arc<dyn Transport>, TransportError>,
) -> Result<Measurement, BenchError> {
    let pins = ThreadPins::start();
    let transport = make()?;
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
                state: LoadState::new(Arc::clone(&control), w, expected.clone()),
                started: Mutex::new(RequestIdMap::with_capacity_and_hasher(
                    2 * w.inflight.max(1),
                    Default::default(),
                )),
            }))
        })
        .collect::<Result<Vec<_>, TransportError>>()?;
    pins.pin_new(spec.client_cpus.as_ref())
        .map_err(|e| BenchError::io("pin the client's threads to --client-cpus", e))?;
    let (elapsed, stats) = drive::drive(&loads, &control, spec, "requests")?;
    Ok(Measurement::merge(transport.io_mode().as_str(), elapsed, &stats)
        .with_allocs(control.allocs_measured()))
}

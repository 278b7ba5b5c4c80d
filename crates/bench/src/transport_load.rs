//! Closed-loop load over the [`Transport`] trait: an echo server and
//! `conns × inflight` request chains, each sending its next request from the
//! previous one's response callback, on the connection's event-loop thread.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use transport::{Transport, TransportClient, TransportConf, TransportError, TransportHandler};

use crate::error::BenchError;
use crate::measure::{Control, DRAIN_TIMEOUT, Measurement, Phase, SharedStats, wait_until};
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
}

impl ConnLoad {
    fn end_chain(&self) {
        self.live_chains.fetch_sub(1, Ordering::Release);
    }
}

/// Sends the next request of a chain; its callback sends the one after.
fn send_next(load: Arc<ConnLoad>) {
    let this = Arc::clone(&load);
    let sent = Instant::now();
    let callback = move |result| on_response(load, sent, result);
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
    if keep_going && phase < Phase::Drain {
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
    let transport = rpc::create_transport(&conf)?;
    let result = drive(transport.as_ref(), spec);
    transport.shutdown();
    result
}

fn drive(transport: &dyn Transport, spec: &RunSpec) -> Result<Measurement, BenchError> {
    let w = &spec.workload;
    let echo = Arc::new(EchoHandler {
        response: Bytes::from(vec![0u8; w.response]),
    });
    let server = transport.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), echo)?;
    let addr = server.local_addr();
    let control = Control::new();
    let payload = Bytes::from(vec![0u8; w.payload]);
    let handler: Arc<dyn TransportHandler> = Arc::new(ClientHandler);
    let loads = (0..w.conns)
        .map(|_| {
            Ok(Arc::new(ConnLoad {
                client: transport.connect(addr, Arc::clone(&handler))?,
                payload: payload.clone(),
                control: Arc::clone(&control),
                stats: SharedStats::default(),
                live_chains: AtomicUsize::new(w.inflight),
            }))
        })
        .collect::<Result<Vec<_>, TransportError>>()?;
    for load in &loads {
        for _ in 0..w.inflight {
            send_next(Arc::clone(load));
        }
    }
    let elapsed = control.run_phases(spec.warmup_s, spec.duration_s);
    let drained = wait_until(DRAIN_TIMEOUT, || {
        loads.iter().all(|l| l.live_chains.load(Ordering::Acquire) == 0)
    });
    if !drained {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still in flight after the drain timeout");
    }
    control.set(Phase::Closed);
    server.close();
    let stats: Vec<_> = loads
        .iter()
        .map(|l| std::mem::take(&mut *l.stats.lock()))
        .collect();
    Ok(Measurement::merge(transport.io_mode().as_str(), elapsed, &stats))
}

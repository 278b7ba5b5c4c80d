//! Closed-loop load through the RpcEnv (`--level rpc`): a server RpcEnv with
//! an echo endpoint, and one client-mode RpcEnv per connection (an RpcEnv keeps
//! one connection per remote address, as Spark's Outbox does), each running
//! `inflight` ask chains. Each chain asks its next question from the previous
//! answer's [`on_complete`](rpc::AskFuture::on_complete) callback, on the
//! client's transport event-loop thread: no executor hop, as the transport
//! level's `send_rpc` callbacks.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcError};

use crate::error::BenchError;
use crate::measure::{Control, DRAIN_TIMEOUT, Measurement, Phase, SharedStats, wait_until};
use crate::run::RunSpec;

/// The echo endpoint's name.
pub const ENDPOINT: &str = "rpc-bench-echo";

/// MessageLoop threads of each client-mode RpcEnv: it hosts no endpoint, replies complete on its event loop.
pub const CLIENT_DISPATCHER_THREADS: usize = 1;

/// Answers every ask with the same prebuilt response (cloned per reply). It
/// reads the request in place (its length, from the archived vec) and keeps no
/// state, so it is set up as a concurrent endpoint.
#[derive(Clone)]
struct Echo {
    response: Vec<u8>,
}

impl RpcEndpoint for Echo {
    type Message = Vec<u8>;
    type Reply = Vec<u8>;

    fn receive_and_reply(&mut self, msg: Msg<'_, Vec<u8>>, ctx: RpcCallContext<Vec<u8>>) {
        let len = match msg {
            Msg::Local(v) => v.len(),
            Msg::Remote(archived) => archived.len(),
        };
        std::hint::black_box(len);
        ctx.reply(self.response.clone());
    }
}

/// One client RpcEnv's load: its ask chains share its reference to the echo endpoint.
struct ConnLoad {
    echo: RpcEndpointRef<Vec<u8>, Vec<u8>>,
    payload: Vec<u8>,
    control: Arc<Control>,
    stats: SharedStats,
    /// Chains still running; 0 once this client has drained.
    live_chains: AtomicUsize,
}

/// Asks the next question of a chain; its answer's callback asks the one after.
fn ask_next(load: Arc<ConnLoad>) {
    let sent = Instant::now();
    let answer = load.echo.ask(load.payload.clone());
    answer.on_complete(move |result| on_answer(load, sent, result));
}

fn on_answer(load: Arc<ConnLoad>, sent: Instant, result: Result<Vec<u8>, RpcError>) {
    let phase = load.control.phase();
    let ok = {
        let mut stats = load.stats.lock();
        match result {
            Ok(_) => {
                stats.complete(phase, sent);
                true
            }
            Err(error) => {
                // The chain ends: a failed ask may be completed under the Outbox's
                // lock, and asking again from there would take it twice.
                tracing::debug!(%error, "ask failed; the chain ends");
                stats.fail(phase, 1);
                false
            }
        }
    };
    if ok && phase < Phase::Drain {
        ask_next(load);
    } else {
        load.live_chains.fetch_sub(1, Ordering::Release);
    }
}

/// Runs `spec` through RpcEnvs on the backend of `spec.system`'s IO mode, and shuts them down.
///
/// # Errors
/// [`BenchError::Rpc`] when an RpcEnv cannot start (e.g. `io_uring`
/// unavailable) or bind, or a client cannot reach the echo endpoint.
pub fn run(spec: &RunSpec) -> Result<Measurement, BenchError> {
    let conf = spec.transport_conf();
    let server = RpcEnv::create(RpcEnvConfig {
        transport: conf.clone(),
        ..RpcEnvConfig::server("rpc-bench-server", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    })?;
    let mut clients = Vec::with_capacity(spec.workload.conns);
    let result = drive(&server, &mut clients, spec);
    for c in &clients {
        c.shutdown();
    }
    server.shutdown();
    result
}

fn drive(server: &RpcEnv, clients: &mut Vec<RpcEnv>, spec: &RunSpec) -> Result<Measurement, BenchError> {
    let w = &spec.workload;
    server.setup_concurrent_endpoint(
        ENDPOINT,
        Echo {
            response: vec![0u8; w.response],
        },
    )?;
    let address = server
        .address()
        .expect("a server-mode RpcEnv has an address")
        .clone();
    let control = Control::new();
    let payload = vec![0u8; w.payload];
    let mut loads = Vec::with_capacity(w.conns);
    for i in 0..w.conns {
        let client = RpcEnv::create(RpcEnvConfig {
            dispatcher_threads: CLIENT_DISPATCHER_THREADS,
            transport: server.config().transport.clone(),
            ..RpcEnvConfig::client(format!("rpc-bench-client-{i}"))
        })?;
        let echo = client.setup_endpoint_ref::<Vec<u8>, Vec<u8>>(&address, ENDPOINT);
        clients.push(client);
        loads.push(Arc::new(ConnLoad {
            echo: echo?,
            payload: payload.clone(),
            control: Arc::clone(&control),
            stats: SharedStats::default(),
            live_chains: AtomicUsize::new(w.inflight),
        }));
    }
    for load in &loads {
        for _ in 0..w.inflight {
            ask_next(Arc::clone(load));
        }
    }
    let elapsed = control.run_phases(spec.warmup_s, spec.duration_s);
    let drained = wait_until(DRAIN_TIMEOUT, || {
        loads.iter().all(|l| l.live_chains.load(Ordering::Acquire) == 0)
    });
    if !drained {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "asks still in flight after the drain timeout");
    }
    control.set(Phase::Closed);
    let stats: Vec<_> = loads
        .iter()
        .map(|l| std::mem::take(&mut *l.stats.lock()))
        .collect();
    Ok(Measurement::merge(server.io_mode().as_str(), elapsed, &stats))
}

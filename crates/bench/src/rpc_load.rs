//! Closed-loop load through the RpcEnv (`--level rpc`): a server RpcEnv with
//! an echo endpoint, and one client-mode RpcEnv per connection (an RpcEnv keeps
//! one connection per remote address, as Spark's Outbox does), each running
//! `inflight` ask chains. Each chain asks its next question from the previous
//! answer's [`ask_with`](rpc::RpcEndpointRef::ask_with) callback, on the
//! client's transport event-loop thread: no executor hop, as at the transport
//! level. Requests and replies are [`Bytes`] (archived as a byte vector, as a
//! `Vec<u8>` is): the client reads each reply in place in its receive buffer, and
//! the echo clones its prebuilt response by reference count, and `ask_with`
//! recycles its state per thread, so an ask allocates nothing once warm. With a rate (`--rate`), an open loop instead: the
//! [`Pacer`](crate::measure::Pacer) thread asks on the timetable, at most `inflight` outstanding per client
//! (see [`measure`](crate::measure)).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use rpc::{Msg, RpcAddress, RpcCallContext, RpcEndpoint, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcError};
use transport::TransportConf;

use crate::drive::{self, ConnChain, LoadState, Next};
use crate::error::BenchError;
use crate::host::ThreadPins;
use crate::measure::{Control, Measurement};
use crate::remote_load::Expected;
use crate::run::{Level, RunSpec};

/// The echo endpoint's name.
pub const ENDPOINT: &str = "rpc-bench-echo";

/// MessageLoop threads of each client-mode RpcEnv: it hosts no endpoint, replies complete on its event loop.
pub const CLIENT_DISPATCHER_THREADS: usize = 1;

/// Answers every ask with the same prebuilt response (cloned per reply), or with
/// the request's own bytes when it has none (`serve --level rpc` without `--response`).
/// It reads the request in place (its length, from the archived vec) and keeps no
/// state, so it is set up as a concurrent endpoint.
#[derive(Clone)]
struct Echo {
    response: Option<Bytes>,
}

impl RpcEndpoint for Echo {
    type Message = Bytes;
    type Reply = Bytes;

    fn receive_and_reply(&mut self, msg: Msg<'_, Bytes>, ctx: RpcCallContext<Bytes>) {
        let reply = match (&self.response, msg) {
            (Some(fixed), msg) => {
                let len = match msg {
                    Msg::Local(v) => v.len(),
                    Msg::Remote(archived) => archived.len(),
                };
                std::hint::black_box(len);
                fixed.clone()
            }
            (None, Msg::Local(v)) => v,
            (None, Msg::Remote(archived)) => Bytes::copy_from_slice(archived.as_slice()),
        };
        ctx.reply(reply);
    }
}

/// Sets up the benchmark's echo endpoint ([`ENDPOINT`]) on `server`: it answers every ask
/// with `response`, or with the request's own bytes when `response` is `None`. At
/// [`Level::RpcLoop`] it is a concurrent endpoint on the MessageLoop; otherwise an
/// inline one, run by the event-loop thread of the connection each ask arrives on.
///
/// # Errors
/// [`RpcError`] when the endpoint cannot be registered (e.g. the name is taken).
pub fn setup_echo(server: &RpcEnv, level: Level, response: Option<Bytes>) -> Result<(), RpcError> {
    let echo = Echo { response };
    if level == Level::RpcLoop {
        server.setup_concurrent_endpoint(ENDPOINT, echo)?;
    } else {
        server.setup_inline_endpoint(ENDPOINT, echo)?;
    }
    Ok(())
}

/// One client RpcEnv's load: its ask chains share its reference to the echo endpoint.
struct ConnLoad {
    echo: RpcEndpointRef<Bytes, Bytes>,
    payload: Bytes,
    state: LoadState,
}

impl ConnChain for ConnLoad {
    /// Asks a question whose latency counts from `start`; its answer's callback asks the next.
    fn send_at(self: Arc<Self>, start: Instant) {
        let this = Arc::clone(&self);
        self.echo.ask_with(self.payload.clone(), move |answer| {
            on_answer(&this, start, answer)
        });
    }

    fn state(&self) -> &LoadState {
        &self.state
    }
}

fn on_answer(load: &Arc<ConnLoad>, sent: Instant, answer: Result<Msg<'_, Bytes>, RpcError>) {
    // A failed ask ends its chain: it may be completed under the Outbox's lock,
    // and asking again from there would take that lock twice.
    let body = answer.as_ref().map(|reply| match reply {
        Msg::Local(bytes) => &bytes[..],
        Msg::Remote(archived) => archived.as_slice(),
    });
    let next = load.state.answered(sent, body, || false);
    if let Next::Send(start) = next {
        Arc::clone(load).send_at(start);
    }
}

/// Runs `spec` through RpcEnvs on the backend of `spec.system`'s IO mode, and shuts them down.
///
/// # Errors
/// [`BenchError::Rpc`] when an RpcEnv cannot start (e.g. `io_uring`
/// unavailable) or bind, or a client cannot reach the echo endpoint.
pub fn run(spec: &RunSpec) -> Result<Measurement, BenchError> {
    let conf = spec.transport_conf()?;
    let mut pins = ThreadPins::start();
    let server = RpcEnv::create(RpcEnvConfig {
        transport: conf.clone(),
        ..RpcEnvConfig::server("rpc-bench-server", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    })?;
    let mut clients = Vec::with_capacity(spec.workload.conns);
    // The server RpcEnv's threads (event loops, dispatcher threads, its timeout thread) are
    // the ones new since `pins` began.
    let result = pins
        .pin_new(spec.server_cpus.as_ref())
        .map_err(|e| BenchError::io("pin the server's threads to --server-cpus", e))
        .and_then(|_| drive(&server, &mut clients, spec));
    for c in &clients {
        c.shutdown();
    }
    server.shutdown();
    result
}

fn drive(server: &RpcEnv, clients: &mut Vec<RpcEnv>, spec: &RunSpec) -> Result<Measurement, BenchError> {
    let w = &spec.workload;
    setup_echo(server, spec.level, Some(Bytes::from(vec![0u8; w.response])))?;
    let address = server
        .address()
        .expect("a server-mode RpcEnv has an address")
        .clone();
    let conf = server.config().transport.clone();
    let measurement = load(
        &address,
        &conf,
        spec,
        Bytes::from(vec![0u8; w.payload]),
        None,
        clients,
    )?;
    Ok(Measurement {
        system: server.io_mode().as_str().into(),
        ..measurement
    })
}

/// The client half: `spec`'s client-mode RpcEnvs (on `conf`, pushed to `clients` for the
/// caller to shut down) asking the echo endpoint at `address`, `inflight` chains each,
/// every answer checked against `expected` if given. The measurement's system is the
/// clients' IO mode.
///
/// # Errors
/// [`BenchError::Rpc`] when a client cannot start or reach the echo endpoint.
pub fn load(
    address: &RpcAddress,
    conf: &TransportConf,
    spec: &RunSpec,
    payload: Bytes,
    expected: Option<Arc<Expected>>,
    clients: &mut Vec<RpcEnv>,
) -> Result<Measurement, BenchError> {
    let w = &spec.workload;
    let mut pins = ThreadPins::start();
    let control = Control::new();
    let mut loads = Vec::with_capacity(w.conns);
    for i in 0..w.conns {
        let client = RpcEnv::create(RpcEnvConfig {
            dispatcher_threads: CLIENT_DISPATCHER_THREADS,
            transport: conf.clone(),
            ..RpcEnvConfig::client(format!("rpc-bench-client-{i}"))
        })?;
        let echo = client.setup_endpoint_ref::<Bytes, Bytes>(address, ENDPOINT);
        clients.push(client);
        loads.push(Arc::new(ConnLoad {
            echo: echo?,
            payload: payload.clone(),
            state: LoadState::new(Arc::clone(&control), w, expected.clone()),
        }));
    }
    // The client RpcEnvs' threads are the ones new since `pins` began.
    pins.pin_new(spec.client_cpus.as_ref())
        .map_err(|e| BenchError::io("pin the client's threads to --client-cpus", e))?;
    let (elapsed, stats) = drive::drive(&loads, &control, spec, "asks")?;
    let system = clients.first().map_or(conf.io_mode, |c| c.io_mode());
    Ok(Measurement::merge(system.as_str(), elapsed, &stats).with_allocs(control.allocs_measured()))
}

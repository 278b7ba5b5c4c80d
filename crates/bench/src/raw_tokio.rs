//! The `raw-tokio` baseline: the least code that moves the same frames, as the
//! bar for what the transport layer costs.
//!
//! One current-thread tokio runtime per server thread and per client thread,
//! one task per connection. Each task reads into a `BytesMut`, cuts complete
//! frames by hand ([`raw_frames`](crate::raw_frames)) and writes everything
//! one read produced (responses on the server, next requests on the client) in
//! one `write_all`. Bodies of [`COPY_LIMIT`] bytes or more are not copied into
//! that batch but written straight from their buffer in one vectored write with
//! the batch before them. Responses come back in order, so the client keeps the
//! send times of its requests in a `VecDeque`. Nothing is allocated per request.
//!
//! With a rate (`--rate`) the client runs an open loop: the [`Pacer`] thread queues each
//! request as it falls due and wakes the connection's task, which sends what fits under
//! `inflight` outstanding and counts latency from the due times (see
//! [`measure`](crate::measure)). With `--server-cpus` / `--client-cpus` each runtime thread
//! pins itself before running its tasks.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::error::BenchError;
use crate::host::{CpuList, pin_current_thread};
use crate::measure::{Control, DRAIN_TIMEOUT, Measurement, Pacer, Phase, SharedStats, wait_until};
use crate::run::RunSpec;

mod conn;

pub use conn::COPY_LIMIT;

fn runtime() -> Result<Runtime, BenchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("start a tokio runtime", e))
}

/// Runs `tasks` on `rt` in a thread of its own, pinned to `cpus` if given, until they end
/// or `abort` fires.
fn spawn_loop<F>(
    name: String,
    rt: Runtime,
    tasks: Vec<F>,
    abort: oneshot::Receiver<()>,
    cpus: Option<CpuList>,
) -> Result<JoinHandle<()>, BenchError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
    let body = move || {
        let pinned = cpus.as_ref().map_or(Ok(()), pin_current_thread);
        let failed = pinned.is_err();
        let _ = pinned_tx.send(pinned);
        if failed {
            return;
        }
        rt.block_on(async move {
            let mut set = JoinSet::new();
            for t in tasks {
                set.spawn(t);
            }
            tokio::select! {
                _ = async { while set.join_next().await.is_some() {} } => {}
                _ = abort => {}
            }
        })
    };
    let thread = thread::Builder::new()
        .name(name)
        .spawn(body)
        .map_err(|e| BenchError::io("spawn a thread", e))?;
    match pinned_rx.recv() {
        Ok(Err(e)) => Err(BenchError::io(
            "pin a raw-tokio thread to its --server-cpus or --client-cpus",
            e,
        )),
        _ => Ok(thread),
    }
}

/// Client ends and server ends of the connections, in one group per thread.
type Sides = (Vec<Vec<std::net::TcpStream>>, Vec<Vec<std::net::TcpStream>>);

/// Opens `conns` loopback connections, TCP_NODELAY and non-blocking, and deals
/// their client ends round-robin to `client_threads` groups, server ends to `server_threads`.
fn connect_pairs(conns: usize, server_threads: usize, client_threads: usize) -> Result<Sides, BenchError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| BenchError::io("bind", e))?;
    let addr = listener.local_addr().map_err(|e| BenchError::io("bind", e))?;
    let mut clients: Vec<Vec<_>> = (0..client_threads).map(|_| Vec::new()).collect();
    let mut servers: Vec<Vec<_>> = (0..server_threads).map(|_| Vec::new()).collect();
    for j in 0..conns {
        let c = std::net::TcpStream::connect(addr).map_err(|e| BenchError::io("connect", e))?;
        let (s, _) = listener.accept().map_err(|e| BenchError::io("accept", e))?;
        for sock in [&c, &s] {
            sock.set_nodelay(true)
                .map_err(|e| BenchError::io("set TCP_NODELAY", e))?;
            sock.set_nonblocking(true)
                .map_err(|e| BenchError::io("set O_NONBLOCK", e))?;
        }
        clients[j % client_threads].push(c);
        servers[j % server_threads].push(s);
    }
    Ok((clients, servers))
}

/// Runs `spec` on the raw tokio baseline.
///
/// # Errors
/// [`BenchError::Io`] when listening, connecting, or starting a runtime or thread fails.
pub fn run(spec: &RunSpec) -> Result<Measurement, BenchError> {
    let w = spec.workload;
    let (client_side, server_side) = connect_pairs(w.conns, spec.server_threads, spec.client_threads)?;
    let control = Control::new();
    let response: Arc<[u8]> = vec![0u8; w.response].into();
    let payload: Arc<[u8]> = vec![0u8; w.payload].into();
    let stats: Vec<Arc<SharedStats>> = (0..w.conns).map(|_| Arc::default()).collect();
    let (mut aborts, mut servers, mut clients) = (Vec::new(), Vec::new(), Vec::new());
    for (i, socks) in server_side.into_iter().enumerate() {
        let tasks: Vec<_> = socks
            .into_iter()
            .map(|s| conn::server(s, Arc::clone(&response)))
            .collect();
        let (tx, rx) = oneshot::channel();
        aborts.push(tx);
        servers.push(spawn_loop(
            format!("raw-tokio-server-{i}"),
            runtime()?,
            tasks,
            rx,
            spec.server_cpus,
        )?);
    }
    let queues: Vec<Arc<conn::DueQueue>> = (0..w.conns).map(|_| Arc::default()).collect();
    for (i, socks) in client_side.into_iter().enumerate() {
        let tasks: Vec<_> = socks
            .into_iter()
            .zip(stats.iter().skip(i).step_by(spec.client_threads))
            .zip(queues.iter().skip(i).step_by(spec.client_threads))
            .map(|((s, st), q)| {
                let open = w.rate.map(|_| Arc::clone(q));
                conn::client(s, w.inflight, payload.clone(), control.clone(), st.clone(), open)
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        aborts.push(tx);
        clients.push(spawn_loop(
            format!("raw-tokio-client-{i}"),
            runtime()?,
            tasks,
            rx,
            spec.client_cpus,
        )?);
    }
    let pacer = match w.rate {
        Some(rate) => {
            let (fire_q, stop_q) = (queues.clone(), queues);
            let fire = move |i: usize, due| fire_q[i].push(due);
            let stop = move || stop_q.iter().for_each(|q| q.wake());
            let pacer = Pacer::spawn(Arc::clone(&control), rate, w.conns, spec.client_cpus, fire, stop);
            Some(pacer.map_err(|e| BenchError::io("spawn the open-loop pacer thread", e))?)
        }
        None => None,
    };
    let elapsed = control.run_phases(spec.warmup_s, spec.duration_s);
    if let Some(pacer) = pacer {
        pacer.join();
    }
    if !wait_until(DRAIN_TIMEOUT, || clients.iter().all(|c| c.is_finished())) {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "raw-tokio requests still in flight after the drain timeout");
    }
    control.set(Phase::Closed);
    drop(aborts);
    for t in clients.into_iter().chain(servers) {
        let _ = t.join();
    }
    let stats: Vec<_> = stats.iter().map(|s| std::mem::take(&mut *s.lock())).collect();
    Ok(Measurement::merge("raw-tokio", elapsed, &stats).with_allocs(control.allocs_measured()))
}

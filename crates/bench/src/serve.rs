//! `rpc-bench serve`: the server half of a run, alone, until SIGINT or SIGTERM, for
//! `rpc-bench load` (or Spark's `TransportClient`) on another process or host.
//!
//! - `--level transport`: every RpcRequest gets an RpcResponse with the request's own bytes, or
//!   `--response` bytes of [`RESPONSE_FILL`] (0x5A, as Spark's baseline, so either side's client
//!   can verify); OneWayMessages are counted. Anything that speaks Spark's frames can drive it.
//! - `--level rpc`: an RpcEnv hosting the benchmark's echo endpoint of [`rpc_load`].
//!
//! The first line on stdout is `LISTENING <host:port>`; the counts go to stderr on exit.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clap::Args;
use rpc::RpcEnv;
use serde::{Deserialize, Serialize};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use transport::{IoMode, TransportClient, TransportHandler};

use crate::error::BenchError;
use crate::remote_load::{RESPONSE_FILL, resolve, side_conf};
use crate::rpc_load;
use crate::run::Level;
use crate::workload::{parse_bytes, parse_count};

/// Largest request body `serve` sizes its frames for when it echoes (it cannot know the load's).
pub const MAX_ECHO_BODY: usize = 64 << 20;

/// Options of `rpc-bench serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on, `host:port` (port 0: any free port; the first stdout line names it).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    /// Layer to serve: transport (RpcRequest in, RpcResponse out) or rpc (the echo endpoint of an RpcEnv).
    #[arg(long, value_enum, default_value_t = Level::Transport)]
    pub level: Level,
    /// Transport backend: epoll, io_uring or auto [default: auto, or the --config file's].
    #[arg(long)]
    pub io_mode: Option<IoMode>,
    /// A TOML file: `io_mode` and the thread counts as top-level keys (as `run --config`), and/or
    /// `[transport]` and `[rpc]` tables of an RpcEnv configuration (see the README); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Answer with this many bytes of 0x5A instead of echoing each request.
    #[arg(long, value_parser = parse_bytes)]
    pub response: Option<usize>,
    /// Server event-loop threads [default: 1, or the --config file's].
    #[arg(long, value_parser = parse_count)]
    pub server_threads: Option<usize>,
    /// Transport level: answer each `stats` line read on stdin with a line `STATS <json>` on
    /// stdout ([`ServeStats`]: open connections, requests, the buffer pool's counters); what
    /// `rpc-bench idle-conns` reads.
    #[arg(long)]
    pub stats_stdin: bool,
    /// Connections the server keeps open at once (`max_connections`; 0 = no
    /// limit) [default: the transport's, 10000, or the --config file's].
    #[arg(long)]
    pub max_connections: Option<usize>,
}

/// What `serve --stats-stdin` prints after `STATS ` for each `stats` line: the transport
/// level's counters at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeStats {
    /// Connections open now (accepted, not yet closed: `channel_active` minus `channel_inactive`).
    pub connections: u64,
    /// RpcRequests answered so far.
    pub requests: u64,
    /// Buffers the transport's pool has handed out and not had back (receive buffers, frames
    /// in flight, io_uring's provided buffers): `served - returned - released`.
    pub pool_buffers_in_use: u64,
    /// Bytes of idle buffers the pool holds for reuse.
    pub pool_bytes_held: u64,
}

impl ServeStats {
    /// The counters of `handler` and `pool` now.
    pub fn of(handler: &ServeHandler, pool: &transport::BufferPool) -> Self {
        let p = pool.stats();
        Self {
            connections: handler.connections(),
            requests: handler.requests(),
            pool_buffers_in_use: (p.served_from_pool + p.served_fresh)
                .saturating_sub(p.returned + p.released),
            pool_bytes_held: p.bytes_held,
        }
    }
}

/// The prefix of a stats line on `serve --stats-stdin`'s stdout.
pub const STATS_PREFIX: &str = "STATS ";

/// What a transport-level server answers and counts.
#[derive(Debug, Default)]
pub struct ServeHandler {
    /// The fixed response (`--response`), or `None` to echo.
    response: Option<Bytes>,
    /// RpcRequests answered.
    requests: AtomicU64,
    /// OneWayMessages received.
    one_way: AtomicU64,
    /// Connections open now.
    connections: AtomicU64,
}

impl ServeHandler {
    /// A handler answering `response` bytes of [`RESPONSE_FILL`], or echoing when `None`.
    pub fn new(response: Option<usize>) -> Self {
        Self {
            response: response.map(|n| Bytes::from(vec![RESPONSE_FILL; n])),
            ..Self::default()
        }
    }

    /// RpcRequests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// OneWayMessages received so far.
    pub fn one_way(&self) -> u64 {
        self.one_way.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl TransportHandler for ServeHandler {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // An echo sends the received slice back: the read buffer returns to the pool once written.
        let reply = self.response.clone().unwrap_or(body);
        if let Err(error) = client.send_response(request_id, reply) {
            tracing::debug!(%error, request_id, "serve could not answer");
        }
    }

    fn receive_one_way(&self, _client: &TransportClient, _body: Bytes) {
        self.one_way.fetch_add(1, Ordering::Relaxed);
    }

    fn channel_active(&self, _client: &TransportClient) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    fn channel_inactive(&self, _client: &TransportClient) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers each `stats` line of stdin with a `STATS <json>` line on stdout until stdin ends;
/// other lines are ignored.
fn answer_stats(handler: Arc<ServeHandler>, transport: Arc<dyn transport::Transport>) {
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        if line.trim() != "stats" {
            continue;
        }
        let stats = ServeStats::of(&handler, transport.pool());
        let json = serde_json::to_string(&stats).expect("plain counters serialize");
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{STATS_PREFIX}{json}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
}

/// What `serve` did, reported on exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeReport {
    /// The address it listened on.
    pub addr: String,
    /// The signal that stopped it.
    pub signal: &'static str,
    /// RpcRequests answered (transport level; asks are not counted at the rpc level).
    pub requests: Option<u64>,
    /// OneWayMessages received (transport level).
    pub one_way: Option<u64>,
}

impl std::fmt::Display for ServeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "served {} until {}", self.addr, self.signal)?;
        if let (Some(requests), Some(one_way)) = (self.requests, self.one_way) {
            write!(
                f,
                ": {requests} requests answered, {one_way} one-way messages received"
            )?;
        }
        Ok(())
    }
}

/// Prints `LISTENING <addr>` as the first stdout line and flushes it.
fn announce(addr: &str) -> Result<(), BenchError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {addr}")
        .and_then(|()| out.flush())
        .map_err(|e| BenchError::io("print the LISTENING line on stdout", e))
}

/// Blocks until SIGINT or SIGTERM; returns its name.
fn wait_for_signal(signals: &mut Signals) -> &'static str {
    match signals.forever().next() {
        Some(SIGINT) => "SIGINT",
        _ => "SIGTERM",
    }
}

/// Serves as `args` says until SIGINT or SIGTERM.
///
/// # Errors
/// [`BenchError::Rpc`] for a bad `--bind` or `--config`, or an RpcEnv that cannot start;
/// [`BenchError::Transport`] when the backend cannot start or bind; [`BenchError::Io`] when the
/// signal handlers cannot be installed or stdout is closed.
pub fn serve(args: &ServeArgs) -> Result<ServeReport, BenchError> {
    let bind: SocketAddr = resolve(&args.bind)?;
    let largest = args.response.unwrap_or(0).max(MAX_ECHO_BODY);
    let mut conf = side_conf(args.config.as_deref(), args.io_mode, args.server_threads, largest)?;
    if let Some(n) = args.max_connections {
        conf.transport.max_connections = n;
    }
    // As Netty servers are run: as many connections as the hard limit allows.
    if let Err(error) = crate::fd_limit::raise_to_hard() {
        tracing::warn!(%error, "serve could not raise its open-file limit");
    }
    // Installed before the address is printed: a signal sent right after it is not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| BenchError::io("install the SIGINT and SIGTERM handlers", e))?;
    match args.level {
        Level::Transport => {
            let transport = rpc::create_transport(&conf.transport)?;
            let handler = Arc::new(ServeHandler::new(args.response));
            if args.stats_stdin {
                let (h, t) = (Arc::clone(&handler), Arc::clone(&transport));
                std::thread::Builder::new()
                    .name("serve-stats".into())
                    .spawn(move || answer_stats(h, t))
                    .map_err(|e| BenchError::io("start the thread answering `stats` on stdin", e))?;
            }
            let served = transport
                .bind(bind, Arc::clone(&handler) as Arc<dyn TransportHandler>)
                .map_err(BenchError::from)
                .and_then(|server| {
                    let addr = server.local_addr().to_string();
                    let announced = announce(&addr);
                    let signal = announced.map(|()| wait_for_signal(&mut signals));
                    server.close();
                    signal.map(|signal| (addr, signal))
                });
            transport.shutdown();
            let (addr, signal) = served?;
            Ok(ServeReport {
                addr,
                signal,
                requests: Some(handler.requests()),
                one_way: Some(handler.one_way()),
            })
        }
        level @ (Level::Rpc | Level::RpcLoop) => {
            if args.stats_stdin {
                tracing::warn!("--stats-stdin answers at the transport level only; ignored at --level rpc");
            }
            conf.name = "rpc-bench-serve".into();
            conf.bind_address = Some(bind);
            let env = RpcEnv::create(conf)?;
            let served = rpc_load::setup_echo(
                &env,
                level,
                args.response.map(|n| bytes::Bytes::from(vec![RESPONSE_FILL; n])),
            )
            .map_err(BenchError::from)
            .and_then(|()| {
                let addr = env
                    .address()
                    .map_or_else(|| bind.to_string(), ToString::to_string);
                announce(&addr).map(|()| (addr.clone(), wait_for_signal(&mut signals)))
            });
            env.shutdown();
            let (addr, signal) = served?;
            Ok(ServeReport {
                addr,
                signal,
                requests: None,
                one_way: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use transport::TransportConf;

    use super::*;
    use crate::measure::wait_until;
    use crate::remote_load::{Expected, request_pattern};

    struct NoRequests;
    impl TransportHandler for NoRequests {
        fn receive_rpc(&self, _: &TransportClient, _: i64, _: Bytes) {}
        fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
    }

    /// One request and three one-way messages to a `ServeHandler`; the response is checked.
    fn exchange(response: Option<usize>) -> (Bytes, u64, u64) {
        let conf = TransportConf {
            io_mode: IoMode::Epoll,
            server_threads: 1,
            client_threads: 1,
            ..TransportConf::default()
        };
        let transport = rpc::create_transport(&conf).unwrap();
        let handler = Arc::new(ServeHandler::new(response));
        let server = transport
            .bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&handler) as _)
            .unwrap();
        let client = transport
            .connect(server.local_addr(), Arc::new(NoRequests))
            .unwrap();
        for _ in 0..3 {
            client.send_one_way(Bytes::from_static(b"note")).unwrap();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        client
            .send_rpc(Bytes::from(request_pattern(1000)), move |r| tx.send(r).unwrap())
            .unwrap();
        let body = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert!(wait_until(Duration::from_secs(5), || handler.one_way() == 3));
        transport.shutdown();
        (body, handler.requests(), handler.one_way())
    }

    #[test]
    fn echoes_or_fills_and_counts_one_way_messages() {
        let (body, requests, one_way) = exchange(None);
        let payload = Bytes::from(request_pattern(1000));
        assert!(Expected::Echo(payload).matches(&body));
        assert_eq!((requests, one_way), (1, 3));
        let h = ServeHandler::new(None);
        let pool = transport::BufferPool::new(1 << 20);
        let held = pool.allocate(100);
        let stats = ServeStats::of(&h, &pool);
        assert_eq!((stats.connections, stats.pool_buffers_in_use), (0, 1));
        drop(held);
        assert_eq!(ServeStats::of(&h, &pool).pool_buffers_in_use, 0);
        let (body, _, _) = exchange(Some(4096));
        assert!(Expected::Fill(4096).matches(&body));
        let report = ServeReport {
            addr: "127.0.0.1:1".into(),
            signal: "SIGTERM",
            requests: Some(1),
            one_way: Some(3),
        };
        assert_eq!(
            report.to_string(),
            "served 127.0.0.1:1 until SIGTERM: 1 requests answered, 3 one-way messages received"
        );
    }
}

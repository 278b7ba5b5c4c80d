//! `rpc-bench idle-conns`: what an idle connection costs a server. It starts `rpc-bench serve
//! --level transport --stats-stdin` as a separate child process, opens N connections to it from
//! this process with plain blocking sockets, sends one 64 B RpcRequest on each and reads its
//! answer (so the server has read from every connection), and leaves them idle. Before and
//! after, it reads the child's `VmRSS` from `/proc/<pid>/status` and asks it for its
//! [`ServeStats`] (the buffer pool's buffers in use). The result ([`IdleConns`]) gives the RSS
//! growth per idle connection and the pool buffers each holds: a connection that keeps a
//! receive buffer while idle shows as one buffer per connection. Both processes raise their
//! open-file limit to the hard limit first ([`fd_limit`](crate::fd_limit)).
//!
//! Mirrors what Netty's pooled allocator aims at (a channel with nothing to read holds no
//! buffer); the kernel's own socket memory is not in a process's RSS and is not counted.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use transport::IoMode;

use crate::error::BenchError;
use crate::host::{Environment, Host};
use crate::raw_frames::{self, Cut, HEADER_LEN, RPC_REQUEST, RPC_RESPONSE};
use crate::serve::{STATS_PREFIX, ServeStats};
use crate::workload::parse_count;

/// File name of the idle-connection results in a matrix results folder (a JSON array of [`IdleConns`]).
pub const IDLE_CONNS_JSON: &str = "idle_conns.json";
/// Idle connections the default matrix opens per IO mode.
pub const DEFAULT_CONNECTIONS: usize = 10_000;
/// Connections opened (and answered) before the "before" figures, so that they do not count
/// what any first connection sets up (thread caches, the first pool buffers).
pub const WARMUP_CONNECTIONS: usize = 8;
/// Body of the one request each connection sends, in bytes.
pub const REQUEST_BODY: usize = 64;
/// Descriptors kept free beyond the connections (the child's pipes, the runtime's own).
const SPARE_FDS: u64 = 64;
/// How long to wait for the server to see every connection, or for one answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// An idle connection counts as holding a receive buffer when the pool's buffers in use grew
/// by at least this many per idle connection.
pub const HOLDS_BUFFER_PER_CONN: f64 = 0.01;

/// Options of `rpc-bench idle-conns`.
#[derive(Debug, Clone, Args)]
pub struct IdleConnsArgs {
    /// The server's transport backend: epoll or io_uring.
    #[arg(long, default_value = "epoll")]
    pub io_mode: IoMode,
    /// Idle connections to open (each needs a descriptor on both sides).
    #[arg(long, default_value_t = DEFAULT_CONNECTIONS, value_parser = parse_count)]
    pub connections: usize,
    /// Print one JSON object on one line instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// What N idle connections cost a server process, as `idle_conns.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleConns {
    /// The server's IO mode: `epoll` or `io_uring`.
    pub io_mode: String,
    /// Idle connections opened (beyond the [`WARMUP_CONNECTIONS`]).
    pub connections: usize,
    /// Connections the server had open at the end, as it counts them (warmup included).
    pub server_connections: u64,
    /// The server's VmRSS after the warmup connections, in bytes.
    pub rss_before_bytes: u64,
    /// The server's VmRSS with every connection open and idle, in bytes.
    pub rss_after_bytes: u64,
    /// `(rss_after_bytes - rss_before_bytes) / connections`, in bytes (negative if RSS fell).
    pub rss_per_conn_bytes: f64,
    /// The server pool's buffers in use after the warmup connections.
    pub pool_buffers_before: u64,
    /// The server pool's buffers in use with every connection idle.
    pub pool_buffers_after: u64,
    /// `(pool_buffers_after - pool_buffers_before) / connections`: receive (or other) buffers
    /// an idle connection holds; about 1 when each keeps one.
    pub buffers_per_conn: f64,
    /// Seconds spent opening and answering the connections.
    pub open_s: f64,
    /// The machine.
    pub host: Host,
    /// Short git revision of the source, or `unknown`.
    pub git_sha: String,
    /// When the measurement ended, RFC 3339 in UTC.
    pub timestamp: String,
}

impl IdleConns {
    /// Whether an idle connection holds a receive buffer: the pool's buffers in use grew by
    /// at least [`HOLDS_BUFFER_PER_CONN`] per idle connection.
    pub fn holds_receive_buffer(&self) -> bool {
        self.buffers_per_conn >= HOLDS_BUFFER_PER_CONN
    }
}

impl fmt::Display for IdleConns {
    /// Three lines: the connections, the RSS growth, the pool buffers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = |b: u64| b as f64 / 1024.0;
        writeln!(
            f,
            "{} idle connections to the {} server (one {REQUEST_BODY} B request answered on each), opened in {:.2} s",
            self.connections, self.io_mode, self.open_s
        )?;
        writeln!(
            f,
            "  server RSS {:.0} KiB → {:.0} KiB: {:.0} B per idle connection",
            kib(self.rss_before_bytes),
            kib(self.rss_after_bytes),
            self.rss_per_conn_bytes
        )?;
        write!(
            f,
            "  pool buffers in use {} → {}: {:.2} per idle connection ({})",
            self.pool_buffers_before,
            self.pool_buffers_after,
            self.buffers_per_conn,
            if self.holds_receive_buffer() {
                "an idle connection holds a receive buffer"
            } else {
                "an idle connection holds no receive buffer"
            }
        )
    }
}

/// Reads `idle_conns.json` of a results folder; `Ok(None)` when the folder has none.
///
/// # Errors
/// [`BenchError::IdleConns`] when it exists but cannot be read or parsed.
pub fn read(dir: &Path) -> Result<Option<Vec<IdleConns>>, BenchError> {
    let path = dir.join(IDLE_CONNS_JSON);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(format!("cannot read {}: {e}", path.display()))),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| failed(format!("{} is not what rpc-bench writes: {e}", path.display())))
}

/// Writes `results` as `idle_conns.json` in `dir`.
///
/// # Errors
/// [`BenchError::Results`] when the file cannot be written.
pub fn write(dir: &Path, results: &[IdleConns]) -> Result<(), BenchError> {
    let path = dir.join(IDLE_CONNS_JSON);
    let text = serde_json::to_string_pretty(results)?;
    std::fs::write(&path, text + "\n").map_err(|source| BenchError::Results { path, source })
}

fn failed(reason: String) -> BenchError {
    BenchError::IdleConns { reason }
}

/// The server child: its pipes, and what it said on stderr (drained by a thread).
struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `exe serve --level transport --io-mode MODE --stats-stdin
    /// --max-connections N` (N above what the run opens, which may pass the
    /// transport's default limit of 10,000) and reads its address.
    fn start(exe: &Path, mode: IoMode, max_connections: usize) -> Result<(Self, SocketAddr), BenchError> {
        let max_connections = max_connections.to_string();
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--level",
                "transport",
                "--stats-stdin",
                "--io-mode",
                mode.as_str(),
                "--max-connections",
                &max_connections,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::io("start the `rpc-bench serve` child", e))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&text);
            });
        }
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let mut server = Self {
            stdin: stdin.expect("stdin is piped"),
            stdout: BufReader::new(stdout.expect("stdout is piped")),
            child,
            stderr,
        };
        let line = server.line()?;
        let addr = line
            .strip_prefix("LISTENING ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| {
                server.fail(format!(
                    "serve's first line is not `LISTENING <addr>` but {line:?}"
                ))
            })?;
        Ok((server, addr))
    }

    /// The next stdout line of the child; an error naming its stderr when it has ended.
    fn line(&mut self) -> Result<String, BenchError> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Ok(line.trim_end().to_string()),
            Ok(_) => Err(self.fail("serve ended".into())),
            Err(e) => Err(self.fail(format!("cannot read serve's stdout: {e}"))),
        }
    }

    /// An error with `reason` and what the child said on stderr (after it exits, if it does).
    fn fail(&mut self, reason: String) -> BenchError {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let said = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .trim()
            .to_string();
        failed(format!("{reason}; serve said: {said:?}"))
    }

    /// Asks for the child's [`ServeStats`].
    fn stats(&mut self) -> Result<ServeStats, BenchError> {
        if let Err(e) = self.stdin.write_all(b"stats\n").and_then(|()| self.stdin.flush()) {
            return Err(self.fail(format!("cannot ask serve for its stats: {e}")));
        }
        loop {
            let line = self.line()?;
            if let Some(json) = line.strip_prefix(STATS_PREFIX) {
                return serde_json::from_str(json)
                    .map_err(|e| failed(format!("bad stats line {line:?}: {e}")));
            }
        }
    }

    /// Asks for stats until the server counts `n` open connections.
    fn await_connections(&mut self, n: u64) -> Result<ServeStats, BenchError> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let stats = self.stats()?;
            if stats.connections == n {
                return Ok(stats);
            }
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "the server counts {} open connections after {TIMEOUT:?}, not {n}",
                    stats.connections
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The child's VmRSS, in bytes.
    fn rss(&self) -> Result<u64, BenchError> {
        let path = format!("/proc/{}/status", self.child.id());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| BenchError::io("read the serve child's /proc/<pid>/status", e))?;
        vm_rss_bytes(&text).ok_or_else(|| failed(format!("{path} has no VmRSS line")))
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    fn stop(mut self) {
        drop(self.stdin);
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `VmRSS:` value of a `/proc/<pid>/status` text, in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

/// Opens a connection to `addr`, sends one RpcRequest of [`REQUEST_BODY`] bytes and reads its
/// RpcResponse; returns the connection, idle.
fn open_answered(addr: SocketAddr, id: i64) -> Result<TcpStream, BenchError> {
    let io = |what: &'static str| move |e| BenchError::io(what, e);
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io("connect to serve"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(io("set a read timeout"))?;
    s.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
    let mut frame = Vec::with_capacity(HEADER_LEN + REQUEST_BODY);
    raw_frames::put_header(&mut frame, RPC_REQUEST, id, REQUEST_BODY);
    frame.resize(HEADER_LEN + REQUEST_BODY, 0x17);
    s.write_all(&frame).map_err(io("send a request to serve"))?;
    let mut answer = vec![0u8; HEADER_LEN + REQUEST_BODY];
    s.read_exact(&mut answer).map_err(io("read serve's answer"))?;
    let ok = raw_frames::cut(&answer) == Cut::Frame(answer.len())
        && raw_frames::kind(&answer) == RPC_RESPONSE
        && raw_frames::request_id(&answer) == id
        && answer[HEADER_LEN..] == frame[HEADER_LEN..];
    if !ok {
        return Err(failed(format!(
            "serve answered request {id} with something other than its echo: {:?}",
            &answer[..HEADER_LEN]
        )));
    }
    Ok(s)
}

/// Open files `connections` idle connections need in each process (warmup and spare included).
pub fn fds_needed(connections: usize) -> u64 {
    (connections as u64).saturating_add(WARMUP_CONNECTIONS as u64 + SPARE_FDS)
}

/// Measures `connections` idle connections to a `serve` child on `mode`, started from `exe`
/// (the `rpc-bench` binary).
///
/// # Errors
/// [`BenchError::IdleConns`] when the open-file limit is below what the connections need, or
/// the child fails, answers wrongly or does not see every connection within 30 s;
/// [`BenchError::Io`] when a socket or the child's files cannot be used.
pub fn run(exe: &Path, mode: IoMode, connections: usize, env: &Environment) -> Result<IdleConns, BenchError> {
    let soft =
        crate::fd_limit::raise_to_hard().map_err(|e| BenchError::io("raise the open-file limit", e))?;
    let need = fds_needed(connections);
    if soft < need {
        return Err(failed(format!(
            "{connections} connections need {need} open files in this process and in serve, but the \
             hard limit is {soft}; raise it (`ulimit -Hn`, as root) or ask for fewer connections"
        )));
    }
    let (mut server, addr) = Server::start(exe, mode, connections + WARMUP_CONNECTIONS + 64)?;
    let result = measure(&mut server, addr, mode, connections, env);
    server.stop();
    result
}

fn measure(
    server: &mut Server,
    addr: SocketAddr,
    mode: IoMode,
    connections: usize,
    env: &Environment,
) -> Result<IdleConns, BenchError> {
    let mut open = Vec::with_capacity(connections + WARMUP_CONNECTIONS);
    for i in 0..WARMUP_CONNECTIONS {
        open.push(open_answered(addr, i as i64)?);
    }
    let before = server.await_connections(WARMUP_CONNECTIONS as u64)?;
    let rss_before = server.rss()?;
    let start = Instant::now();
    for i in 0..connections {
        open.push(open_answered(addr, (WARMUP_CONNECTIONS + i) as i64)?);
    }
    let open_s = start.elapsed().as_secs_f64();
    let after = server.await_connections(open.len() as u64)?;
    let rss_after = server.rss()?;
    let n = connections as f64;
    Ok(IdleConns {
        io_mode: mode.as_str().to_string(),
        connections,
        server_connections: after.connections,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_per_conn_bytes: (rss_after as f64 - rss_before as f64) / n,
        pool_buffers_before: before.pool_buffers_in_use,
        pool_buffers_after: after.pool_buffers_in_use,
        buffers_per_conn: (after.pool_buffers_in_use as f64 - before.pool_buffers_in_use as f64) / n,
        open_s,
        host: env.host.clone(),
        git_sha: env.git_sha.clone(),
        timestamp: jiff::Timestamp::now().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\trpc-bench\nVmPeak:\t  9000 kB\nVmRSS:\t   5120 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_bytes(status), Some(5120 * 1024));
        assert_eq!(vm_rss_bytes("VmRSS: 12 MB\n"), None);
        assert_eq!(vm_rss_bytes("Name: x\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_rss_bytes(&own).is_some_and(|b| b > 0));
    }

    #[test]
    fn results_round_trip_through_the_folder_file() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read(tmp.path()).unwrap(), None);
        let env = Environment::detect();
        let r = IdleConns {
            io_mode: "epoll".into(),
            connections: 100,
            server_connections: 108,
            rss_before_bytes: 1 << 20,
            rss_after_bytes: (1 << 20) + 100 * 2048,
            rss_per_conn_bytes: 2048.0,
            pool_buffers_before: 3,
            pool_buffers_after: 103,
            buffers_per_conn: 1.0,
            open_s: 0.1,
            host: env.host.clone(),
            git_sha: env.git_sha.clone(),
            timestamp: "2026-11-29T00:00:00Z".into(),
        };
        assert!(r.holds_receive_buffer());
        assert!(r.to_string().contains("2048 B per idle connection"), "{r}");
        write(tmp.path(), std::slice::from_ref(&r)).unwrap();
        assert_eq!(read(tmp.path()).unwrap(), Some(vec![r.clone()]));
        let none = IdleConns {
            buffers_per_conn: 0.0,
            ..r
        };
        assert!(!none.holds_receive_buffer());
        assert!(none.to_string().contains("holds no receive buffer"), "{none}");
        std::fs::write(tmp.path().join(IDLE_CONNS_JSON), "{").unwrap();
        let e = read(tmp.path()).unwrap_err();
        assert!(e.to_string().contains(IDLE_CONNS_JSON), "{e}");
    }
}

//! `standalone`: run a Master or a Worker of the standalone cluster, or the
//! heartbeat load benchmark.
//!
//! ```text
//! standalone master [--config FILE] [--host H] [--port P] [--web-ui-port P] [--io-mode M] ...
//! standalone worker [--config FILE] [--master rpc://H:P] [--port P] [--id ID] [--cores N] ...
//! standalone bench-heartbeats --workers N --rate R --duration S [--io-mode M] [--json]
//! ```
//!
//! Settings: defaults, then `--config FILE` (`[standalone]`, `[rpc]`,
//! `[transport]` tables), then `STANDALONE_*` and `RPC_*` variables, then flags.
//! Master and worker stop cleanly on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rpc::{RpcAddress, RpcEnvConfig};
use standalone::{HeartbeatLoad, Master, StandaloneConfig, StandaloneError, Worker};
use transport::IoMode;

#[derive(Parser)]
#[command(
    name = "standalone",
    version,
    about = "Spark Standalone's Master and Worker on the Rust RpcEnv"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a master (Spark's `Master`).
    Master(MasterArgs),
    /// Run a worker (Spark's `Worker`).
    Worker(WorkerArgs),
    /// Measure the master's heartbeat handling under load; prints a report.
    BenchHeartbeats(BenchArgs),
}

#[derive(Args)]
struct Common {
    /// TOML file with `[standalone]`, `[rpc]` and `[transport]` tables.
    #[arg(long)]
    config: Option<PathBuf>,
    /// IO mode: epoll, io_uring or auto.
    #[arg(long)]
    io_mode: Option<IoMode>,
    /// Milliseconds without heartbeats before the master drops a worker.
    #[arg(long)]
    worker_timeout_ms: Option<u64>,
}

#[derive(Args)]
struct MasterArgs {
    #[command(flatten)]
    common: Common,
    /// Host to bind (and advertise).
    #[arg(long)]
    host: Option<String>,
    /// RPC port (default 7077; 0 picks one).
    #[arg(long)]
    port: Option<u16>,
    /// Web UI port (default 8080; 0 picks one).
    #[arg(long)]
    web_ui_port: Option<u16>,
    /// Write "RPC_PORT WEB_UI_PORT" to this file once listening (for scripts).
    #[arg(long)]
    ports_file: Option<PathBuf>,
}

#[derive(Args)]
struct WorkerArgs {
    #[command(flatten)]
    common: Common,
    /// The master, `rpc://host:port` (or `spark://` or `host:port`).
    #[arg(long)]
    master: Option<String>,
    /// Host to bind (and advertise).
    #[arg(long)]
    host: Option<String>,
    /// RPC port (default 0: picks one).
    #[arg(long)]
    port: Option<u16>,
    /// Worker id (default `worker-<secs>-<host>-<port>`).
    #[arg(long)]
    id: Option<String>,
    /// Cores to offer (default all).
    #[arg(long)]
    cores: Option<u32>,
    /// Memory to offer, MiB (default RAM less 1 GiB).
    #[arg(long)]
    memory_mb: Option<u64>,
}

#[derive(Args)]
struct BenchArgs {
    /// Workers heartbeating.
    #[arg(long, default_value_t = 100)]
    workers: usize,
    /// Heartbeats per second per worker.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// IO mode: epoll, io_uring or auto.
    #[arg(long, default_value = "auto")]
    io_mode: IoMode,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

fn load(common: &Common) -> Result<(StandaloneConfig, RpcEnvConfig), StandaloneError> {
    let (mut conf, mut rpc) = standalone::config::load(common.config.as_deref())?;
    if let Some(m) = common.io_mode {
        rpc.transport.io_mode = m;
    }
    if let Some(t) = common.worker_timeout_ms {
        conf.set("worker_timeout_ms", &t.to_string())?;
    }
    Ok((conf, rpc))
}

/// SIGTERM and SIGINT, as a channel.
fn signals() -> Result<Receiver<i32>, StandaloneError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|e| StandaloneError::Io {
            what: "cannot install the SIGTERM / SIGINT handler".into(),
            source: e,
        })?;
    let (tx, rx) = crossbeam_channel::bounded(4);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                let _ = tx.send(s);
            }
        })
        .map_err(|e| StandaloneError::Io {
            what: "cannot start the signal thread".into(),
            source: e,
        })?;
    Ok(rx)
}

fn run_master(args: MasterArgs) -> Result<(), StandaloneError> {
    let (mut conf, rpc) = load(&args.common)?;
    if let Some(h) = args.host {
        conf.master_host = h;
    }
    conf.master_port = args.port.unwrap_or(conf.master_port);
    conf.web_ui_port = args.web_ui_port.unwrap_or(conf.web_ui_port);
    let sig = signals()?;
    let mut master = Master::start(&conf, rpc)?;
    let web = master.web_ui_port().unwrap_or(0);
    if let Some(path) = &args.ports_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {web}\n", master.address().port))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| StandaloneError::Io {
                what: format!("cannot write the ports file {}", path.display()),
                source: e,
            })?;
    }
    println!(
        "master {} web UI http://{}:{web}/",
        master.address().to_url(),
        conf.master_host
    );
    let s = sig.recv().unwrap_or(0);
    tracing::info!(signal = s, "stopping the master");
    master.shutdown();
    Ok(())
}

fn run_worker(args: WorkerArgs) -> Result<(), StandaloneError> {
    let (mut conf, rpc) = load(&args.common)?;
    if let Some(m) = args.master {
        let a: RpcAddress = m.parse()?;
        conf.master_host = a.host;
        conf.master_port = a.port;
    }
    if let Some(h) = args.host {
        conf.worker_host = h;
    }
    conf.worker_port = args.port.unwrap_or(conf.worker_port);
    conf.worker_id = args.id.unwrap_or(conf.worker_id);
    conf.worker_cores = args.cores.unwrap_or(conf.worker_cores);
    conf.worker_memory_mb = args.memory_mb.unwrap_or(conf.worker_memory_mb);
    let sig = signals()?;
    let mut worker = Worker::launch(&conf, rpc)?;
    println!(
        "worker {} registering with {}",
        worker.id(),
        conf.master_address().to_url()
    );
    loop {
        match sig.recv_timeout(Duration::from_millis(100)) {
            Ok(s) => {
                tracing::info!(signal = s, worker = worker.id(), "stopping the worker");
                worker.stop();
                return Ok(());
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                if let Some(f) = worker.status().failure() {
                    let e = f.to_error(worker.id());
                    worker.stop();
                    return Err(e);
                }
            }
        }
    }
}

fn run_bench(args: BenchArgs) -> Result<(), StandaloneError> {
    let report = HeartbeatLoad {
        workers: args.workers,
        rate_per_worker: args.rate,
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        io_mode: args.io_mode,
        connections: 0,
    }
    .run()?;
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!(
            "{} workers x {}/s for {} s on {}: {} heartbeats, {} errors, {:.0}/s; \
             latency µs p50 {} p90 {} p99 {} p99.9 {} max {}",
            report.workers,
            report.rate_per_worker,
            report.duration_secs,
            report.io_mode,
            report.requests,
            report.errors,
            report.achieved_rate,
            report.p50_us,
            report.p90_us,
            report.p99_us,
            report.p999_us,
            report.max_us
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::BenchHeartbeats(_)) {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init();
    }
    let result = match cli.command {
        Command::Master(a) => run_master(a),
        Command::Worker(a) => run_worker(a),
        Command::BenchHeartbeats(a) => run_bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

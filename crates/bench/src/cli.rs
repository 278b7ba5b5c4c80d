//! The command line of `rpc-bench`: `run` (one run), `matrix` (the default;
//! also what `rpc-bench` with no subcommand does), `report` (re-render a results
//! folder) and `merge` (add histogram files).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use transport::IoMode;

use crate::error::BenchError;
use crate::histogram_files::{self, Latency};
use crate::host::Environment;
use crate::matrix::{MatrixSpec, run_matrix};
use crate::merge::{Percentiles, merge_files, out_stem};
use crate::output_error::OutputError;
use crate::run::{Level, RunSpec, run};
use crate::workload::{
    SparkIo, System, Workload, parse_bytes, parse_count, parse_duration_seconds, parse_seconds,
};

/// Benchmarks the Spark-style RPC transports against a minimal tokio echo.
///
/// With no subcommand it runs the default matrix (same as `rpc-bench matrix`).
#[derive(Debug, Parser)]
#[command(name = "rpc-bench", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; the matrix when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Matrix options, when no subcommand is given.
    #[command(flatten)]
    pub matrix: MatrixArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One run: one system, one workload.
    Run(RunArgs),
    /// The default matrix of workloads on every system, repeated and interleaved.
    Matrix(MatrixArgs),
    /// Rewrites a results folder's summary.md and plots from its runs.jsonl and histogram files.
    Report(ReportArgs),
    /// Adds V2 histogram files (.hist) from several processes or hosts; prints one JSON line.
    Merge(MergeArgs),
    /// Prints issue 8's performance targets against a results folder: measured, ratio, threshold,
    /// MET / NOT MET / NOT MEASURED. A report: it succeeds whatever the verdicts.
    Check(CheckArgs),
    /// Serves alone (transport echo or the rpc echo endpoint) until SIGINT/SIGTERM; prints `LISTENING <addr>` first.
    Serve(crate::serve::ServeArgs),
    /// Drives a remote `serve` (or any Spark-framed server at the transport level); prints the record of `run`.
    Load(crate::remote_load::LoadArgs),
    /// Opens N idle connections to a `serve` child process; prints its RSS and pool buffers per connection.
    IdleConns(crate::idle_conns::IdleConnsArgs),
}

/// Options of `rpc-bench report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A results folder written by `rpc-bench matrix` (holding matrix.json and runs.jsonl).
    pub dir: PathBuf,
}

/// Options of `rpc-bench check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// A results folder written by `rpc-bench matrix` (its runs.jsonl and idle_conns.json are read).
    pub dir: PathBuf,
}

/// Options of `rpc-bench merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// HdrHistogram V2 files (`.hist`, latencies in µs), e.g. `runs/*.hist` of a results folder.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also write the merged histogram as `<OUT>.hgrm` and `<OUT>.hist` (a `.hist`/`.hgrm` suffix is dropped).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The baselines that are not a transport backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    /// A minimal hand-written tokio echo of the same frames.
    RawTokio,
    /// Apache Spark's network-common transport on Netty NIO (needs Java 17 and python3).
    SparkNio,
    /// Apache Spark's network-common transport on Netty's native epoll.
    SparkEpoll,
}

/// Options of `rpc-bench run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Layer to load: transport (the `Transport` trait) or rpc (asks through RpcEnvs; not with --baseline).
    #[arg(long, value_enum, default_value_t = Level::Transport)]
    pub level: Level,
    /// Transport backend: epoll, io_uring or auto (as `rpc::create_transport` picks) [default: auto].
    #[arg(long, conflicts_with = "baseline")]
    pub io_mode: Option<IoMode>,
    /// With `--io-mode io_uring`: send bodies of 64 KiB or more with `SENDMSG_ZC` (the matrix's
    /// `io_uring-zc` column; transport level only).
    #[arg(long, conflicts_with = "baseline")]
    pub zero_copy: bool,
    /// Run a baseline instead of a transport backend.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Request body size in bytes (suffixes KiB, MiB allowed).
    #[arg(long, default_value = "64", value_parser = parse_bytes)]
    pub payload: usize,
    /// Response body size in bytes [default: same as --payload].
    #[arg(long, value_parser = parse_bytes)]
    pub response: Option<usize>,
    /// Connections (at the rpc level: client-mode RpcEnvs, one connection each).
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub conns: usize,
    /// Requests in flight per connection (closed loop); with --rate, the most a connection
    /// keeps outstanding (later due requests queue, their latency growing) [default: 1; with --rate, 64].
    #[arg(long, value_parser = parse_count)]
    pub inflight: Option<usize>,
    /// Open loop: requests per second over all connections, sent on a fixed timetable, each
    /// request's latency counted from when it was due (coordinated omission corrected).
    /// Without it the load is a closed loop.
    #[arg(long, value_parser = crate::workload::parse_rate)]
    pub rate: Option<u64>,
    /// Pin the server's threads (event loops; at the rpc level also its dispatcher threads)
    /// to these CPUs: `0`, `0,1`, `0-1`.
    #[arg(long, value_parser = crate::host::parse_cpu_list)]
    pub server_cpus: Option<crate::host::CpuList>,
    /// Pin the client's threads (event loops, raw-tokio's runtimes, the open-loop pacer) to these CPUs.
    #[arg(long, value_parser = crate::host::parse_cpu_list)]
    pub client_cpus: Option<crate::host::CpuList>,
    /// Read options from a TOML file with the flags' names as keys (`payload = 64`,
    /// `io_mode = "epoll"`, `rate = 20000`); flags on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Measurement time, in seconds.
    #[arg(long, default_value = "2", value_parser = parse_duration_seconds)]
    pub duration: f64,
    /// Warmup before measuring, in seconds.
    #[arg(long, default_value = "0.5", value_parser = parse_seconds)]
    pub warmup: f64,
    /// Print one JSON object on one line instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Save the run's latency histogram in this folder as `<system>-<level>-<workload>.hgrm`
    /// and `.hist` (`-2`, `-3`, ... appended if taken); the record's `histogram` names the stem.
    #[arg(long)]
    pub histogram_dir: Option<PathBuf>,
    /// Server event-loop threads.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub server_threads: usize,
    /// Client event-loop threads.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub client_threads: usize,
}

impl RunArgs {
    /// The run these options describe.
    pub fn spec(&self) -> RunSpec {
        let system = match (self.baseline, self.io_mode) {
            (Some(Baseline::RawTokio), _) => System::RawTokio,
            (Some(Baseline::SparkNio), _) => System::Spark(SparkIo::Nio),
            (Some(Baseline::SparkEpoll), _) => System::Spark(SparkIo::Epoll),
            (None, Some(IoMode::IoUring)) if self.zero_copy => System::UringZeroCopy,
            (None, mode) => System::Transport(mode.unwrap_or(IoMode::Auto)),
        };
        RunSpec {
            system,
            level: self.level,
            workload: Workload {
                payload: self.payload,
                response: self.response.unwrap_or(self.payload),
                conns: self.conns,
                inflight: self.inflight.unwrap_or(match self.rate {
                    Some(_) => crate::workload::OPEN_LOOP_CAP,
                    None => 1,
                }),
                rate: self.rate,
                pinned_cpu: match (self.server_cpus, self.client_cpus) {
                    (Some(s), Some(c)) if s == c && s.cpus().len() == 1 => Some(s.cpus()[0]),
                    _ => None,
                },
            },
            duration_s: self.duration,
            warmup_s: self.warmup,
            server_threads: self.server_threads,
            client_threads: self.client_threads,
            server_cpus: self.server_cpus,
            client_cpus: self.client_cpus,
        }
    }
}

/// Options of `rpc-bench matrix`.
#[derive(Debug, Clone, Args)]
pub struct MatrixArgs {
    /// Measurement time per run, in seconds.
    #[arg(long, default_value = "1", value_parser = parse_duration_seconds)]
    pub duration: f64,
    /// Warmup per run, in seconds (the Spark baseline's JVM always gets at least 1.5 s).
    #[arg(long, default_value = "0.3", value_parser = parse_seconds)]
    pub warmup: f64,
    /// Runs of each workload on each system; tables quote medians.
    #[arg(long, default_value_t = 3, value_parser = parse_count)]
    pub repeat: usize,
    /// Parent folder of the results folder `<date>-<host>-<sha>`.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Systems to compare, comma-separated, in interleaving order. The Spark
    /// baselines are skipped, with the reason printed, where Java or python3 is missing.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "epoll,io_uring,io_uring-zc,raw-tokio,spark-nio,spark-epoll"
    )]
    pub systems: Vec<System>,
    /// Idle connections to open to a `serve` child after the runs, on each of epoll and io_uring
    /// among --systems (as `rpc-bench idle-conns`, written to idle_conns.json); 0: skip.
    #[arg(long, default_value_t = crate::idle_conns::DEFAULT_CONNECTIONS)]
    pub idle_conns: usize,
    /// Levels to load, comma-separated, in interleaving order (raw-tokio runs at transport only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "transport,rpc,rpc-loop"
    )]
    pub levels: Vec<Level>,
    /// Read options from a TOML file with the flags' names as keys (`repeat = 5`,
    /// `systems = ["epoll", "raw-tokio"]`); flags on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl MatrixArgs {
    /// The matrix these options describe, over the default workloads.
    pub fn spec(&self) -> MatrixSpec {
        // The pinned row runs on CPU 0, or on the first CPU this process may use when 0 is not one.
        let allowed = crate::host::allowed_cpus();
        let cpu = match allowed.first() {
            Some(&first) if !allowed.contains(&crate::workload::PINNED_CPU) => first,
            _ => crate::workload::PINNED_CPU,
        };
        let workloads = Workload::default_matrix()
            .into_iter()
            .map(|w| match w.pinned_cpu {
                Some(_) => w.pinned_to(cpu),
                None => w,
            })
            .collect();
        MatrixSpec {
            workloads,
            systems: self.systems.clone(),
            levels: self.levels.clone(),
            repeat: self.repeat,
            duration_s: self.duration,
            warmup_s: self.warmup,
            server_threads: 1,
            client_threads: 1,
            results_dir: self.results_dir.clone(),
            idle_conns: self.idle_conns,
        }
    }
}

/// Runs what `cli` asks; `command` is the command line, quoted in `summary.md`.
/// Output goes to stdout: a record (JSON or a summary) or the matrix table.
///
/// # Errors
/// Whatever the run or matrix fails with.
pub fn execute(cli: Cli, command: &str) -> Result<(), OutputError> {
    let env = Environment::detect();
    match cli.command {
        Some(Command::Run(args)) => {
            if args.zero_copy && args.io_mode != Some(IoMode::IoUring) {
                let io_mode = args.io_mode.map_or("auto", IoMode::as_str).to_string();
                return Err(BenchError::ZeroCopyNeedsIoUring { io_mode }.into());
            }
            let mut record = run(&args.spec(), &env)?;
            if let Some(dir) = &args.histogram_dir {
                save_run_histogram(dir, &mut record)?;
            }
            if args.json {
                println!("{}", record.to_json_line()?);
            } else {
                println!("{record}");
            }
        }
        Some(Command::Matrix(args)) => matrix(&args, &env, command)?,
        None => matrix(&cli.matrix, &env, command)?,
        Some(Command::Report(args)) => {
            let summary = crate::report::report(&args.dir)?;
            println!("{}", summary.render_terminal());
            println!(
                "Rewrote {}, {} and the plots",
                args.dir.join(crate::report::SUMMARY_MD).display(),
                crate::check::CHECK_MD
            );
        }
        Some(Command::Serve(args)) => {
            let report = crate::serve::serve(&args)?;
            eprintln!("rpc-bench serve: {report}");
        }
        Some(Command::Load(args)) => {
            let mut record = crate::remote_load::run(&args, &env)?;
            if let Some(dir) = &args.histogram_dir {
                save_run_histogram(dir, &mut record)?;
            }
            println!("{}", crate::remote_load::render(&record, &args)?);
        }
        Some(Command::Check(args)) => {
            let report = crate::check::check(&args.dir)?;
            print!("{}", report.render_table());
        }
        Some(Command::IdleConns(args)) => {
            let exe = std::env::current_exe().map_err(|e| BenchError::io("find the rpc-bench binary", e))?;
            let result = crate::idle_conns::run(&exe, args.io_mode, args.connections, &env)?;
            if args.json {
                println!("{}", serde_json::to_string(&result).map_err(BenchError::from)?);
            } else {
                println!("{result}");
            }
        }
        Some(Command::Merge(args)) => {
            let merged = merge_files(&args.files)?;
            if let Some(out) = &args.out {
                histogram_files::save(&out_stem(out), &merged)?;
            }
            let line = serde_json::to_string(&Percentiles::of(&merged, args.files.len()))
                .map_err(BenchError::from)?;
            println!("{line}");
        }
    }
    Ok(())
}

/// Saves `record`'s histogram in `dir` under a free `<system>-<level>-<workload>` stem and names it in the record.
fn save_run_histogram(dir: &std::path::Path, record: &mut crate::record::Record) -> Result<(), OutputError> {
    let Some(Latency(h)) = &record.latency else {
        return Ok(());
    };
    let base = histogram_files::run_name(&record.system, &record.level.to_string(), &record.workload());
    let stem = (1..)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|s| !histogram_files::with_extension(&dir.join(s), histogram_files::HIST).exists())
        .expect("some suffix is free");
    histogram_files::save(&dir.join(&stem), h)?;
    record.histogram = Some(stem);
    Ok(())
}

fn matrix(args: &MatrixArgs, env: &Environment, command: &str) -> Result<(), OutputError> {
    let mut spec = args.spec();
    if spec.systems.iter().any(|s| matches!(s, System::Spark(_))) {
        eprintln!(
            "rpc-bench: preparing the Spark baseline (scripts/spark-baseline.sh --setup; first use installs pyspark)"
        );
        if let Err(e) = crate::spark_load::check_available() {
            eprintln!("rpc-bench: skipping spark-nio and spark-epoll: {e}");
            spec.systems.retain(|s| !matches!(s, System::Spark(_)));
        }
    }
    let outcome = run_matrix(&spec, env, command)?;
    println!("{}", outcome.summary.render_terminal());
    println!(
        "Medians of {} interleaved runs each; every run in {}",
        spec.repeat,
        outcome.dir.join("runs.jsonl").display()
    );
    let idle = crate::idle_conns::read(&outcome.dir)?.unwrap_or_default();
    for r in &idle {
        println!("{r}");
    }
    let check = crate::check::evaluate(&outcome.records, Some(&idle));
    println!(
        "Issue 8's targets: {} met, {} not met, {} not measured; see {}",
        check.count(crate::check::Status::Met),
        check.count(crate::check::Status::NotMet),
        check.count(crate::check::Status::NotMeasured),
        outcome.dir.join(crate::check::CHECK_MD).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rpc-bench").chain(args.iter().copied()))
    }

    #[test]
    fn run_flags_make_a_spec() {
        let cli = parse(&[
            "run",
            "--io-mode",
            "epoll",
            "--payload",
            "4KiB",
            "--inflight",
            "16",
        ])
        .unwrap();
        let Some(Command::Run(args)) = cli.command else {
            panic!("not a run")
        };
        let s = args.spec();
        assert_eq!(s.system, System::Transport(IoMode::Epoll));
        assert_eq!(s.workload, Workload::echo(4096, 1, 16));
        assert_eq!(
            (s.duration_s, s.warmup_s, s.server_threads, s.client_threads),
            (2.0, 0.5, 1, 1)
        );
        let cli = parse(&["run", "--baseline", "raw-tokio", "--response", "1MiB"]).unwrap();
        let Some(Command::Run(args)) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(args.spec().system, System::RawTokio);
        assert_eq!(
            (args.spec().workload.payload, args.spec().workload.response),
            (64, 1 << 20)
        );
        let cli = parse(&["run", "--io-mode", "io_uring", "--zero-copy", "--payload", "1MiB"]).unwrap();
        let Some(Command::Run(args)) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(args.spec().system, System::UringZeroCopy);
        assert!(parse(&["run", "--baseline", "raw-tokio", "--zero-copy"]).is_err());
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["run", "--io-mode", "epoll", "--baseline", "raw-tokio"]).is_err());
        assert!(parse(&["run", "--io-mode", "kqueue"]).is_err());
        assert!(parse(&["run", "--inflight", "0"]).is_err());
        assert!(parse(&["run", "--duration", "-1"]).is_err());
        assert!(parse(&["matrix", "--systems", "epoll,netty"]).is_err());
        assert!(parse(&["matrix", "--levels", "transport,dispatcher"]).is_err());
        assert!(parse(&["run", "--level", "app"]).is_err());
    }

    #[test]
    fn no_subcommand_is_the_matrix() {
        let cli = parse(&[]).unwrap();
        assert!(cli.command.is_none());
        let spec = cli.matrix.spec();
        assert_eq!((spec.repeat, spec.duration_s, spec.warmup_s), (3, 1.0, 0.3));
        assert_eq!(
            spec.systems,
            vec![
                System::Transport(IoMode::Epoll),
                System::Transport(IoMode::IoUring),
                System::UringZeroCopy,
                System::RawTokio,
                System::Spark(SparkIo::Nio),
                System::Spark(SparkIo::Epoll)
            ]
        );
        assert_eq!(spec.levels, vec![Level::Transport, Level::Rpc, Level::RpcLoop]);
        assert_eq!(
            spec.columns().len(),
            10,
            "6 systems at transport, 2 of them also at rpc and at rpc-loop"
        );
        assert_eq!(spec.workloads.len(), 7);
        let pinned = spec.workloads[6].pinned_cpu.expect("the last row is pinned");
        assert!(crate::host::allowed_cpus().contains(&pinned));
        assert_eq!(spec.results_dir, PathBuf::from("results"));
        let cli = parse(&["--repeat", "1", "--systems", "raw-tokio"]).unwrap();
        assert_eq!((cli.matrix.repeat, cli.matrix.systems.len()), (1, 1));
        let cli = parse(&["matrix", "--levels", "rpc"]).unwrap();
        let Some(Command::Matrix(args)) = cli.command else {
            panic!("not a matrix")
        };
        assert_eq!(args.spec().levels, vec![Level::Rpc]);
        let cli = parse(&["run", "--io-mode", "epoll", "--level", "rpc", "--conns", "4"]).unwrap();
        let Some(Command::Run(args)) = cli.command else {
            panic!("not a run")
        };
        assert_eq!((args.spec().level, args.spec().workload.conns), (Level::Rpc, 4));
    }
}

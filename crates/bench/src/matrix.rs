//! The default matrix: every workload on every column (a system at a level:
//! `epoll transport`, `raw-tokio`, `epoll rpc`), repeated and interleaved
//! (A B C A B C ...), written to `results/<date>-<host>-<sha>/`: `runs.jsonl`, each run's
//! histogram files in `runs/`, `matrix.json`, `machine.json`, then `summary.md` and `plots/`
//! (see [`crate::report`]).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::column::Column;
use crate::error::BenchError;
use crate::histogram_files::{self, Latency, run_stem};
use transport::IoMode;

use crate::host::{CpuList, Environment};
use crate::idle_conns;
use crate::machine::Machine;
use crate::output_error::OutputError;
use crate::record::Record;
use crate::report::{MatrixFile, RUNS_JSONL, write_outputs};
use crate::run::{Level, RunSpec, run};
use crate::table::Summary;
use crate::workload::{System, Workload};

/// What a matrix runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSpec {
    /// Workloads, one table row each.
    pub workloads: Vec<Workload>,
    /// Systems, interleaved in this order within each level of each repetition.
    pub systems: Vec<System>,
    /// Levels, interleaved in this order within each repetition (`raw-tokio` runs only at transport).
    pub levels: Vec<Level>,
    /// Runs of each workload on each system (at least 1).
    pub repeat: usize,
    /// Measurement time per run, in seconds.
    pub duration_s: f64,
    /// Warmup per run, in seconds.
    pub warmup_s: f64,
    /// Server event-loop threads per run.
    pub server_threads: usize,
    /// Client event-loop threads per run.
    pub client_threads: usize,
    /// Parent folder of the results folder.
    pub results_dir: PathBuf,
    /// Idle connections `rpc-bench idle-conns` opens to a `serve` child after the runs, for each
    /// of `epoll` and `io_uring` among the systems ([`crate::idle_conns`]); 0: none.
    pub idle_conns: usize,
}

impl MatrixSpec {
    /// The IO modes whose idle connections the matrix measures: `epoll` and `io_uring`, in the
    /// order of `systems`, when `idle_conns` is above 0.
    pub fn idle_modes(&self) -> Vec<IoMode> {
        let mut modes = Vec::new();
        for s in &self.systems {
            if let System::Transport(m @ (IoMode::Epoll | IoMode::IoUring)) = *s
                && self.idle_conns > 0
                && !modes.contains(&m)
            {
                modes.push(m);
            }
        }
        modes
    }

    /// Why the idle connections will not be measured, said before the runs rather than after
    /// them: the open-file hard limit is below what `idle_conns` connections need.
    pub fn idle_limit_warning(&self) -> Option<String> {
        let need = idle_conns::fds_needed(self.idle_conns);
        let (_, hard) = crate::fd_limit::limits();
        (!self.idle_modes().is_empty() && hard < need).then(|| {
            format!(
                "--idle-conns {} needs {need} open files but the hard limit is {hard}; the idle \
                 connections will not be measured (raise `ulimit -Hn`, or pass a smaller --idle-conns)",
                self.idle_conns
            )
        })
    }

    /// The table's columns: see [`Column::matrix`].
    pub fn columns(&self) -> Vec<Column> {
        Column::matrix(&self.systems, &self.levels)
    }

    /// The runs in execution order: per workload, `repeat` rounds of every column that runs it
    /// ([`System::runs`]); a pinned workload's runs pin server and client to its CPU.
    pub fn runs(&self) -> Vec<RunSpec> {
        let columns = self.columns();
        let mut runs = Vec::new();
        for &workload in &self.workloads {
            for _ in 0..self.repeat {
                for &Column { system, level } in &columns {
                    if !system.runs(&workload) {
                        continue; // e.g. Spark has no open loop: its cell stays empty
                    }
                    // A CPU beyond CpuList's range stays unpinned here and fails in `run`'s check.
                    let pinned = workload.pinned_cpu.and_then(CpuList::single);
                    runs.push(RunSpec {
                        system,
                        level,
                        workload,
                        duration_s: self.duration_s,
                        warmup_s: self.warmup_s,
                        server_threads: self.server_threads,
                        client_threads: self.client_threads,
                        server_cpus: pinned,
                        client_cpus: pinned,
                    });
                }
            }
        }
        runs
    }
}

/// What a finished matrix produced.
#[derive(Debug, Clone)]
pub struct MatrixOutcome {
    /// The results folder (`runs.jsonl`, `runs/`, `matrix.json`, `machine.json`, `summary.md`, `plots/`).
    pub dir: PathBuf,
    /// The table of medians.
    pub summary: Summary,
    /// Every run, in execution order.
    pub records: Vec<Record>,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Results {
        path: path.to_path_buf(),
        source,
    }
}

/// A new folder `<parent>/<YYYY-MM-DD>-<hostname>-<sha>`, with `-2`, `-3`, ... appended if taken.
fn create_results_dir(parent: &Path, env: &Environment) -> Result<PathBuf, BenchError> {
    let date = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let base = format!("{date}-{}-{}", env.host.hostname, env.git_sha);
    fs::create_dir_all(parent).map_err(write_err(parent))?;
    for n in 1.. {
        let dir = parent.join(if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(write_err(&dir)(e)),
        }
    }
    unreachable!("some suffix is free")
}

/// Runs the matrix, appending each record to `runs.jsonl` (and its histogram to
/// `runs/<index>-...`, see [`run_stem`]) as it completes; then measures idle connections
/// ([`MatrixSpec::idle_modes`], with this process's own binary as the `serve` child, so the
/// caller must be `rpc-bench`) into `idle_conns.json`; then writes `summary.md`, the plots and
/// `check.md`. `matrix.json` and `machine.json` are written first. `command` is the command
/// line, for the summary.
///
/// # Errors
/// [`BenchError::EmptyMatrix`] when no system runs at any of the levels; the
/// first run that fails; [`BenchError::Results`] or [`OutputError::Write`] when the files
/// cannot be written, [`OutputError::Plot`] when a plot cannot be drawn;
/// [`BenchError::IdleConns`] when the idle-connection measurement fails.
pub fn run_matrix(spec: &MatrixSpec, env: &Environment, command: &str) -> Result<MatrixOutcome, OutputError> {
    let columns = spec.columns();
    if columns.is_empty() {
        let join = |v: Vec<String>| v.join(",");
        return Err(BenchError::EmptyMatrix {
            systems: join(spec.systems.iter().map(System::to_string).collect()),
            levels: join(spec.levels.iter().map(Level::to_string).collect()),
        }
        .into());
    }
    if let Some(warning) = spec.idle_limit_warning() {
        eprintln!("rpc-bench: {warning}");
    }
    let dir = create_results_dir(&spec.results_dir, env)?;
    MatrixFile::new(spec, command).write(&dir)?;
    Machine::detect(env).write(&dir)?;
    let jsonl = dir.join(RUNS_JSONL);
    let mut out = BufWriter::new(File::create(&jsonl).map_err(write_err(&jsonl))?);
    let runs = spec.runs();
    let bar = ProgressBar::new(runs.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} of ~{eta} left: {msg}")
            .expect("constant template is valid"),
    );
    let mut records = Vec::with_capacity(runs.len());
    for r in &runs {
        bar.set_message(format!("{} on {}", Column::new(r.system, r.level), r.workload));
        let mut record = run(r, env)?;
        if let Some(Latency(h)) = &record.latency {
            let stem = run_stem(
                records.len() + 1,
                &record.system,
                &record.level.to_string(),
                &r.workload,
            );
            histogram_files::save(&dir.join(&stem), h)?;
            record.histogram = Some(stem);
        }
        writeln!(out, "{}", record.to_json_line()?)
            .and_then(|()| out.flush())
            .map_err(write_err(&jsonl))?;
        records.push(record);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let modes = spec.idle_modes();
    if !modes.is_empty() {
        // A failure here costs the folder its idle_conns.json entry (check.md then says NOT
        // MEASURED), not the runs already made.
        let mut results = Vec::with_capacity(modes.len());
        for mode in modes {
            eprintln!(
                "rpc-bench: {} idle connections to a {mode} serve child",
                spec.idle_conns
            );
            let measured = std::env::current_exe()
                .map_err(|e| BenchError::io("find the rpc-bench binary", e))
                .and_then(|exe| idle_conns::run(&exe, mode, spec.idle_conns, env));
            match measured {
                Ok(r) => results.push(r),
                Err(e) => eprintln!("rpc-bench: idle connections on {mode} not measured: {e}"),
            }
        }
        idle_conns::write(&dir, &results)?;
    }
    let summary = write_outputs(&dir, spec, env, command, &records)?;
    Ok(MatrixOutcome {
        dir,
        summary,
        records,
    })
}

/// What a level loads, for `summary.md`.
fn level_description(level: Level) -> &'static str {
    match level {
        Level::Transport => "the `Transport` trait: RpcRequest in, RpcResponse out, no RpcEnv",
        Level::Rpc => {
            "the RpcEnv: `ask_with` to an inline echo endpoint (it runs on the server connection's \
             event-loop thread, which writes the reply); one client-mode RpcEnv per connection"
        }
        Level::RpcLoop => {
            "the RpcEnv: `ask_with` to a concurrent echo endpoint on the MessageLoop (Spark's \
             Dispatcher model: event loop -> MessageLoop thread -> event loop); one client-mode \
             RpcEnv per connection; the server RpcEnv's MessageLoop has max(2, cores) threads"
        }
    }
}

/// The text of `summary.md`.
pub fn summary_markdown(spec: &MatrixSpec, env: &Environment, command: &str, summary: &Summary) -> String {
    let h = &env.host;
    let cpus: Vec<String> = env.cpus.allowed.iter().map(usize::to_string).collect();
    let columns: Vec<String> = spec.columns().iter().map(Column::to_string).collect();
    let levels: Vec<String> = spec
        .levels
        .iter()
        .map(|l| format!("{l} ({})", level_description(*l)))
        .collect();
    let dirty = if env.git_dirty {
        " (with uncommitted changes)"
    } else {
        ""
    };
    format!(
        "# rpc-bench matrix\n\n\
         Command: `{command}`\n\n\
         - Machine: {host}, {model}, {cores} CPUs, kernel {kernel}\n\
         - Placement: threads not pinned{pinned}; allowed CPUs {cpus}; {st} server and {ct} client event-loop threads\n\
         - Source: {sha}{dirty}\n\
         - Levels: {levels}; raw-tokio runs at the transport level only{zc}\n\
         - Load: closed loop, server and client in one process on 127.0.0.1; \
         {d} s measured after {w} s warmup per run\n\n\
         {table}\n\n\
         Figures are medians of {n} interleaved runs ({order}, ...) per workload and column. \
         Latencies in µs; ratios are of median req/s: `epoll / raw-tokio` is what the transport \
         costs against a hand-written tokio echo, `epoll rpc / transport` what the RpcEnv costs over its transport.\n{bytes}",
        pinned = if spec.workloads.iter().any(|w| w.pinned_cpu.is_some()) {
            ", except in the rows marked `pinned to CPU N`: every server and client thread on that \
             CPU (the Spark baseline, in a JVM, skips them)"
        } else {
            ""
        },
        zc = if spec.systems.contains(&System::UringZeroCopy) {
            format!(
                "; io_uring-zc is io_uring sending bodies of {} or more with `SENDMSG_ZC`, and runs \
                 only the workloads with such bodies, at the transport level",
                crate::workload::format_bytes(crate::workload::ZERO_COPY_THRESHOLD)
            )
        } else {
            String::new()
        },
        bytes = match summary.render_bytes_markdown() {
            b if b.is_empty() => b,
            b => format!("\n{b}"),
        },
        host = h.hostname,
        model = h.cpu_model,
        cores = h.cores,
        kernel = h.kernel,
        cpus = cpus.join(","),
        st = spec.server_threads,
        ct = spec.client_threads,
        sha = env.git_sha,
        d = spec.duration_s,
        w = spec.warmup_s,
        table = summary.render_markdown(),
        n = spec.repeat,
        levels = levels.join(" and "),
        order = [columns.join(", "), columns.join(", ")].join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_interleaved_per_workload() {
        let spec = MatrixSpec {
            workloads: Workload::default_matrix().to_vec(),
            systems: vec![System::Transport(IoMode::Epoll), System::RawTokio],
            levels: vec![Level::Transport, Level::Rpc],
            repeat: 3,
            duration_s: 2.0,
            warmup_s: 0.5,
            server_threads: 1,
            client_threads: 1,
            results_dir: "results".into(),
            idle_conns: 0,
        };
        let runs = spec.runs();
        assert_eq!(runs.len(), 63, "7 workloads × 3 repeats × 3 columns");
        let pinned: Vec<&RunSpec> = runs.iter().filter(|r| r.workload.pinned_cpu.is_some()).collect();
        assert_eq!(pinned.len(), 9);
        let cpu0 = CpuList::single(crate::workload::PINNED_CPU);
        assert!(
            pinned
                .iter()
                .all(|r| r.server_cpus == cpu0 && r.client_cpus == cpu0),
            "the pinned row pins both sides to its CPU"
        );
        assert!(
            runs.iter()
                .filter(|r| r.workload.pinned_cpu.is_none())
                .all(|r| r.server_cpus.is_none() && r.client_cpus.is_none())
        );
        let with_spark = MatrixSpec {
            systems: vec![
                System::Transport(IoMode::Epoll),
                System::Spark(crate::workload::SparkIo::Nio),
            ],
            levels: vec![Level::Transport],
            ..spec.clone()
        };
        assert!(
            with_spark
                .runs()
                .iter()
                .all(|r| r.workload.rate.is_none() || r.system.name() == "epoll"),
            "the Spark baseline skips the open-loop workload"
        );
        assert_eq!(with_spark.runs().len(), 7 * 3 * 2 - 2 * 3, "nor the pinned row");
        let with_zc = MatrixSpec {
            systems: vec![System::Transport(IoMode::Epoll), System::UringZeroCopy],
            ..spec.clone()
        };
        let zc_runs = with_zc.runs();
        let zc: Vec<&RunSpec> = zc_runs
            .iter()
            .filter(|r| r.system == System::UringZeroCopy)
            .collect();
        assert_eq!(
            zc.len(),
            3,
            "io_uring-zc runs the 1 MiB row only, at the transport level"
        );
        assert!(
            zc.iter()
                .all(|r| r.workload.payload == crate::workload::MIB && r.level == Level::Transport)
        );
        let names: Vec<String> = runs[..6]
            .iter()
            .map(|r| Column::new(r.system, r.level).to_string())
            .collect();
        let abc = ["epoll transport", "raw-tokio", "epoll rpc"];
        assert_eq!(names, [abc, abc].concat());
        assert!(runs[..9].iter().all(|r| r.workload == spec.workloads[0]));
        assert_eq!(runs[9].workload, spec.workloads[1]);

        let transport_only = MatrixSpec {
            levels: vec![Level::Transport],
            ..spec.clone()
        };
        assert_eq!(transport_only.runs().len(), 42);
        let summary = Summary::new(&spec.columns(), &spec.workloads, &[]);
        let md = summary_markdown(&spec, &Environment::detect(), "rpc-bench", &summary);
        assert!(
            md.contains("Levels: transport (") && md.contains(" and rpc ("),
            "{md}"
        );
        assert!(
            md.contains("(epoll transport, raw-tokio, epoll rpc, epoll transport"),
            "{md}"
        );
    }

    #[test]
    fn a_matrix_with_no_column_is_refused_before_any_file() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = MatrixSpec {
            workloads: vec![Workload::echo(64, 1, 1)],
            systems: vec![System::RawTokio],
            levels: vec![Level::Rpc],
            repeat: 1,
            duration_s: 0.0,
            warmup_s: 0.0,
            server_threads: 1,
            client_threads: 1,
            results_dir: tmp.path().join("r"),
            idle_conns: 0,
        };
        let e = run_matrix(&spec, &Environment::detect(), "rpc-bench").unwrap_err();
        assert!(
            matches!(e, OutputError::Bench(BenchError::EmptyMatrix { .. })),
            "{e}"
        );
        assert!(e.to_string().contains("raw-tokio at levels rpc"), "{e}");
        assert!(!spec.results_dir.exists());
    }

    #[test]
    fn idle_connections_are_measured_on_the_transport_modes_asked() {
        let spec = MatrixSpec {
            workloads: vec![Workload::echo(64, 1, 1)],
            systems: vec![
                System::RawTokio,
                System::Transport(IoMode::IoUring),
                System::UringZeroCopy,
                System::Transport(IoMode::Auto),
                System::Transport(IoMode::Epoll),
            ],
            levels: vec![Level::Transport],
            repeat: 1,
            duration_s: 1.0,
            warmup_s: 0.0,
            server_threads: 1,
            client_threads: 1,
            results_dir: "results".into(),
            idle_conns: 10,
        };
        assert_eq!(spec.idle_modes(), [IoMode::IoUring, IoMode::Epoll]);
        assert!(
            MatrixSpec {
                idle_conns: 0,
                ..spec.clone()
            }
            .idle_modes()
            .is_empty()
        );
        assert_eq!(spec.idle_limit_warning(), None, "10 connections fit any limit");
        let many = MatrixSpec {
            idle_conns: usize::MAX / 2,
            ..spec.clone()
        };
        assert!(
            many.idle_limit_warning()
                .is_some_and(|w| w.contains("hard limit"))
        );
        let baselines = MatrixSpec {
            systems: vec![System::RawTokio],
            ..spec
        };
        assert!(baselines.idle_modes().is_empty());
    }

    #[test]
    fn results_folders_do_not_clobber_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let env = Environment::detect();
        let a = create_results_dir(tmp.path(), &env).unwrap();
        let b = create_results_dir(tmp.path(), &env).unwrap();
        assert_ne!(a, b);
        assert!(b.to_string_lossy().ends_with("-2"));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.contains(&env.host.hostname) && name.ends_with(&env.git_sha),
            "{name}"
        );
    }
}

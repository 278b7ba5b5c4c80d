//! The default matrix: every workload on every system, repeated and
//! interleaved (A B A B ...), written to `results/<date>-<host>-<sha>/`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::BenchError;
use crate::host::Environment;
use crate::record::Record;
use crate::run::{Level, RunSpec, run};
use crate::table::Summary;
use crate::workload::{System, Workload};

/// What a matrix runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSpec {
    /// Workloads, one table row each.
    pub workloads: Vec<Workload>,
    /// Systems, interleaved in this order within each repetition.
    pub systems: Vec<System>,
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
}

impl MatrixSpec {
    /// The runs in execution order: per workload, `repeat` rounds of every system.
    pub fn runs(&self) -> Vec<RunSpec> {
        let mut runs = Vec::new();
        for &workload in &self.workloads {
            for _ in 0..self.repeat {
                for &system in &self.systems {
                    runs.push(RunSpec {
                        system,
                        level: Level::Transport,
                        workload,
                        duration_s: self.duration_s,
                        warmup_s: self.warmup_s,
                        server_threads: self.server_threads,
                        client_threads: self.client_threads,
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
    /// The folder holding `runs.jsonl` and `summary.md`.
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

/// Runs the matrix, appending each record to `runs.jsonl` as it completes,
/// then writes `summary.md`. `command` is the command line, for the summary.
///
/// # Errors
/// The first run that fails, or [`BenchError::Results`] when the files cannot be written.
pub fn run_matrix(spec: &MatrixSpec, env: &Environment, command: &str) -> Result<MatrixOutcome, BenchError> {
    let dir = create_results_dir(&spec.results_dir, env)?;
    let jsonl = dir.join("runs.jsonl");
    let mut out = BufWriter::new(File::create(&jsonl).map_err(write_err(&jsonl))?);
    let runs = spec.runs();
    let bar = ProgressBar::new(runs.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} of ~{eta} left: {msg}")
            .expect("constant template is valid"),
    );
    let mut records = Vec::with_capacity(runs.len());
    for r in &runs {
        bar.set_message(format!("{} on {}", r.system, r.workload));
        let record = run(r, env)?;
        writeln!(out, "{}", record.to_json_line()?)
            .and_then(|()| out.flush())
            .map_err(write_err(&jsonl))?;
        records.push(record);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = Summary::new(&spec.systems, &spec.workloads, &records);
    let md = dir.join("summary.md");
    fs::write(&md, summary_markdown(spec, env, command, &summary)).map_err(write_err(&md))?;
    Ok(MatrixOutcome {
        dir,
        summary,
        records,
    })
}

/// The text of `summary.md`.
pub fn summary_markdown(spec: &MatrixSpec, env: &Environment, command: &str, summary: &Summary) -> String {
    let h = &env.host;
    let cpus: Vec<String> = env.cpus.allowed.iter().map(usize::to_string).collect();
    let systems: Vec<&str> = spec.systems.iter().map(|s| s.name()).collect();
    let dirty = if env.git_dirty {
        " (with uncommitted changes)"
    } else {
        ""
    };
    format!(
        "# rpc-bench matrix\n\n\
         Command: `{command}`\n\n\
         - Machine: {host}, {model}, {cores} CPUs, kernel {kernel}\n\
         - Placement: threads not pinned; allowed CPUs {cpus}; {st} server and {ct} client event-loop threads\n\
         - Source: {sha}{dirty}\n\
         - Load: transport level, closed loop, server and client in one process on 127.0.0.1; \
         {d} s measured after {w} s warmup per run\n\n\
         {table}\n\n\
         Figures are medians of {n} interleaved runs ({order}, ...) per workload and system. \
         Latencies in µs; ratios are of median req/s.\n",
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
        order = [systems.join(", "), systems.join(", ")].join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::IoMode;

    #[test]
    fn runs_are_interleaved_per_workload() {
        let spec = MatrixSpec {
            workloads: Workload::default_matrix().to_vec(),
            systems: vec![System::Transport(IoMode::Epoll), System::RawTokio],
            repeat: 3,
            duration_s: 2.0,
            warmup_s: 0.5,
            server_threads: 1,
            client_threads: 1,
            results_dir: "results".into(),
        };
        let runs = spec.runs();
        assert_eq!(runs.len(), 30);
        let names: Vec<&str> = runs[..4].iter().map(|r| r.system.name()).collect();
        assert_eq!(names, ["epoll", "raw-tokio", "epoll", "raw-tokio"]);
        assert!(runs[..6].iter().all(|r| r.workload == spec.workloads[0]));
        assert_eq!(runs[6].workload, spec.workloads[1]);
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

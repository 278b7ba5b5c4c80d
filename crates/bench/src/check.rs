//! `rpc-bench check DIR`: issue 8's performance targets against a results folder. It reads
//! `runs.jsonl` and `idle_conns.json` and prints one line per target (per IO mode where the
//! target says "on both", per workload or level where it names several) with the measured
//! figures, their ratio, the threshold and `MET`, `NOT MET` or `NOT MEASURED` (the folder lacks
//! the runs). A report, not a test: it never changes a figure, and succeeds whatever the
//! verdicts. Every ratio is of medians over a column's runs in the same folder (same run, side
//! by side); a side with fewer than 3 runs is flagged. `rpc-bench matrix` (and `report`) write
//! the same report as `check.md`.

use std::fmt;
use std::fs;
use std::path::Path;

use comfy_table::{Table, presets};

use crate::idle_conns;
use crate::output_error::OutputError;
use crate::record::Record;
use crate::report::RUNS_JSONL;
pub use crate::targets::evaluate;

/// File name of the report in a results folder.
pub const CHECK_MD: &str = "check.md";
/// A target's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The measured figure is within the threshold.
    Met,
    /// It is not.
    NotMet,
    /// The folder lacks the runs (or idle-connection results) to tell.
    NotMeasured,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Met => "MET",
            Self::NotMet => "NOT MET",
            Self::NotMeasured => "NOT MEASURED",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The target's number in issue 8 (1–7).
    pub target: u8,
    /// What is compared: `epoll rpc / spark-epoll req/s, 64 B, 1 conn × 64 in flight`.
    pub what: String,
    /// The figures behind the value, with their units and run counts; `-` when not measured.
    pub measured: String,
    /// The value compared with the threshold (a ratio, or a figure such as bytes per connection).
    pub value: Option<f64>,
    /// The threshold, written as the comparison that must hold: `≥ 3.00×`, `≤ 16384 B`.
    pub threshold: String,
    /// The verdict.
    pub status: Status,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// One line per target and mode, in issue order.
    pub lines: Vec<Line>,
}

/// Formats a figure: whole numbers and figures of 1000 or more without decimals, else two.
/// How to name the results folder `dir` in a command run from the
/// repository's root: its parent folder and its own name
/// (`results/2026-11-29-vm-abc1234`), or its name alone when it has no
/// parent. The matrix writes under `results/`, and `check` and `report`
/// take the folder's path, not its bare name.
pub(crate) fn folder_arg(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    match dir.parent().and_then(Path::file_name) {
        Some(parent) => format!("{}/{name}", parent.to_string_lossy()),
        None => name,
    }
}

pub(crate) fn fig(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Reads a results folder and checks it.
///
/// # Errors
/// [`OutputError::NotResults`] when `dir` is not a folder or holds neither `runs.jsonl` nor
/// `idle_conns.json`; [`OutputError::Read`] when one cannot be read; [`OutputError::BadJson`]
/// for a line of `runs.jsonl` that is not a record; [`OutputError::Bench`] for an
/// `idle_conns.json` that does not parse.
pub fn check(dir: &Path) -> Result<CheckReport, OutputError> {
    if !dir.is_dir() {
        return Err(OutputError::NotResults {
            path: dir.to_path_buf(),
            reason: crate::output_error::NO_SUCH_RESULTS_FOLDER.into(),
        });
    }
    let records = read_runs(dir)?;
    let idle = idle_conns::read(dir)?;
    if records.is_none() && idle.is_none() {
        return Err(OutputError::NotResults {
            path: dir.to_path_buf(),
            reason: format!(
                "it holds neither {RUNS_JSONL} nor {}; pass a folder written by `rpc-bench matrix`",
                idle_conns::IDLE_CONNS_JSON
            ),
        });
    }
    Ok(evaluate(records.as_deref().unwrap_or_default(), idle.as_deref()))
}

/// The records of `<dir>/runs.jsonl` (histograms not loaded); `None` without the file.
fn read_runs(dir: &Path) -> Result<Option<Vec<Record>>, OutputError> {
    let path = dir.join(RUNS_JSONL);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(OutputError::Read { path, source }),
    };
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        records.push(serde_json::from_str(line).map_err(|source| OutputError::BadJson {
            path: path.clone(),
            line: i + 1,
            source,
        })?);
    }
    Ok(Some(records))
}

impl CheckReport {
    /// How many lines have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.lines.iter().filter(|l| l.status == status).count()
    }

    /// The lines as a Markdown table (one row per line), then the counts.
    pub fn render_table(&self) -> String {
        let mut t = Table::new();
        t.load_preset(presets::ASCII_MARKDOWN);
        t.set_header(["#", "target", "measured", "value", "threshold", "status"]);
        for l in &self.lines {
            let value = l.value.map_or("-".into(), |v| {
                if l.threshold.contains('×') {
                    format!("{v:.2}×")
                } else {
                    fig(v)
                }
            });
            t.add_row([
                l.target.to_string(),
                l.what.clone(),
                l.measured.clone(),
                value,
                l.threshold.clone(),
                l.status.to_string(),
            ]);
        }
        format!(
            "{t}\n\n{} met, {} not met, {} not measured.\n",
            self.count(Status::Met),
            self.count(Status::NotMet),
            self.count(Status::NotMeasured)
        )
    }

    /// The text of `check.md` for the folder `dir`.
    pub fn render_markdown(&self, dir: &Path) -> String {
        let name = folder_arg(dir);
        format!(
            "# Issue 8 targets\n\n\
             `rpc-bench check {name}`: each target of issue 8 against this folder's `{RUNS_JSONL}` and \
             `{}`. Ratios are of medians over each column's runs, taken side by side in this one \
             matrix (interleaved A B A B); a latency ratio is ours over the baseline's, so lower is \
             better. A report, not a test: `NOT MET` changes no figure.\n\n{}",
            idle_conns::IDLE_CONNS_JSON,
            self.render_table()
        )
    }

    /// Writes `check.md` into `dir`.
    ///
    /// # Errors
    /// [`OutputError::Write`].
    pub fn write(&self, dir: &Path) -> Result<(), OutputError> {
        let path = dir.join(CHECK_MD);
        fs::write(&path, self.render_markdown(dir)).map_err(OutputError::write(&path))
    }
}

#[cfg(test)]
mod tests {
    use transport::IoMode;

    use super::*;
    use crate::host::{CpuList, Environment, RunPlacement};
    use crate::idle_conns::IdleConns;
    use crate::record::tests::record_at;
    use crate::run::Level;
    use crate::workload::System;
    use crate::workload::{MIB, Workload};

    const EPOLL: System = System::Transport(IoMode::Epoll);
    const URING: System = System::Transport(IoMode::IoUring);
    const SPARK: System = System::Spark(crate::workload::SparkIo::Epoll);

    #[test]
    fn a_folder_is_named_with_its_parent_as_typed_from_the_root() {
        assert_eq!(
            folder_arg(Path::new("results/2026-11-29-vm-abc1234")),
            "results/2026-11-29-vm-abc1234"
        );
        assert_eq!(
            folder_arg(Path::new("/work/main/results/2026-11-29-vm-abc1234")),
            "results/2026-11-29-vm-abc1234"
        );
        assert_eq!(
            folder_arg(Path::new("2026-11-29-vm-abc1234")),
            "2026-11-29-vm-abc1234"
        );
    }

    /// `n` records of `system` at `level` on `w`, each at `rps` req/s (and as many MB/s), p50
    /// `p50` µs, `allocs` heap allocations per request.
    fn runs(
        system: System,
        level: Level,
        w: Workload,
        n: usize,
        rps: f64,
        p50: u64,
        allocs: f64,
    ) -> Vec<Record> {
        (0..n)
            .map(|_| {
                let mut r = record_at(system, level, w, 100);
                (r.rps, r.mb_per_s, r.p50_us, r.p99_us) = (rps, rps, p50, p50 * 2);
                r.allocs_per_op = Some(allocs);
                if let Some(cpu) = w.pinned_cpu {
                    let l = CpuList::single(cpu);
                    r.cpus = RunPlacement::new(&Environment::detect().cpus, l, l);
                }
                assert_eq!(r.workload(), w);
                r
            })
            .collect()
    }

    fn idle(mode: &str, connections: usize, rss_per_conn: f64, buffers_per_conn: f64) -> IdleConns {
        let env = Environment::detect();
        IdleConns {
            io_mode: mode.into(),
            connections,
            server_connections: connections as u64 + 8,
            rss_before_bytes: 10 << 20,
            rss_after_bytes: (10 << 20) + (rss_per_conn * connections as f64) as u64,
            rss_per_conn_bytes: rss_per_conn,
            pool_buffers_before: 1,
            pool_buffers_after: 1 + (buffers_per_conn * connections as f64) as u64,
            buffers_per_conn,
            open_s: 1.0,
            host: env.host,
            git_sha: env.git_sha,
            timestamp: "2026-11-29T12:00:00Z".into(),
        }
    }

    /// The one line whose description starts with `what`.
    fn line<'a>(r: &'a CheckReport, what: &str) -> &'a Line {
        let found: Vec<&Line> = r.lines.iter().filter(|l| l.what.starts_with(what)).collect();
        assert_eq!(found.len(), 1, "{what:?} in {:#?}", r.lines);
        found[0]
    }

    /// A folder made of records built here: every target that has its runs is judged from
    /// their medians, the others say NOT MEASURED; nothing is read from a committed file.
    #[test]
    fn a_fixture_folder_is_judged_target_by_target() {
        let small = Workload::echo(64, 1, 64);
        let one = Workload::echo(64, 1, 1);
        let pinned = one.pinned_to(0);
        let bulk = Workload::echo(MIB, 1, 4);
        let (t, rpc) = (Level::Transport, Level::Rpc);
        let mut records = Vec::new();
        records.extend(runs(SPARK, t, small, 3, 100.0, 50, 0.0));
        records.extend(runs(System::RawTokio, t, small, 3, 1000.0, 10, 0.0));
        records.extend(runs(EPOLL, rpc, small, 3, 900.0, 10, 0.5));
        records.extend(runs(URING, rpc, small, 1, 700.0, 10, 1.5));
        records.extend(runs(EPOLL, t, small, 3, 1100.0, 10, 0.004));
        // Medians: 1100 of 1000, 1100, 1200.
        records.extend(runs(URING, t, small, 1, 1000.0, 10, 3.0));
        records.extend(runs(URING, t, small, 1, 1200.0, 10, 3.0));
        records.extend(runs(URING, t, small, 1, 1100.0, 10, 3.0));
        records.extend(runs(System::RawTokio, t, pinned, 3, 500.0, 20, 0.0));
        records.extend(runs(EPOLL, t, pinned, 3, 500.0, 30, 0.0));
        records.extend(runs(URING, t, pinned, 3, 500.0, 40, 0.0));
        records.extend(runs(SPARK, t, one, 3, 500.0, 50, 0.0));
        records.extend(runs(EPOLL, t, one, 3, 500.0, 40, 0.0));
        records.extend(runs(EPOLL, t, bulk, 3, 10.0, 900, 0.0));
        records.extend(runs(System::UringZeroCopy, t, bulk, 3, 12.0, 800, 0.0));

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let jsonl: String = records.iter().map(|r| r.to_json_line().unwrap() + "\n").collect();
        fs::write(dir.join(RUNS_JSONL), jsonl).unwrap();
        idle_conns::write(
            dir,
            &[
                idle("epoll", 10_000, 2000.0, 0.0),
                idle("io_uring", 200, 900.0, 1.0),
            ],
        )
        .unwrap();
        let r = check(dir).unwrap();
        assert_eq!(r.lines.len(), 36, "{:#?}", r.lines);
        assert_eq!(
            r.count(Status::Met) + r.count(Status::NotMet) + r.count(Status::NotMeasured),
            36
        );

        let l = line(&r, "epoll rpc / spark-epoll req/s, 64 B, 1 conn × 64");
        assert_eq!((l.target, l.value, l.status), (1, Some(9.0), Status::Met));
        assert_eq!(l.measured, "900 vs 100 req/s (medians of 3 and 3 runs)");
        let l = line(&r, "epoll rpc / raw-tokio req/s");
        assert_eq!((l.value, l.status), (Some(0.9), Status::Met));
        let l = line(&r, "io_uring rpc / raw-tokio req/s");
        assert_eq!((l.value, l.status), (Some(0.7), Status::NotMet));
        assert!(l.measured.contains("fewer than 3 runs"), "{}", l.measured);

        let l = line(&r, "io_uring transport / raw-tokio req/s, 64 B, 1 conn × 64");
        assert_eq!((l.target, l.value, l.status), (2, Some(1.1), Status::Met));
        let l = line(&r, "epoll transport / raw-tokio req/s, 4 KiB");
        assert_eq!((l.value, l.status), (None, Status::NotMeasured));
        assert!(
            l.measured.contains("no runs of epoll transport nor raw-tokio"),
            "{}",
            l.measured
        );

        let l = line(
            &r,
            "epoll transport / raw-tokio p50 µs, 64 B, 1 conn × 1 in flight, pinned to CPU 0",
        );
        assert_eq!((l.target, l.value, l.status), (3, Some(1.5), Status::Met));
        let l = line(
            &r,
            "io_uring transport / raw-tokio p50 µs, 64 B, 1 conn × 1 in flight, pinned",
        );
        assert_eq!((l.value, l.status), (Some(2.0), Status::NotMet));
        let l = line(
            &r,
            "epoll transport / spark-epoll p99 µs, 64 B, 1 conn × 1 in flight",
        );
        assert_eq!((l.value, l.status), (Some(0.8), Status::Met));
        let l = line(&r, "io_uring transport / spark-epoll p50 µs");
        assert_eq!(l.status, Status::NotMeasured);

        let l = line(&r, "io_uring-zc transport / epoll transport MB/s, 1 MiB");
        assert_eq!((l.target, l.status), (4, Status::Met));
        assert!((l.value.unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(
            line(&r, "epoll transport / spark-epoll MB/s").status,
            Status::NotMeasured
        );
        assert_eq!(
            line(&r, "io_uring transport / epoll transport req/s, 64 B, 256").target,
            5
        );

        let l = line(&r, "epoll transport heap allocations");
        assert_eq!(
            (l.target, l.value, l.status),
            (6, Some(0.0), Status::Met),
            "0.004 shows as 0.00"
        );
        let l = line(&r, "io_uring transport heap allocations");
        assert_eq!((l.value, l.status), (Some(3.0), Status::NotMet));
        let l = line(&r, "io_uring rpc heap allocations");
        assert_eq!((l.value, l.status), (Some(1.5), Status::NotMet));
        assert_eq!(line(&r, "epoll rpc heap allocations").status, Status::Met);

        let l = line(&r, "epoll server RSS growth");
        assert_eq!((l.target, l.value, l.status), (7, Some(2000.0), Status::Met));
        let l = line(&r, "io_uring server RSS growth");
        assert_eq!(
            l.status,
            Status::NotMeasured,
            "200 connections do not measure the 10,000 target"
        );
        assert!(l.measured.contains("(not 10000)"), "{}", l.measured);
        assert_eq!(line(&r, "epoll pool buffers").status, Status::Met);
        assert_eq!(line(&r, "io_uring pool buffers").status, Status::NotMet);

        let md = r.render_markdown(dir);
        assert!(md.starts_with("# Issue 8 targets"), "{md}");
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| ")).count(),
            37,
            "a header and 36 lines: {md}"
        );
        let row: Vec<&str> = md
            .lines()
            .find(|l| l.contains("epoll rpc / spark-epoll req/s"))
            .unwrap()
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(
            row[1..7],
            [
                "1",
                "epoll rpc / spark-epoll req/s, 64 B, 1 conn × 64 in flight",
                "900 vs 100 req/s (medians of 3 and 3 runs)",
                "9.00×",
                "≥ 3.00×",
                "MET"
            ]
        );
        r.write(dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join(CHECK_MD)).unwrap(), md);
        // Checking changes no figure of the folder.
        assert_eq!(check(dir).unwrap(), r);
    }

    #[test]
    fn a_folder_missing_its_files_is_reported_or_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let e = check(&tmp.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("no such folder"), "{e}");
        // A run's bare name, typed from the repository's root, points to results/.
        assert!(e.to_string().contains("give results/<run>"), "{e}");
        let e = check(tmp.path()).unwrap_err();
        assert!(
            e.to_string().contains("neither runs.jsonl nor idle_conns.json"),
            "{e}"
        );
        idle_conns::write(tmp.path(), &[idle("epoll", 10_000, 20_000.0, 0.0)]).unwrap();
        let r = check(tmp.path()).unwrap();
        assert_eq!(line(&r, "epoll server RSS growth").status, Status::NotMet);
        assert_eq!(
            r.count(Status::NotMeasured),
            34,
            "every run-based line, and io_uring's two"
        );
        fs::write(tmp.path().join(RUNS_JSONL), "{\"system\": 1}\n").unwrap();
        let e = check(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("runs.jsonl, line 1"), "{e}");
    }
}

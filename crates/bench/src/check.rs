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

use crate::idle_conns::{self, HOLDS_BUFFER_PER_CONN, IdleConns};
use crate::output_error::OutputError;
use crate::record::Record;
use crate::report::RUNS_JSONL;
use crate::run::Level;
use crate::table::median;
use crate::workload::{KIB, MIB, Workload};

/// File name of the report in a results folder.
pub const CHECK_MD: &str = "check.md";
/// Runs per side the targets ask medians over.
pub const MIN_RUNS: usize = 3;
/// Idle connections target 7 is stated at.
pub const IDLE_TARGET_CONNECTIONS: usize = 10_000;
/// Target 7's bound on RSS growth per idle connection, in bytes.
pub const IDLE_RSS_PER_CONN: f64 = 16.0 * KIB as f64;

/// This project's IO modes, each target checked on both.
const MODES: [&str; 2] = ["epoll", "io_uring"];

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

/// How a value must compare with its bound.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// At least this ratio.
    AtLeast(f64),
    /// At most this ratio.
    AtMost(f64),
}

impl Bound {
    fn holds(self, v: f64) -> bool {
        match self {
            Self::AtLeast(b) => v >= b,
            Self::AtMost(b) => v <= b,
        }
    }

    fn ratio_text(self) -> String {
        match self {
            Self::AtLeast(b) => format!("≥ {b:.2}×"),
            Self::AtMost(b) => format!("≤ {b:.2}×"),
        }
    }
}

/// A column of the folder: a system (as records name it) at a level.
#[derive(Debug, Clone, Copy)]
struct Col<'a> {
    system: &'a str,
    level: Level,
}

impl fmt::Display for Col<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.level, self.system) {
            (Level::Rpc, s) => write!(f, "{s} rpc"),
            (Level::Transport, s @ ("epoll" | "io_uring" | "io_uring-zc")) => write!(f, "{s} transport"),
            (Level::Transport, s) => f.write_str(s),
        }
    }
}

fn col(system: &str, level: Level) -> Col<'_> {
    Col { system, level }
}

fn transport(system: &str) -> Col<'_> {
    col(system, Level::Transport)
}

/// A metric read from each record: its name with unit, and the getter.
type Metric = (&'static str, fn(&Record) -> f64);
const RPS: Metric = ("req/s", |r| r.rps);
const MBPS: Metric = ("MB/s", |r| r.mb_per_s);
const P50: Metric = ("p50 µs", |r| r.p50_us as f64);
const P99: Metric = ("p99 µs", |r| r.p99_us as f64);

/// The records of one folder, and the lines built from them.
struct Checker<'a> {
    records: &'a [Record],
    lines: Vec<Line>,
}

impl Checker<'_> {
    /// The median of `metric` over `c`'s runs of `w`, and how many runs.
    fn median(&self, c: Col<'_>, w: &Workload, metric: Metric) -> Option<(f64, usize)> {
        let values: Vec<f64> = self
            .records
            .iter()
            .filter(|r| r.system == c.system && r.level == c.level && r.workload() == *w)
            .map(metric.1)
            .collect();
        let n = values.len();
        median(values).map(|m| (m, n))
    }

    /// A line comparing `over / under` on `w` by `metric` against `bound`.
    fn ratio(
        &mut self,
        target: u8,
        over: Col<'_>,
        under: Col<'_>,
        w: &Workload,
        metric: Metric,
        bound: Bound,
    ) {
        let what = format!("{over} / {under} {}, {w}", metric.0);
        let line = match (self.median(over, w, metric), self.median(under, w, metric)) {
            (Some((a, na)), Some((b, nb))) if b > 0.0 => {
                let v = a / b;
                let few = if na.min(nb) < MIN_RUNS {
                    format!("; fewer than {MIN_RUNS} runs")
                } else {
                    String::new()
                };
                Line {
                    target,
                    what,
                    measured: format!(
                        "{} vs {} {} (medians of {na} and {nb} runs{few})",
                        fig(a),
                        fig(b),
                        metric.0
                    ),
                    value: Some(v),
                    threshold: bound.ratio_text(),
                    status: if bound.holds(v) {
                        Status::Met
                    } else {
                        Status::NotMet
                    },
                }
            }
            (a, b) => {
                let missing: Vec<String> = [(a, over), (b, under)]
                    .iter()
                    .filter(|(m, _)| m.is_none_or(|(v, _)| v <= 0.0))
                    .map(|(_, c)| c.to_string())
                    .collect();
                not_measured(
                    target,
                    what,
                    bound.ratio_text(),
                    &format!("no runs of {}", missing.join(" nor ")),
                )
            }
        };
        self.lines.push(line);
    }

    /// Target 6: the worst median `allocs_per_op` of `c` over the workloads it ran.
    fn allocs(&mut self, c: Col<'_>, most: f64) {
        let mut workloads: Vec<Workload> = Vec::new();
        for r in self
            .records
            .iter()
            .filter(|r| r.system == c.system && r.level == c.level)
        {
            if !workloads.contains(&r.workload()) {
                workloads.push(r.workload());
            }
        }
        let worst = workloads
            .iter()
            .filter_map(|w| {
                let values: Vec<f64> = self
                    .records
                    .iter()
                    .filter(|r| r.system == c.system && r.level == c.level && r.workload() == *w)
                    .filter_map(|r| r.allocs_per_op)
                    .collect();
                median(values).map(|m| (m, *w))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let what = format!("{c} heap allocations per request, worst workload");
        let threshold = format!("≤ {most:.0}");
        let line = match worst {
            Some((v, w)) => {
                // Compared as shown, to two decimals: 0.004 allocations per request is 0.00.
                let shown = (v * 100.0).round() / 100.0;
                Line {
                    target: 6,
                    what,
                    measured: format!("{v:.2} on {w} (median; {} workloads)", workloads.len()),
                    value: Some(shown),
                    threshold,
                    status: if shown <= most {
                        Status::Met
                    } else {
                        Status::NotMet
                    },
                }
            }
            None => not_measured(6, what, threshold, &format!("no {c} run counted allocations")),
        };
        self.lines.push(line);
    }
}

/// Formats a figure: whole numbers and figures of 1000 or more without decimals, else two.
fn fig(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn not_measured(target: u8, what: String, threshold: String, why: &str) -> Line {
    Line {
        target,
        what,
        measured: format!("- ({why})"),
        value: None,
        threshold,
        status: Status::NotMeasured,
    }
}

/// Target 7 from the idle-connection results of `mode` (the last one, if several).
fn idle_lines(idle: Option<&[IdleConns]>, mode: &str) -> [Line; 2] {
    let rss_what = format!("{mode} server RSS growth per idle connection");
    let rss_threshold = format!("≤ {IDLE_RSS_PER_CONN:.0} B at {IDLE_TARGET_CONNECTIONS} conns");
    let buf_what = format!("{mode} pool buffers held per idle connection");
    let buf_threshold = format!("< {HOLDS_BUFFER_PER_CONN} (no receive buffer)");
    let Some(r) = idle.and_then(|all| all.iter().rev().find(|r| r.io_mode == mode)) else {
        let why = format!("no {mode} result in {}", idle_conns::IDLE_CONNS_JSON);
        return [
            not_measured(7, rss_what, rss_threshold, &why),
            not_measured(7, buf_what, buf_threshold, &why),
        ];
    };
    let rss_measured = format!(
        "{:.0} B: {:.0} KiB → {:.0} KiB over {} conns",
        r.rss_per_conn_bytes,
        r.rss_before_bytes as f64 / 1024.0,
        r.rss_after_bytes as f64 / 1024.0,
        r.connections
    );
    let rss_status = if r.connections != IDLE_TARGET_CONNECTIONS {
        Status::NotMeasured
    } else if r.rss_per_conn_bytes <= IDLE_RSS_PER_CONN {
        Status::Met
    } else {
        Status::NotMet
    };
    let rss = Line {
        target: 7,
        what: rss_what,
        measured: if rss_status == Status::NotMeasured {
            format!("{rss_measured} (not {IDLE_TARGET_CONNECTIONS})")
        } else {
            rss_measured
        },
        value: Some(r.rss_per_conn_bytes),
        threshold: rss_threshold,
        status: rss_status,
    };
    let buffers = Line {
        target: 7,
        what: buf_what,
        measured: format!(
            "{:.2}: {} → {} buffers in use over {} conns",
            r.buffers_per_conn, r.pool_buffers_before, r.pool_buffers_after, r.connections
        ),
        value: Some(r.buffers_per_conn),
        threshold: buf_threshold,
        status: if r.holds_receive_buffer() {
            Status::NotMet
        } else {
            Status::Met
        },
    };
    [rss, buffers]
}

/// The report for `records` (a folder's runs) and its idle-connection results.
pub fn evaluate(records: &[Record], idle: Option<&[IdleConns]>) -> CheckReport {
    let mut c = Checker {
        records,
        lines: Vec::new(),
    };
    let (spark, raw) = (transport("spark-epoll"), transport("raw-tokio"));
    let small = Workload::echo(64, 1, 64);
    // 1. RPC level, 64 B × 64 in flight: ≥ 3× spark-epoll and ≥ 0.8× raw-tokio, both modes.
    for m in MODES {
        c.ratio(1, col(m, Level::Rpc), spark, &small, RPS, Bound::AtLeast(3.0));
        c.ratio(1, col(m, Level::Rpc), raw, &small, RPS, Bound::AtLeast(0.8));
    }
    // 2. Transport level, workloads 2–5 of the default matrix: ≥ 1.0× raw-tokio, both modes.
    let two_to_five = [
        small,
        Workload::echo(4 * KIB, 1, 16),
        Workload::echo(MIB, 1, 4),
        Workload::echo(64, 256, 1),
    ];
    for m in MODES {
        for w in &two_to_five {
            c.ratio(2, transport(m), raw, w, RPS, Bound::AtLeast(1.0));
        }
    }
    // 3. Latency at 64 B × 1: p50 and p99 at most spark-epoll's unpinned; pinned to one CPU,
    // p50 within 1.5× of raw-tokio pinned alike. On both modes, at both levels.
    let one = Workload::echo(64, 1, 1);
    let pinned_cpu = records.iter().find_map(|r| {
        let w = r.workload();
        (w.pinned_cpu.is_some()
            && Workload {
                pinned_cpu: None,
                ..w
            } == one)
            .then_some(w)
    });
    let pinned = pinned_cpu.unwrap_or(one.pinned_to(crate::workload::PINNED_CPU));
    for level in [Level::Transport, Level::Rpc] {
        for m in MODES {
            let ours = col(m, level);
            c.ratio(3, ours, spark, &one, P50, Bound::AtMost(1.0));
            c.ratio(3, ours, spark, &one, P99, Bound::AtMost(1.0));
            c.ratio(3, ours, raw, &pinned, P50, Bound::AtMost(1.5));
        }
    }
    // 4. Bulk, 1 MiB × 4: ≥ 2× spark-epoll in bytes/s; io_uring with zero-copy ≥ 1.1× epoll.
    let bulk = Workload::echo(MIB, 1, 4);
    for m in MODES {
        c.ratio(4, transport(m), spark, &bulk, MBPS, Bound::AtLeast(2.0));
    }
    c.ratio(
        4,
        transport("io_uring-zc"),
        transport("epoll"),
        &bulk,
        MBPS,
        Bound::AtLeast(1.1),
    );
    // 5. Fan-in, 256 connections × 1: io_uring ≥ 1.2× epoll.
    let fan_in = Workload::echo(64, 256, 1);
    c.ratio(
        5,
        transport("io_uring"),
        transport("epoll"),
        &fan_in,
        RPS,
        Bound::AtLeast(1.2),
    );
    // 6. Heap allocations per request: 0 at the transport level, ≤ 1 at the rpc level.
    for (level, most) in [(Level::Transport, 0.0), (Level::Rpc, 1.0)] {
        for m in MODES {
            c.allocs(col(m, level), most);
        }
    }
    // 7. Idle connections: no receive buffer; ≤ 16 KiB RSS each at 10,000.
    for m in MODES {
        c.lines.extend(idle_lines(idle, m));
    }
    CheckReport { lines: c.lines }
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
            reason: "no such folder".into(),
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
        let name = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
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
    use crate::record::tests::record_at;
    use crate::workload::System;

    const EPOLL: System = System::Transport(IoMode::Epoll);
    const URING: System = System::Transport(IoMode::IoUring);
    const SPARK: System = System::Spark(crate::workload::SparkIo::Epoll);

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

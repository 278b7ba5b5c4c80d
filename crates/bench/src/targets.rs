//! Issue 8's performance targets: what each compares (columns, workload, metric) and the
//! bound it must meet, judged from a folder's run records and idle-connection results by
//! [`evaluate`]. Every ratio is of medians over a column's runs (same folder, side by side);
//! a side with fewer than [`MIN_RUNS`] runs is flagged. [`crate::check`] reads the folder and
//! renders the report.

use std::fmt;

use crate::check::{CheckReport, Line, Status, fig};
use crate::idle_conns::{self, HOLDS_BUFFER_PER_CONN, IdleConns};
use crate::record::Record;
use crate::run::Level;
use crate::table::median;
use crate::workload::{KIB, MIB, Workload};

/// Runs per side the targets ask medians over.
pub const MIN_RUNS: usize = 3;
/// Idle connections target 7 is stated at.
pub const IDLE_TARGET_CONNECTIONS: usize = 10_000;
/// Target 7's bound on RSS growth per idle connection, in bytes.
pub const IDLE_RSS_PER_CONN: f64 = 16.0 * KIB as f64;

/// This project's IO modes, each target checked on both.
const MODES: [&str; 2] = ["epoll", "io_uring"];

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
            (Level::RpcLoop, s) => write!(f, "{s} rpc-loop"),
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

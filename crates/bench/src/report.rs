//! What a results folder shows a person, written by `rpc-bench matrix` and rewritten from the
//! folder's own files by `rpc-bench report DIR`: `summary.md` (the table, the machine, the idle
//! connections, links to the plots and to `check.md`), `check.md` (issue 8's targets, see
//! [`crate::check`]) and `plots/<workload>-latency.svg`, `plots/<workload>-throughput.svg`.
//!
//! `report` reads `matrix.json` (what ran, the command), `machine.json`, `runs.jsonl` and each
//! run's `.hist` file, so the figures it writes are the ones the matrix measured.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::check::{CHECK_MD, Status};
use crate::column::Column;
use crate::histogram_files::{self, HIST, Latency, workload_slug};
use crate::host::Environment;
use crate::idle_conns::IdleConns;
use crate::machine::Machine;
use crate::matrix::{MatrixSpec, summary_markdown};
use crate::measure::new_histogram;
use crate::output_error::OutputError;
use crate::plot;
use crate::record::Record;
use crate::run::Level;
use crate::table::{Summary, runs_of};
use crate::workload::{System, Workload};

/// File name of the matrix description in a results folder.
pub const MATRIX_JSON: &str = "matrix.json";
/// File name of the run records (one JSON object per line).
pub const RUNS_JSONL: &str = "runs.jsonl";
/// File name of the summary.
pub const SUMMARY_MD: &str = "summary.md";
/// Folder of the plots, inside a results folder.
pub const PLOTS: &str = "plots";

/// `matrix.json`: what a matrix ran and the command that ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixFile {
    /// The command line, as `summary.md` quotes it.
    pub command: String,
    /// Systems, by name (`epoll`, `raw-tokio`, ...), in interleaving order.
    pub systems: Vec<String>,
    /// Levels, in interleaving order.
    pub levels: Vec<Level>,
    /// Workloads, in table order.
    pub workloads: Vec<Workload>,
    /// Runs of each workload in each column.
    pub repeat: usize,
    /// Measurement time asked for per run, in seconds.
    pub duration_s: f64,
    /// Warmup per run, in seconds.
    pub warmup_s: f64,
    /// Server event-loop threads per run.
    pub server_threads: usize,
    /// Client event-loop threads per run.
    pub client_threads: usize,
    /// Idle connections measured per IO mode (`idle_conns.json`); 0 when none (and in folders
    /// written before it existed).
    #[serde(default)]
    pub idle_conns: usize,
}

impl MatrixFile {
    /// The description of `spec`, run by `command`.
    pub fn new(spec: &MatrixSpec, command: &str) -> Self {
        Self {
            command: command.to_string(),
            systems: spec.systems.iter().map(System::to_string).collect(),
            levels: spec.levels.clone(),
            workloads: spec.workloads.clone(),
            repeat: spec.repeat,
            duration_s: spec.duration_s,
            warmup_s: spec.warmup_s,
            server_threads: spec.server_threads,
            client_threads: spec.client_threads,
            idle_conns: spec.idle_conns,
        }
    }

    /// The spec it describes, with `dir`'s parent as the results folder's parent.
    ///
    /// # Errors
    /// [`OutputError::NotResults`] when a system name is unknown to this build.
    pub fn spec(&self, dir: &Path) -> Result<MatrixSpec, OutputError> {
        let systems = self
            .systems
            .iter()
            .map(|s| s.parse::<System>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| OutputError::NotResults {
                path: dir.to_path_buf(),
                reason: format!("{MATRIX_JSON}: {reason}"),
            })?;
        Ok(MatrixSpec {
            workloads: self.workloads.clone(),
            systems,
            levels: self.levels.clone(),
            repeat: self.repeat,
            duration_s: self.duration_s,
            warmup_s: self.warmup_s,
            server_threads: self.server_threads,
            client_threads: self.client_threads,
            results_dir: dir.parent().map_or_else(PathBuf::new, Path::to_path_buf),
            idle_conns: self.idle_conns,
        })
    }

    /// Writes `<dir>/matrix.json`.
    ///
    /// # Errors
    /// [`OutputError::Write`].
    pub fn write(&self, dir: &Path) -> Result<(), OutputError> {
        let path = dir.join(MATRIX_JSON);
        let text = serde_json::to_string_pretty(self).expect("plain fields serialize");
        fs::write(&path, text + "\n").map_err(OutputError::write(&path))
    }

    /// Reads `<dir>/matrix.json`.
    ///
    /// # Errors
    /// [`OutputError::NotResults`] when `dir` or the file is missing, [`OutputError::BadJson`] when
    /// it does not parse.
    pub fn read(dir: &Path) -> Result<Self, OutputError> {
        if !dir.is_dir() {
            return Err(OutputError::NotResults {
                path: dir.to_path_buf(),
                reason: crate::output_error::NO_SUCH_RESULTS_FOLDER.into(),
            });
        }
        let path = dir.join(MATRIX_JSON);
        let text = fs::read_to_string(&path).map_err(|e| OutputError::NotResults {
            path: dir.to_path_buf(),
            reason: format!(
                "cannot read {MATRIX_JSON} ({e}); folders written before it existed cannot be re-rendered"
            ),
        })?;
        serde_json::from_str(&text).map_err(|source| OutputError::BadJson {
            path,
            line: 1,
            source,
        })
    }
}

/// The relative paths of a workload's plots: `(latency, throughput)`.
pub fn plot_paths(w: &Workload) -> (String, String) {
    let slug = workload_slug(w);
    (
        format!("{PLOTS}/{slug}-latency.svg"),
        format!("{PLOTS}/{slug}-throughput.svg"),
    )
}

/// The `## Plots` section of `summary.md`: each workload's two plots, embedded.
pub fn plots_markdown(workloads: &[Workload]) -> String {
    let mut md = String::from(
        "\n## Plots\n\nLatency percentile distributions (each column's runs merged) and median throughput.\n",
    );
    for w in workloads {
        let (latency, throughput) = plot_paths(w);
        md.push_str(&format!(
            "\n### {w}\n\n![{w}: latency]({latency}) ![{w}: throughput]({throughput})\n\n\
             [latency]({latency}) · [throughput]({throughput})\n"
        ));
    }
    md
}

/// Writes the plots of every workload into `<dir>/plots/`, from `records` (each with its
/// in-memory [`Latency`]; a record without one adds nothing to the latency curves).
///
/// # Errors
/// [`OutputError::Plot`] or [`OutputError::Write`].
pub fn write_plots(dir: &Path, summary: &Summary, records: &[Record]) -> Result<(), OutputError> {
    let plots = dir.join(PLOTS);
    fs::create_dir_all(&plots).map_err(OutputError::write(&plots))?;
    for row in &summary.rows {
        let (latency_path, throughput_path) = plot_paths(&row.workload);
        let curves: Vec<(String, hdrhistogram::Histogram<u64>)> = summary
            .columns
            .iter()
            .filter_map(|&c| {
                let mut merged = new_histogram();
                for r in runs_of(c, row.workload, records) {
                    if let Some(Latency(h)) = &r.latency {
                        merged.add(h).expect("histograms share their bounds");
                    }
                }
                (!merged.is_empty()).then(|| (c.to_string(), merged))
            })
            .collect();
        let bars: Vec<(String, f64)> = summary
            .columns
            .iter()
            .zip(&row.cells)
            .filter_map(|(c, cell)| cell.map(|cell| (c.to_string(), cell.rps)))
            .collect();
        let w = row.workload;
        let svg = |path: &str, drawn: Result<String, String>| {
            let path = dir.join(path);
            let svg = drawn.map_err(|reason| OutputError::Plot {
                path: path.clone(),
                reason,
            })?;
            fs::write(&path, svg).map_err(OutputError::write(&path))
        };
        svg(
            &latency_path,
            plot::latency_svg(&format!("{w}: latency"), &curves),
        )?;
        svg(
            &throughput_path,
            plot::throughput_svg(&format!("{w}: throughput"), &bars),
        )?;
    }
    Ok(())
}

/// The `## Idle connections` section of `summary.md`, from `idle_conns.json`'s results (none:
/// a line saying so).
pub fn idle_markdown(results: &[IdleConns]) -> String {
    if results.is_empty() {
        return format!(
            "\n## Idle connections\n\nNot measured: `{}` is empty (the matrix said why on stderr).\n",
            crate::idle_conns::IDLE_CONNS_JSON
        );
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    t.set_header([
        "server",
        "idle connections",
        "server RSS before → after",
        "RSS per idle connection",
        "pool buffers in use before → after",
        "buffers per idle connection",
    ]);
    for r in results {
        t.add_row([
            r.io_mode.clone(),
            r.connections.to_string(),
            format!(
                "{:.0} KiB → {:.0} KiB",
                r.rss_before_bytes as f64 / 1024.0,
                r.rss_after_bytes as f64 / 1024.0
            ),
            format!("{:.0} B", r.rss_per_conn_bytes),
            format!("{} → {}", r.pool_buffers_before, r.pool_buffers_after),
            format!("{:.2}", r.buffers_per_conn),
        ]);
    }
    format!(
        "\n## Idle connections\n\n\
         A `rpc-bench serve --level transport` child per IO mode; this process opens the connections, \
         sends one {body} B request on each, reads its answer and leaves them idle. RSS is the \
         child's VmRSS after {warm} warmup connections and with all of them open \
         (`rpc-bench idle-conns`, [`{file}`]({file})).\n\n{t}\n",
        body = crate::idle_conns::REQUEST_BODY,
        warm = crate::idle_conns::WARMUP_CONNECTIONS,
        file = crate::idle_conns::IDLE_CONNS_JSON,
    )
}

/// Writes `summary.md`, the plots and `check.md` of a results folder (with its
/// `idle_conns.json`, when it has one); returns the table.
///
/// # Errors
/// [`OutputError::Write`] or [`OutputError::Plot`]; [`OutputError::Bench`] when
/// `idle_conns.json` exists but does not parse.
pub fn write_outputs(
    dir: &Path,
    spec: &MatrixSpec,
    env: &Environment,
    command: &str,
    records: &[Record],
) -> Result<Summary, OutputError> {
    let summary = Summary::new(&spec.columns(), &spec.workloads, records);
    write_plots(dir, &summary, records)?;
    let idle = crate::idle_conns::read(dir)?;
    let check = crate::check::evaluate(records, idle.as_deref());
    check.write(dir)?;
    let md = dir.join(SUMMARY_MD);
    let mut text = summary_markdown(spec, env, command, &summary);
    if let Some(idle) = &idle {
        text.push_str(&idle_markdown(idle));
    }
    let name = crate::check::folder_arg(dir);
    text.push_str(&format!(
        "\n## Targets\n\n[`{CHECK_MD}`]({CHECK_MD}) checks issue 8's performance targets against these \
         figures: {} met, {} not met, {} not measured (`rpc-bench check {name}` prints it again).\n",
        check.count(Status::Met),
        check.count(Status::NotMet),
        check.count(Status::NotMeasured),
    ));
    text.push_str(&plots_markdown(&spec.workloads));
    fs::write(&md, text).map_err(OutputError::write(&md))?;
    Ok(summary)
}

/// Reads `<dir>/runs.jsonl`, and each record's histogram from its `.hist` file.
///
/// # Errors
/// [`OutputError::NotResults`] without `runs.jsonl`, [`OutputError::BadJson`] for a line that
/// is not a record, [`OutputError::Read`] or [`OutputError::BadHistogram`] for a histogram.
pub fn read_records(dir: &Path) -> Result<Vec<Record>, OutputError> {
    let path = dir.join(RUNS_JSONL);
    let text = fs::read_to_string(&path).map_err(|e| OutputError::NotResults {
        path: dir.to_path_buf(),
        reason: format!("cannot read {RUNS_JSONL}: {e}"),
    })?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut r: Record = serde_json::from_str(line).map_err(|source| OutputError::BadJson {
            path: path.clone(),
            line: i + 1,
            source,
        })?;
        if let Some(stem) = &r.histogram {
            let hist = histogram_files::with_extension(&dir.join(stem), HIST);
            r.latency = Some(Latency(histogram_files::load(&hist)?));
        }
        records.push(r);
    }
    Ok(records)
}

/// `rpc-bench report DIR`: rewrites `summary.md` and the plots of a results folder from its
/// own files and returns the table; no figure changes.
///
/// # Errors
/// What [`MatrixFile::read`], [`Machine::read`], [`read_records`] and [`write_outputs`] fail with.
pub fn report(dir: &Path) -> Result<Summary, OutputError> {
    let matrix = MatrixFile::read(dir)?;
    let spec = matrix.spec(dir)?;
    let env = Machine::read(dir)?.environment();
    let records = read_records(dir)?;
    write_outputs(dir, &spec, &env, &matrix.command, &records)
}

/// Columns of `spec`, as the plots and table name them.
pub fn column_names(spec: &MatrixSpec) -> Vec<String> {
    spec.columns().iter().map(Column::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{record, record_at};
    use transport::IoMode;

    const EPOLL: System = System::Transport(IoMode::Epoll);

    #[test]
    fn a_missing_folder_is_told_apart_from_an_old_one() {
        let tmp = tempfile::tempdir().unwrap();
        let e = MatrixFile::read(&tmp.path().join("2026-11-29-vm-0000000")).unwrap_err();
        assert!(e.to_string().contains("give results/<run>"), "{e}");
        let e = MatrixFile::read(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("cannot be re-rendered"), "{e}");
    }

    fn spec(dir: &Path) -> MatrixSpec {
        MatrixSpec {
            workloads: vec![Workload::echo(64, 1, 1), Workload::echo(4096, 1, 16)],
            systems: vec![EPOLL, System::RawTokio],
            levels: vec![Level::Transport, Level::Rpc],
            repeat: 2,
            duration_s: 1.0,
            warmup_s: 0.5,
            server_threads: 1,
            client_threads: 1,
            results_dir: dir.to_path_buf(),
            idle_conns: 0,
        }
    }

    #[test]
    fn a_folder_is_rendered_again_from_its_files_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("results-1");
        fs::create_dir(&dir).unwrap();
        let spec = spec(tmp.path());
        let env = Environment::detect();
        let mut records = Vec::new();
        for (i, &w) in spec.workloads.iter().enumerate() {
            for n in [100, 300] {
                records.push(record(EPOLL, w, n * (i as u64 + 1)));
                records.push(record(System::RawTokio, w, n * 2));
                records.push(record_at(EPOLL, Level::Rpc, w, n / 2));
            }
        }
        let mut jsonl = String::new();
        for (i, r) in records.iter_mut().enumerate() {
            let stem = histogram_files::run_stem(i + 1, &r.system, &r.level.to_string(), &r.workload());
            histogram_files::save(&dir.join(&stem), &r.latency.as_ref().unwrap().0).unwrap();
            r.histogram = Some(stem);
            jsonl.push_str(&r.to_json_line().unwrap());
            jsonl.push('\n');
        }
        fs::write(dir.join(RUNS_JSONL), jsonl).unwrap();
        MatrixFile::new(&spec, "rpc-bench matrix --repeat 2")
            .write(&dir)
            .unwrap();
        Machine::detect(&env).write(&dir).unwrap();
        let first = write_outputs(&dir, &spec, &env, "rpc-bench matrix --repeat 2", &records).unwrap();
        let md = fs::read_to_string(dir.join(SUMMARY_MD)).unwrap();
        let latency = fs::read_to_string(dir.join(plot_paths(&spec.workloads[1]).0)).unwrap();

        fs::remove_dir_all(dir.join(PLOTS)).unwrap();
        fs::remove_file(dir.join(SUMMARY_MD)).unwrap();
        let again = report(&dir).unwrap();
        assert_eq!(again, first);
        assert_eq!(again.render_terminal(), first.render_terminal());
        assert_eq!(fs::read_to_string(dir.join(SUMMARY_MD)).unwrap(), md);
        assert_eq!(
            fs::read_to_string(dir.join(plot_paths(&spec.workloads[1]).0)).unwrap(),
            latency
        );
        assert!(md.contains("Command: `rpc-bench matrix --repeat 2`"), "{md}");
        assert!(
            md.contains("](plots/4KiB-1x16-latency.svg)") && md.contains("](plots/64B-1x1-throughput.svg)")
        );
        for name in column_names(&spec) {
            assert!(latency.contains(&name), "{name} not in the latency plot");
        }
    }

    #[test]
    fn report_says_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let e = report(tmp.path()).unwrap_err();
        assert!(e.to_string().contains(MATRIX_JSON), "{e}");
        MatrixFile::new(&spec(tmp.path()), "x").write(tmp.path()).unwrap();
        Machine::detect(&Environment::detect()).write(tmp.path()).unwrap();
        let e = report(tmp.path()).unwrap_err();
        assert!(e.to_string().contains(RUNS_JSONL), "{e}");
        fs::write(tmp.path().join(RUNS_JSONL), "{}\n").unwrap();
        let e = report(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("runs.jsonl, line 1"), "{e}");
    }
}

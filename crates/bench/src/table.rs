//! The matrix summary: medians of repeated runs per workload and system, the
//! ratio of each system to the raw tokio baseline, rendered for a terminal and
//! as Markdown.

use comfy_table::{CellAlignment, Table, presets};

use crate::record::Record;
use crate::workload::{System, Workload};

/// Medians of one system's runs of one workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Median requests per second.
    pub rps: f64,
    /// Median of the runs' p50 latencies, in µs.
    pub p50_us: f64,
    /// Median of the runs' p99 latencies, in µs.
    pub p99_us: f64,
    /// Runs the medians are taken over.
    pub runs: usize,
}

/// One workload: a cell per system, in the summary's system order (`None` when it has no runs).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// Medians per system.
    pub cells: Vec<Option<Cell>>,
}

/// The table of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The systems, in column order.
    pub systems: Vec<System>,
    /// One row per workload, in matrix order.
    pub rows: Vec<Row>,
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// `a / b`, or `None` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

impl Summary {
    /// Groups `records` by workload and system and takes medians.
    pub fn new(systems: &[System], workloads: &[Workload], records: &[Record]) -> Self {
        let rows = workloads
            .iter()
            .map(|&workload| Row {
                workload,
                cells: systems
                    .iter()
                    .map(|s| {
                        let runs: Vec<&Record> = records
                            .iter()
                            .filter(|r| r.workload() == workload && r.system == resolved_name(*s))
                            .collect();
                        let med = |f: fn(&Record) -> f64| median(runs.iter().map(|r| f(r)).collect());
                        Some(Cell {
                            rps: med(|r| r.rps)?,
                            p50_us: med(|r| r.p50_us as f64)?,
                            p99_us: med(|r| r.p99_us as f64)?,
                            runs: runs.len(),
                        })
                    })
                    .collect(),
            })
            .collect();
        Self {
            systems: systems.to_vec(),
            rows,
        }
    }

    /// Index of the baseline column (`raw-tokio`), if it ran.
    fn baseline(&self) -> Option<usize> {
        self.systems.iter().position(|s| *s == System::RawTokio)
    }

    /// For each system other than the baseline: its median req/s over the baseline's, per row.
    pub fn ratios(&self) -> Vec<(System, Vec<Option<f64>>)> {
        let Some(b) = self.baseline() else {
            return Vec::new();
        };
        (0..self.systems.len())
            .filter(|&i| i != b)
            .map(|i| {
                let per_row = self.rows.iter().map(|row| match (row.cells[i], row.cells[b]) {
                    (Some(x), Some(y)) => ratio(x.rps, y.rps),
                    _ => None,
                });
                (self.systems[i], per_row.collect())
            })
            .collect()
    }

    fn table(&self, preset: &str) -> Table {
        let mut t = Table::new();
        t.load_preset(preset);
        let mut header = vec!["workload".to_string()];
        for s in &self.systems {
            header.push(format!("{s} req/s"));
            header.push(format!("{s} p50/p99 µs"));
        }
        let ratios = self.ratios();
        let baseline = self.baseline().map(|b| self.systems[b]);
        for (s, _) in &ratios {
            header.push(format!("{s} / {}", baseline.map_or("", System::name)));
        }
        t.set_header(header);
        for (r, row) in self.rows.iter().enumerate() {
            let mut cells = vec![row.workload.to_string()];
            for cell in &row.cells {
                match cell {
                    Some(c) => {
                        cells.push(format!("{:.0}", c.rps));
                        cells.push(format!("{:.0} / {:.0}", c.p50_us, c.p99_us));
                    }
                    None => cells.extend(["-".to_string(), "-".to_string()]),
                }
            }
            for (_, per_row) in &ratios {
                cells.push(per_row[r].map_or("-".into(), |x| format!("{x:.2}×")));
            }
            t.add_row(cells);
        }
        for col in t.column_iter_mut().skip(1) {
            col.set_cell_alignment(CellAlignment::Right);
        }
        t
    }

    /// The table for a terminal.
    pub fn render_terminal(&self) -> String {
        self.table(presets::UTF8_FULL_CONDENSED).to_string()
    }

    /// The table in Markdown.
    pub fn render_markdown(&self) -> String {
        self.table(presets::ASCII_MARKDOWN).to_string()
    }
}

/// The `system` field a record of `s` carries (`auto` runs as `epoll`).
fn resolved_name(s: System) -> &'static str {
    match s {
        System::Transport(transport::IoMode::Auto) => "epoll",
        other => other.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::record;
    use transport::IoMode;

    const EPOLL: System = System::Transport(IoMode::Epoll);

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 0.0), None);
    }

    #[test]
    fn table_has_medians_and_ratio_per_workload() {
        let [a, b, ..] = Workload::default_matrix();
        let records = vec![
            record(EPOLL, a, 1000),
            record(System::RawTokio, a, 4000),
            record(EPOLL, a, 3000),
            record(System::RawTokio, a, 2000),
            record(EPOLL, a, 2000),
            record(System::RawTokio, a, 3000),
            record(EPOLL, b, 500),
        ];
        let s = Summary::new(&[EPOLL, System::RawTokio], &[a, b], &records);
        let cell = s.rows[0].cells[0].unwrap();
        assert_eq!(
            (cell.rps, cell.p50_us, cell.p99_us, cell.runs),
            (1000.0, 10.0, 20.0, 3)
        );
        assert_eq!(s.rows[1].cells[1], None);
        assert_eq!(s.ratios(), vec![(EPOLL, vec![Some(1000.0 / 1500.0), None])]);

        let md = s.render_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4, "{md}");
        assert!(
            lines[0].contains("epoll req/s") && lines[0].contains("epoll / raw-tokio"),
            "{md}"
        );
        assert!(lines[1].starts_with("|-"), "{md}");
        assert!(
            lines[2].contains("64 B, 1 conn × 1 in flight") && lines[2].contains("0.67×"),
            "{md}"
        );
        assert!(lines[2].contains("10 / 20"), "{md}");
        assert!(lines[3].contains(" - "), "{md}");
        assert!(s.render_terminal().contains("1500"));
    }

    #[test]
    fn no_baseline_no_ratio_column() {
        let a = Workload::echo(64, 1, 1);
        let s = Summary::new(&[EPOLL], &[a], &[record(EPOLL, a, 100)]);
        assert!(s.ratios().is_empty());
        assert!(!s.render_markdown().contains(" / raw-tokio"));
    }
}

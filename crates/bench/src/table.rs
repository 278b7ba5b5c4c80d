//! The matrix summary: medians of repeated runs per workload and column
//! (system and level), the ratios of the [`Comparison`]s among the columns
//! (each system over the raw tokio baseline, each system's rpc level over its
//! transport level), rendered for a terminal and as Markdown.

use comfy_table::{CellAlignment, Table, presets};

use crate::column::{Column, Comparison};
use crate::record::Record;
use crate::workload::{System, Workload};

/// Bodies of at least this many bytes make a bulk workload, whose throughput the summary also
/// gives in bytes per second.
pub const BULK_BYTES: usize = crate::workload::ZERO_COPY_THRESHOLD;

/// What the bytes-per-second table holds.
const BYTES_CAPTION: &str = "Bulk workloads in bytes: median MB/s (10^6 bytes per second, request and \
     response frames with their headers, both ways).";

/// Medians of one column's runs of one workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Median requests per second.
    pub rps: f64,
    /// Median of the runs' p50 latencies, in µs.
    pub p50_us: f64,
    /// Median of the runs' p99 latencies, in µs.
    pub p99_us: f64,
    /// Median megabytes (10^6 bytes) per second, request and response frames both ways.
    pub mb_per_s: f64,
    /// Runs the medians are taken over.
    pub runs: usize,
}

/// One workload: a cell per column, in the summary's column order (`None` when it has no runs).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// Medians per column.
    pub cells: Vec<Option<Cell>>,
}

/// The table of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// One row per workload, in matrix order.
    pub rows: Vec<Row>,
}

/// One comparison's ratios of median req/s, per row (`None` when a side has no runs).
#[derive(Debug, Clone, PartialEq)]
pub struct Ratios {
    /// What is compared.
    pub comparison: Comparison,
    /// `over / under` per row.
    pub per_row: Vec<Option<f64>>,
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
    /// Groups `records` by workload and column (system and level) and takes medians.
    pub fn new(columns: &[Column], workloads: &[Workload], records: &[Record]) -> Self {
        let rows = workloads
            .iter()
            .map(|&workload| Row {
                workload,
                cells: columns
                    .iter()
                    .map(|&c| {
                        let runs = runs_of(c, workload, records);
                        let med = |f: fn(&Record) -> f64| median(runs.iter().map(|r| f(r)).collect());
                        Some(Cell {
                            rps: med(|r| r.rps)?,
                            p50_us: med(|r| r.p50_us as f64)?,
                            p99_us: med(|r| r.p99_us as f64)?,
                            mb_per_s: med(|r| r.mb_per_s)?,
                            runs: runs.len(),
                        })
                    })
                    .collect(),
            })
            .collect();
        Self {
            columns: columns.to_vec(),
            rows,
        }
    }

    /// The ratios of median req/s of every [`Comparison`] among the columns, per row.
    pub fn ratios(&self) -> Vec<Ratios> {
        let index = |c: Column| self.columns.iter().position(|x| *x == c);
        Comparison::among(&self.columns)
            .into_iter()
            .filter_map(|comparison| {
                let (o, u) = (index(comparison.over)?, index(comparison.under)?);
                let per_row = self.rows.iter().map(|row| match (row.cells[o], row.cells[u]) {
                    (Some(x), Some(y)) => ratio(x.rps, y.rps),
                    _ => None,
                });
                Some(Ratios {
                    comparison,
                    per_row: per_row.collect(),
                })
            })
            .collect()
    }

    fn table(&self, preset: &str) -> Table {
        let mut t = Table::new();
        t.load_preset(preset);
        let mut header = vec!["workload".to_string()];
        for c in &self.columns {
            header.push(format!("{c} req/s"));
            header.push(format!("{c} p50/p99 µs"));
        }
        let ratios = self.ratios();
        for r in &ratios {
            header.push(r.comparison.to_string());
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
            for ratios in &ratios {
                cells.push(ratios.per_row[r].map_or("-".into(), |x| format!("{x:.2}×")));
            }
            t.add_row(cells);
        }
        for col in t.column_iter_mut().skip(1) {
            col.set_cell_alignment(CellAlignment::Right);
        }
        t
    }

    /// The rows of bulk workloads (a body of at least [`BULK_BYTES`]), in order.
    pub fn bulk_rows(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.workload.payload.max(r.workload.response) >= BULK_BYTES)
            .collect()
    }

    /// The bulk rows' median MB/s per column (columns with no run of them left out); `None`
    /// when there is no bulk row.
    fn bytes_table(&self, preset: &str) -> Option<Table> {
        let rows = self.bulk_rows();
        if rows.is_empty() {
            return None;
        }
        let shown: Vec<usize> = (0..self.columns.len())
            .filter(|&i| rows.iter().any(|r| r.cells[i].is_some()))
            .collect();
        let mut t = Table::new();
        t.load_preset(preset);
        let mut header = vec!["workload".to_string()];
        header.extend(shown.iter().map(|&i| format!("{} MB/s", self.columns[i])));
        t.set_header(header);
        for row in rows {
            let mut cells = vec![row.workload.to_string()];
            cells.extend(
                shown
                    .iter()
                    .map(|&i| row.cells[i].map_or("-".into(), |c| format!("{:.0}", c.mb_per_s))),
            );
            t.add_row(cells);
        }
        for col in t.column_iter_mut().skip(1) {
            col.set_cell_alignment(CellAlignment::Right);
        }
        Some(t)
    }

    /// The table for a terminal, then the bulk rows in MB/s.
    pub fn render_terminal(&self) -> String {
        let mut out = self.table(presets::UTF8_FULL_CONDENSED).to_string();
        if let Some(t) = self.bytes_table(presets::UTF8_FULL_CONDENSED) {
            out.push_str(&format!("\n{}\n{t}", BYTES_CAPTION));
        }
        out
    }

    /// The table in Markdown.
    pub fn render_markdown(&self) -> String {
        self.table(presets::ASCII_MARKDOWN).to_string()
    }

    /// The bulk rows in MB/s as a Markdown table with its caption; empty without bulk rows.
    pub fn render_bytes_markdown(&self) -> String {
        self.bytes_table(presets::ASCII_MARKDOWN)
            .map_or_else(String::new, |t| format!("{BYTES_CAPTION}\n\n{t}\n"))
    }
}

/// The records of `workload`'s runs in `column`, in the order given.
pub fn runs_of(column: Column, workload: Workload, records: &[Record]) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| r.workload() == workload && r.level == column.level && ran_as(column.system, &r.system))
        .collect()
}

/// Whether a record whose `system` field is `name` is a run of `s`: `auto`
/// runs as whichever backend `rpc::create_transport` picked (`epoll` or `io_uring`).
fn ran_as(s: System, name: &str) -> bool {
    match s {
        System::Transport(transport::IoMode::Auto) => ["epoll", "io_uring"].contains(&name),
        other => other.name() == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{record, record_at};
    use crate::run::Level;
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

    fn col(system: System, level: Level) -> Column {
        Column::new(system, level)
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
        let columns = [
            col(EPOLL, Level::Transport),
            col(System::RawTokio, Level::Transport),
        ];
        let s = Summary::new(&columns, &[a, b], &records);
        let cell = s.rows[0].cells[0].unwrap();
        assert_eq!(
            (cell.rps, cell.p50_us, cell.p99_us, cell.runs),
            (1000.0, 10.0, 20.0, 3)
        );
        assert_eq!(s.rows[1].cells[1], None);
        let ratios = s.ratios();
        assert_eq!(ratios.len(), 1);
        assert_eq!(ratios[0].per_row, vec![Some(1000.0 / 1500.0), None]);

        let md = s.render_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4, "{md}");
        assert!(
            lines[0].contains("epoll transport req/s") && lines[0].contains("epoll / raw-tokio"),
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
        assert!(s.bulk_rows().is_empty() && s.render_bytes_markdown().is_empty());
    }

    #[test]
    fn rpc_level_is_its_own_column_with_its_cost_over_transport() {
        let a = Workload::echo(64, 1, 64);
        let records = vec![
            record(EPOLL, a, 4000),
            record(System::RawTokio, a, 5000),
            record_at(EPOLL, Level::Rpc, a, 1000),
            record(EPOLL, a, 4000),
            record(System::RawTokio, a, 5000),
            record_at(EPOLL, Level::Rpc, a, 3000),
        ];
        let columns = Column::matrix(&[EPOLL, System::RawTokio], &[Level::Transport, Level::Rpc]);
        let s = Summary::new(&columns, &[a], &records);
        let rps: Vec<f64> = s.rows[0].cells.iter().map(|c| c.unwrap().rps).collect();
        // Levels are not mixed up: the transport column has only transport runs.
        assert_eq!(rps, [2000.0, 2500.0, 1000.0]);
        let ratios = s.ratios();
        let labels: Vec<String> = ratios.iter().map(|r| r.comparison.to_string()).collect();
        assert_eq!(labels, ["epoll / raw-tokio", "epoll rpc / transport"]);
        assert_eq!(ratios[0].per_row, [Some(0.8)]);
        assert_eq!(ratios[1].per_row, [Some(0.5)]);
        let md = s.render_markdown();
        let header = md.lines().next().unwrap();
        for needle in [
            "epoll transport req/s",
            "raw-tokio p50/p99 µs",
            "epoll rpc req/s",
            "epoll rpc p50/p99 µs",
            "epoll rpc / transport",
        ] {
            assert!(header.contains(needle), "{needle:?} not in {header}");
        }
        assert!(!header.contains("raw-tokio transport"), "{header}");
        assert!(md.lines().nth(2).unwrap().contains("0.50×"), "{md}");
    }

    #[test]
    fn bulk_rows_are_also_in_bytes_per_second() {
        let bulk = Workload::echo(1 << 20, 1, 4);
        let small = Workload::echo(64, 1, 64);
        let records = [
            record(EPOLL, bulk, 100),
            record(System::UringZeroCopy, bulk, 200),
            record(EPOLL, small, 1000),
        ];
        let columns = Column::matrix(
            &[EPOLL, System::UringZeroCopy, System::RawTokio],
            &[Level::Transport],
        );
        let s = Summary::new(&columns, &[small, bulk], &records);
        assert_eq!(s.bulk_rows().len(), 1);
        let md = s.render_bytes_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[0].starts_with("Bulk workloads in bytes"), "{md}");
        assert!(
            lines[2].contains("epoll transport MB/s") && lines[2].contains("io_uring-zc transport MB/s"),
            "{md}"
        );
        assert!(
            !lines[2].contains("raw-tokio"),
            "a column with no bulk run is left out: {md}"
        );
        // 50 and 100 req/s of 2 × (21 + 1 MiB) bytes.
        let mb = |rps: f64| format!("{:.0}", rps * 2.0 * (21.0 + (1 << 20) as f64) / 1e6);
        assert!(
            lines[4].contains(&mb(50.0)) && lines[4].contains(&mb(100.0)),
            "{md}"
        );
        assert!(s.render_terminal().contains("io_uring-zc transport MB/s"));
    }

    #[test]
    fn auto_matches_the_backend_it_resolved_to() {
        assert!(ran_as(System::Transport(IoMode::Auto), "epoll"));
        assert!(ran_as(System::Transport(IoMode::Auto), "io_uring"));
        assert!(!ran_as(System::Transport(IoMode::Auto), "raw-tokio"));
        assert!(!ran_as(EPOLL, "io_uring"));
    }

    #[test]
    fn no_baseline_no_ratio_column() {
        let a = Workload::echo(64, 1, 1);
        let s = Summary::new(&[col(EPOLL, Level::Transport)], &[a], &[record(EPOLL, a, 100)]);
        assert!(s.ratios().is_empty());
        assert!(!s.render_markdown().contains(" / raw-tokio"));
    }
}

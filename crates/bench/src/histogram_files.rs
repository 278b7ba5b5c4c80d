//! A run's latency histogram on disk, in µs, as two files with one stem:
//!
//! - `<stem>.hgrm`: the HdrHistogram percentile distribution, the text `HistogramLogProcessor`
//!   and `hdrhistogram.github.io/HdrHistogram/plotFiles.html` read: `Value Percentile TotalCount
//!   1/(1-Percentile)` rows, then the `#[Mean ...]`, `#[Max ...]`, `#[Buckets ...]` footer;
//!   values in µs with 3 decimals, as Java's `outputPercentileDistribution(out, 5, 1.0)` writes.
//! - `<stem>.hist`: the histogram itself, HdrHistogram's V2 serialized form (binary, not
//!   compressed, not base64), which any HdrHistogram library reads back; `rpc-bench merge`
//!   adds such files from several processes or hosts.
//!
//! In a matrix results folder the stem is `runs/<index>-<system>-<level>-<workload>`
//! ([`run_stem`]), and each record's `histogram` field holds it.

use std::fmt::{self, Write as _};
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::output_error::OutputError;
use crate::workload::{Workload, format_bytes};

/// Extension of the percentile distribution text.
pub const HGRM: &str = "hgrm";
/// Extension of the V2 serialized histogram.
pub const HIST: &str = "hist";
/// Percentile rows per halving of the distance to 100 %, as in HdrHistogram's own tools.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// A run's latency histogram in µs, carried beside its record in memory.
///
/// Its `Debug` shows the count and the largest value only, not the counts array.
#[derive(Clone, PartialEq)]
pub struct Latency(pub Histogram<u64>);

impl fmt::Debug for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Latency({} values, max {} µs)", self.0.len(), self.0.max())
    }
}

/// Sub-buckets per bucket of `h` (2048 for 3 significant digits), for the `.hgrm` footer.
fn sub_bucket_count(h: &Histogram<u64>) -> u64 {
    let single_unit_resolution = 2 * 10u64.pow(u32::from(h.sigfig()));
    single_unit_resolution.next_power_of_two()
}

/// The percentile distribution of `h` (µs) in the HdrHistogram `.hgrm` text format.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean(),
        h.stdev()
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h)
    );
    out
}

/// `h` in HdrHistogram's V2 serialized form.
pub fn to_v2(h: &Histogram<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("a histogram of u64 counts serializes into a Vec");
    bytes
}

/// Reads a V2 (or V2 + DEFLATE) serialized histogram; `path` is only for the error.
///
/// # Errors
/// [`OutputError::BadHistogram`] when `bytes` is not such a histogram.
pub fn from_v2(bytes: &[u8], path: &Path) -> Result<Histogram<u64>, OutputError> {
    Deserializer::new()
        .deserialize(&mut Cursor::new(bytes))
        .map_err(|e| OutputError::BadHistogram {
            path: path.to_path_buf(),
            reason: format!("{e:?}"),
        })
}

/// `stem` with `extension` appended (`runs/001-epoll` → `runs/001-epoll.hgrm`).
pub fn with_extension(stem: &Path, extension: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// Writes `<stem>.hgrm` and `<stem>.hist` of `h`, creating the folder if needed.
///
/// # Errors
/// [`OutputError::Write`] when a file or the folder cannot be written.
pub fn save(stem: &Path, h: &Histogram<u64>) -> Result<(), OutputError> {
    if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(OutputError::write(parent))?;
    }
    let hgrm_path = with_extension(stem, HGRM);
    fs::write(&hgrm_path, hgrm(h)).map_err(OutputError::write(&hgrm_path))?;
    let hist_path = with_extension(stem, HIST);
    fs::write(&hist_path, to_v2(h)).map_err(OutputError::write(&hist_path))
}

/// Reads a `.hist` file (V2 serialized).
///
/// # Errors
/// [`OutputError::Read`] when it cannot be read, [`OutputError::BadHistogram`] when it is not V2.
pub fn load(path: &Path) -> Result<Histogram<u64>, OutputError> {
    let bytes = fs::read(path).map_err(OutputError::read(path))?;
    from_v2(&bytes, path)
}

/// A file-name-safe name of a workload: `64B-1x64`, `4KiB-1x16`, `4KiB-1500B-1x16` when the
/// response differs, `64B-256x1` (payload, connections × in flight).
pub fn workload_slug(w: &Workload) -> String {
    let size = |b: usize| format_bytes(b).replace(' ', "");
    let mut slug = size(w.payload);
    if w.response != w.payload {
        slug.push('-');
        slug.push_str(&size(w.response));
    }
    let slug = match w.rate {
        // An open loop is told apart from the closed loop of the same shape by its rate.
        Some(rate) => format!("{slug}-{}x{}-{rate}rps", w.conns, w.inflight),
        None => format!("{slug}-{}x{}", w.conns, w.inflight),
    };
    // A pinned row, from the unpinned one of the same shape by its CPU.
    match w.pinned_cpu {
        Some(cpu) => format!("{slug}-cpu{cpu}"),
        None => slug,
    }
}

/// `name` with anything but ASCII letters, digits, `-`, `_` and `.` turned into `-`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The stem, relative to the results folder, of the histogram files of the `index`-th run
/// (1-based: its line in `runs.jsonl`): `runs/003-epoll-transport-64B-1x1`.
pub fn run_stem(index: usize, system: &str, level: &str, w: &Workload) -> String {
    format!("runs/{index:03}-{}", run_name(system, level, w))
}

/// A run's name in file names: `epoll-transport-64B-1x1` (system, level, workload).
pub fn run_name(system: &str, level: &str, w: &Workload) -> String {
    format!("{}-{}-{}", file_safe(system), file_safe(level), workload_slug(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::new_histogram;

    fn sample() -> Histogram<u64> {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v % 997 + 5).unwrap();
        }
        h.record(123_456).unwrap();
        h
    }

    #[test]
    fn hgrm_has_header_monotone_rows_and_footer() {
        let h = sample();
        let text = hgrm(&h);
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]);
        assert_eq!(lines[1], "");
        let rows: Vec<Vec<f64>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20, "{text}");
        for pair in rows.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(a[0] <= b[0] && a[1] <= b[1] && a[2] <= b[2], "{a:?} then {b:?}");
        }
        assert!(rows.iter().rev().skip(1).all(|r| r.len() == 4));
        let last = rows.last().unwrap();
        assert_eq!((last[1], last[2], last.len()), (1.0, h.len() as f64, 3));
        assert_eq!(last[0], h.max() as f64);
        assert_eq!(rows[0][1], 0.0);
        assert_eq!(rows[0][3], 1.0);
        let footer = &lines[lines.len() - 3..];
        assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains("StdDeviation   = "));
        assert!(
            footer[1].starts_with("#[Max     = ") && footer[1].contains("Total count    =        10001]")
        );
        assert_eq!(
            footer[2],
            format!("#[Buckets = {:12}, SubBuckets     =         2048]", h.buckets())
        );
        let max: f64 = footer[1][12..24].trim().parse().unwrap();
        assert_eq!(max, h.max() as f64);
    }

    #[test]
    fn v2_round_trip_keeps_every_count() {
        let h = sample();
        let back = from_v2(&to_v2(&h), Path::new("x.hist")).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        let e = from_v2(b"not a histogram", Path::new("x.hist")).unwrap_err();
        assert!(e.to_string().contains("x.hist"), "{e}");
    }

    #[test]
    fn files_are_written_under_their_stem() {
        let tmp = tempfile::tempdir().unwrap();
        let stem = tmp.path().join(run_stem(
            7,
            "raw-tokio",
            "transport",
            &Workload::echo(4096, 1, 16),
        ));
        let h = sample();
        save(&stem, &h).unwrap();
        assert!(stem.ends_with("runs/007-raw-tokio-transport-4KiB-1x16"));
        assert_eq!(load(&with_extension(&stem, HIST)).unwrap(), h);
        let text = fs::read_to_string(with_extension(&stem, HGRM)).unwrap();
        assert!(text.starts_with("       Value"), "{text}");
    }

    #[test]
    fn slugs_name_sizes_and_concurrency() {
        assert_eq!(workload_slug(&Workload::echo(64, 256, 1)), "64B-256x1");
        assert_eq!(workload_slug(&Workload::echo(1 << 20, 1, 4)), "1MiB-1x4");
        let open = Workload {
            rate: Some(20_000),
            ..Workload::echo(64, 1, 64)
        };
        assert_eq!(workload_slug(&open), "64B-1x64-20000rps");
        assert_ne!(workload_slug(&open), workload_slug(&Workload::echo(64, 1, 64)));
        assert_eq!(
            workload_slug(&Workload::echo(64, 1, 1).pinned_to(0)),
            "64B-1x1-cpu0"
        );
        let w = Workload {
            response: 1500,
            ..Workload::echo(4096, 1, 16)
        };
        assert_eq!(workload_slug(&w), "4KiB-1500B-1x16");
        assert_eq!(
            run_stem(12, "spark nio", "transport", &w),
            "runs/012-spark-nio-transport-4KiB-1500B-1x16"
        );
        let l = Latency(sample());
        assert_eq!(
            format!("{l:?}"),
            format!("Latency(10001 values, max {} µs)", l.0.max())
        );
    }
}

//! `rpc-bench merge`: adds V2 histogram files (`.hist`, latencies in µs) written by several
//! processes or hosts into one, and summarises it as one JSON line.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::histogram_files::{self, HGRM, HIST};
use crate::measure::new_histogram;
use crate::output_error::OutputError;

/// Percentiles of a merged histogram, the line `rpc-bench merge` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Histogram files merged.
    pub files: usize,
    /// Latencies recorded, all files.
    pub count: u64,
    /// Median latency, in µs.
    pub p50_us: u64,
    /// 90th percentile latency, in µs.
    pub p90_us: u64,
    /// 99th percentile latency, in µs.
    pub p99_us: u64,
    /// 99.9th percentile latency, in µs.
    pub p999_us: u64,
    /// Largest latency, in µs.
    pub max_us: u64,
    /// Mean latency, in µs.
    pub mean_us: f64,
}

impl Percentiles {
    /// The percentiles of `h` (µs), merged from `files` files.
    pub fn of(h: &Histogram<u64>, files: usize) -> Self {
        Self {
            files,
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// The sum of the histograms in `paths` (V2 `.hist` files).
///
/// # Errors
/// [`OutputError::Read`] or [`OutputError::BadHistogram`] for a file that is not a V2
/// histogram, [`OutputError::Merge`] when one holds values beyond 60 s and cannot be added.
pub fn merge_files(paths: &[PathBuf]) -> Result<Histogram<u64>, OutputError> {
    let mut merged = new_histogram();
    for path in paths {
        let h = histogram_files::load(path)?;
        merged.add(&h).map_err(|e| OutputError::Merge {
            path: path.clone(),
            reason: format!("{e:?}"),
        })?;
    }
    Ok(merged)
}

/// The stem `--out` names: `x`, `x.hist` and `x.hgrm` all give `x`.
pub fn out_stem(out: &Path) -> PathBuf {
    match out.extension().and_then(|e| e.to_str()) {
        Some(HIST | HGRM) => out.with_extension(""),
        _ => out.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_two_files_equals_recording_both() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, mut b, mut both) = (new_histogram(), new_histogram(), new_histogram());
        for v in 1..=5000u64 {
            a.record(v).unwrap();
            both.record(v).unwrap();
        }
        for v in (100..200_000u64).step_by(7) {
            b.record(v).unwrap();
            both.record(v).unwrap();
        }
        let paths = [tmp.path().join("a"), tmp.path().join("b")];
        histogram_files::save(&paths[0], &a).unwrap();
        histogram_files::save(&paths[1], &b).unwrap();
        let hist: Vec<PathBuf> = paths
            .iter()
            .map(|p| histogram_files::with_extension(p, HIST))
            .collect();
        let merged = merge_files(&hist).unwrap();
        assert_eq!(merged, both);
        let p = Percentiles::of(&merged, 2);
        assert_eq!((p.files, p.count), (2, both.len()));
        assert_eq!((p.p99_us, p.max_us), (both.value_at_quantile(0.99), both.max()));
        let hgrm = histogram_files::with_extension(&paths[0], HGRM);
        let e = merge_files(&[hgrm]).unwrap_err();
        assert!(e.to_string().contains("pass the `.hist` files"), "{e}");
    }

    #[test]
    fn out_names_a_stem() {
        assert_eq!(out_stem(Path::new("m/all.hist")), Path::new("m/all"));
        assert_eq!(out_stem(Path::new("all.hgrm")), Path::new("all"));
        assert_eq!(out_stem(Path::new("all")), Path::new("all"));
        assert_eq!(out_stem(Path::new("all.v1")), Path::new("all.v1"));
    }
}

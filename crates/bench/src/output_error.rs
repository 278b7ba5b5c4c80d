//! Failures of what `rpc-bench` writes and reads back for a person: histogram files,
//! plots, `machine.json`, `report` and `merge`; and of the runs behind them.

use std::path::{Path, PathBuf};

use crate::error::BenchError;

/// Why a path given as a results folder is none: it does not exist. A run's
/// bare name typed from the repository's root is the usual cause.
pub(crate) const NO_SUCH_RESULTS_FOLDER: &str =
    "no such folder (the matrix writes under results/: from the repository's root, give results/<run>)";

/// Why a command of `rpc-bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A run or the matrix failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
    /// A results file or folder could not be written.
    #[error("cannot write {}: {source}; check the folder exists and is writable", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}; pass a results folder written by `rpc-bench matrix`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of a results folder does not parse.
    #[error("{}, line {line}: not what rpc-bench writes: {source}", path.display())]
    BadJson {
        /// The file.
        path: PathBuf,
        /// Line number (1-based; 1 for a whole-file JSON document).
        line: usize,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A histogram file is not an HdrHistogram V2 serialized histogram.
    #[error(
        "{} is not an HdrHistogram V2 histogram ({reason}); pass the `.hist` files, not the `.hgrm` text",
        path.display()
    )]
    BadHistogram {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// Histograms could not be added (their values exceed what the merged histogram tracks).
    #[error("cannot add {} to the others: {reason}", path.display())]
    Merge {
        /// The file that did not fit.
        path: PathBuf,
        /// What hdrhistogram said.
        reason: String,
    },
    /// A results folder lacks what `report` or `check` needs, or does not exist
    /// (then `reason` says so and that runs are under `results/`).
    #[error("{} is not a results folder: {reason}", path.display())]
    NotResults {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A plot could not be drawn.
    #[error("cannot draw {}: {reason}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// What plotters said.
        reason: String,
    },
}

impl OutputError {
    /// A closure turning an IO error on writing `path` into [`OutputError::Write`].
    pub fn write(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Write {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A closure turning an IO error on reading `path` into [`OutputError::Read`].
    pub fn read(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

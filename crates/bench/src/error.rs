//! The bench's own failure modes.

use std::path::PathBuf;

use rpc::RpcError;
use transport::TransportError;

use crate::run::Level;

/// Why a run or a matrix failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The transport could not be built, bind or connect (e.g. `io_uring` unavailable on this kernel).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An RpcEnv could not start, or could not reach or ask the echo endpoint.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The system has no load generator at this level.
    #[error("{system} has only the transport level; drop --level {level} or pick an --io-mode")]
    LevelUnavailable {
        /// The system asked for (`raw-tokio`).
        system: String,
        /// The level it cannot run at.
        level: Level,
    },
    /// The matrix's systems and levels leave no column to run.
    #[error("no column to run: {systems} at levels {levels} (raw-tokio has only the transport level)")]
    EmptyMatrix {
        /// The systems asked for, comma-separated.
        systems: String,
        /// The levels asked for, comma-separated.
        levels: String,
    },
    /// The Spark baseline cannot run here.
    #[error("the Spark baseline cannot run: {reason}")]
    BaselineUnavailable {
        /// What `scripts/spark-baseline.sh` said.
        reason: String,
    },
    /// The Spark baseline printed something other than its JSON line.
    #[error("unexpected output from the Spark baseline: {reason}")]
    SparkOutput {
        /// What was wrong.
        reason: String,
    },
    /// A socket, runtime or thread operation of the bench itself failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A run finished without a single request completing while measuring.
    #[error(
        "no request completed during the {duration_s:.2} s measurement of {system} on {workload} \
         ({errors} errors); run with RUST_LOG=debug to see why, or measure for longer"
    )]
    NoRequests {
        /// The system that ran.
        system: String,
        /// The workload, described.
        workload: String,
        /// The measured time, in seconds.
        duration_s: f64,
        /// Failed requests.
        errors: u64,
    },
    /// `rpc-bench idle-conns` could not measure: its `serve` child failed or answered wrongly,
    /// or the open-file limit is too low.
    #[error("the idle-connection benchmark failed: {reason}")]
    IdleConns {
        /// What went wrong, and what to do.
        reason: String,
    },
    /// `run --zero-copy` without `--io-mode io_uring`.
    #[error("--zero-copy sends with io_uring's SENDMSG_ZC; add --io-mode io_uring (not {io_mode})")]
    ZeroCopyNeedsIoUring {
        /// The IO mode given (`auto` when none).
        io_mode: String,
    },
    /// A results file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Results {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be serialized to JSON.
    #[error("cannot serialize a record: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    /// Wraps an IO error of the bench's own sockets, runtimes and threads.
    pub fn io(what: &'static str, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }
}

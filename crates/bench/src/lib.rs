//! `rpc-bench`: measures the Spark-style RPC transports against a minimal tokio
//! echo of the same frames, closed loop, with HdrHistogram latencies.
//!
//! - [`workload`]: sizes, concurrency and the default matrix; [`run`]: one run;
//! - [`transport_load`]: load over the `Transport` trait (`--io-mode`, backend chosen by `rpc::create_transport`);
//! - [`rpc_load`]: load through the RpcEnv (`--level rpc`): asks to an echo endpoint;
//! - [`raw_tokio`] with [`raw_frames`]: the `raw-tokio` baseline, the bar for what the layer costs;
//! - [`measure`]: phases and latency recording shared by all three, and the open loop's
//!   timetable and pacer (`--rate`); [`record`]: the JSON record; [`alloc_counter`]: the
//!   counting allocator behind its `allocs_per_op`; [`config_file`]: `--config FILE`;
//! - [`host`]: machine, CPU placement and git revision; [`mod@column`]: a system at a level, and
//!   which columns are compared; [`matrix`] and [`table`]: the interleaved, repeated matrix,
//!   its medians and its `results/` folder; [`cli`]: the command line;
//! - what a person reads: [`histogram_files`] (each run's `.hgrm` percentile distribution and
//!   `.hist` V2 histogram, µs), [`machine`] (`machine.json`), [`plot`] (SVG latency and
//!   throughput plots), [`report`] (`summary.md` and plots, re-rendered by `rpc-bench report`),
//!   [`merge`] (`rpc-bench merge` of histogram files), [`check`] (`rpc-bench check`: issue 8's
//!   [`targets`] against a results folder, also its `check.md`); [`output_error`]: their failures;
//! - across processes or hosts: [`serve`] (`rpc-bench serve`, the server half alone) and
//!   [`remote_load`] (`rpc-bench load --connect`, the client half, with `--verify`);
//! - [`idle_conns`] (`rpc-bench idle-conns`: a `serve` child's RSS and pool buffers per idle
//!   connection; [`fd_limit`] raises the open-file limit it needs).
//!
//! # Example
//!
//! ```
//! use bench::workload::{Workload, format_bytes, parse_bytes};
//!
//! let w = Workload::echo(parse_bytes("4KiB").unwrap(), 1, 16);
//! assert_eq!(w.to_string(), "4 KiB, 1 conn × 16 in flight");
//! assert_eq!(format_bytes(w.payload * w.total_inflight()), "64 KiB");
//! assert_eq!(Workload::default_matrix()[2], w);
//! ```

pub mod alloc_counter;
pub mod check;
pub mod cli;
pub mod column;
pub mod config_file;
pub mod drive;
pub mod error;
pub mod fd_limit;
pub mod histogram_files;
pub mod host;
pub mod idle_conns;
pub mod machine;
pub mod matrix;
pub mod measure;
pub mod merge;
pub mod output_error;
pub mod plot;
pub mod raw_frames;
pub mod raw_tokio;
pub mod record;
pub mod remote_load;
pub mod report;
pub mod rpc_load;
pub mod run;
pub mod serve;
pub mod spark_load;
pub mod table;
pub mod targets;
pub mod transport_load;
pub mod workload;

pub use error::BenchError;

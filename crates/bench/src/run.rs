//! One run: a system, a workload, a duration; dispatched to the right load generator.

use std::fmt;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use transport::{BufferPool, Transport, TransportConf, TransportError};
use transport_uring::{UringConf, UringTransport};

use crate::error::BenchError;
use crate::host::{CpuList, Environment};
use crate::measure::Measurement;
use crate::record::Record;
use crate::workload::{System, Workload, ZERO_COPY_THRESHOLD};
use crate::{raw_tokio, rpc_load, spark_load, transport_load};

/// The layer a run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// The `Transport` trait: RpcRequest in, RpcResponse out, no RpcEnv.
    #[default]
    Transport,
    /// The RpcEnv: `RpcEndpointRef::ask` to an endpoint that replies, through
    /// Outbox, Dispatcher and Inbox, with rkyv encoding both ways; the endpoint
    /// is inline (`RpcEnv::setup_inline_endpoint`): it runs on the connection's
    /// event-loop thread, which writes the reply itself.
    Rpc,
    /// As `rpc`, with the endpoint on the MessageLoop (`setup_concurrent_endpoint`,
    /// Spark's Dispatcher model): each ask hops from the event loop to a
    /// MessageLoop thread and its reply back.
    #[value(name = "rpc-loop")]
    RpcLoop,
}

impl Level {
    /// Whether the RpcEnv is loaded (`rpc` or `rpc-loop`).
    pub fn is_rpc(self) -> bool {
        matches!(self, Self::Rpc | Self::RpcLoop)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transport => "transport",
            Self::Rpc => "rpc",
            Self::RpcLoop => "rpc-loop",
        })
    }
}

/// Bytes a frame may need beyond the workload's larger body: the frame header,
/// and at the rpc level the envelope (type fingerprint, endpoint name, sender
/// address) and the rkyv archive's own header.
pub const FRAME_OVERHEAD: u64 = 1024;

/// Everything that defines one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    /// What runs.
    pub system: System,
    /// Which layer is loaded.
    pub level: Level,
    /// Sizes and concurrency.
    pub workload: Workload,
    /// Measurement time, in seconds.
    pub duration_s: f64,
    /// Load before measuring, in seconds; its requests are not recorded.
    pub warmup_s: f64,
    /// Server event-loop threads (at least 1).
    pub server_threads: usize,
    /// Client event-loop threads (at least 1).
    pub client_threads: usize,
    /// CPUs the server's threads are pinned to (`--server-cpus`; see [`host`](crate::host)); `None`: not pinned.
    pub server_cpus: Option<CpuList>,
    /// CPUs the client's threads are pinned to (`--client-cpus`); `None`: not pinned.
    pub client_cpus: Option<CpuList>,
}

impl RunSpec {
    /// The transport configuration for a transport-backed run: the defaults
    /// with the process's `RPC_<KEY>` transport variables applied (e.g.
    /// `RPC_SPIN_BEFORE_PARK_US=0`; each run's record lists them), then the
    /// run's IO mode, threads, and a maximum frame size that fits the
    /// workload's messages.
    ///
    /// # Errors
    /// [`BenchError::Rpc`] (a configuration error) naming the variable when one
    /// of those variables has a bad value.
    pub fn transport_conf(&self) -> Result<TransportConf, BenchError> {
        let mut defaults = TransportConf::default();
        defaults.apply_env().map_err(rpc::RpcError::from)?;
        let largest = self.workload.payload.max(self.workload.response) as u64 + FRAME_OVERHEAD;
        Ok(TransportConf {
            io_mode: self.system.io_mode().unwrap_or(defaults.io_mode),
            server_threads: self.server_threads,
            client_threads: self.client_threads,
            max_frame_size: defaults.max_frame_size.max(largest),
            ..defaults
        })
    }
}

/// Runs `spec` and turns its measurement into a [`Record`].
///
/// # Errors
/// [`BenchError::LevelUnavailable`] for `raw-tokio`, Spark and `io_uring-zc` at any level but transport,
/// [`BenchError::Transport`] when the backend cannot run (e.g. `io_uring`),
/// [`BenchError::Rpc`] when an RpcEnv cannot start or reach its endpoint,
/// [`BenchError::Io`] when the baseline's sockets or threads fail, or a CPU list names a CPU
/// this process may not use or a thread cannot be pinned,
/// [`BenchError::BaselineUnavailable`] for the Spark baseline with `--rate` or CPU lists, and
/// [`BenchError::NoRequests`] when no request completed while measuring.
pub fn run(spec: &RunSpec, env: &Environment) -> Result<Record, BenchError> {
    tracing::info!(system = %spec.system, level = %spec.level, workload = %spec.workload, "run");
    for (cpus, what) in [
        (spec.server_cpus, "pin the server's threads to --server-cpus"),
        (spec.client_cpus, "pin the client's threads to --client-cpus"),
    ] {
        if let Some(cpus) = cpus {
            cpus.check_allowed(&env.cpus.allowed).map_err(|e| {
                BenchError::io(what, std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
            })?;
        }
    }
    if let Some(cpu) = spec.workload.pinned_cpu
        && (CpuList::single(cpu).is_none()
            || spec.server_cpus != CpuList::single(cpu)
            || spec.client_cpus != CpuList::single(cpu))
    {
        let e = format!(
            "the workload is pinned to CPU {cpu} but the run pins to {:?} / {:?}; pin server and client \
             to that one CPU (below {})",
            spec.server_cpus,
            spec.client_cpus,
            CpuList::MAX_CPUS
        );
        return Err(BenchError::io(
            "pin the run's threads to its workload's CPU",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        ));
    }
    if let System::Spark(_) = spec.system
        && (spec.workload.rate.is_some() || spec.server_cpus.is_some() || spec.client_cpus.is_some())
    {
        return Err(BenchError::BaselineUnavailable {
            reason: "its load generator (in the JVM) runs closed loops only, unpinned; \
                     drop --rate, --server-cpus and --client-cpus for spark-nio and spark-epoll"
                .into(),
        });
    }
    let measurement = match (spec.system, spec.level) {
        (System::Transport(_), Level::Transport) => transport_load::run(spec.transport_conf()?, spec)?,
        (System::UringZeroCopy, Level::Transport) => {
            let conf = spec.transport_conf()?;
            let uring = UringConf {
                zero_copy_threshold: ZERO_COPY_THRESHOLD,
                ..UringConf::default().with_env()
            };
            let make = || -> Result<Arc<dyn Transport>, TransportError> {
                let pool = BufferPool::new(conf.pool_max_bytes);
                Ok(Arc::new(UringTransport::with_uring_conf(
                    conf.clone(),
                    pool,
                    uring,
                )?))
            };
            let m = transport_load::run_on(spec, make)?;
            Measurement {
                system: spec.system.name().into(),
                ..m
            }
        }
        (System::Transport(_), Level::Rpc | Level::RpcLoop) => rpc_load::run(spec)?,
        (System::RawTokio, Level::Transport) => raw_tokio::run(spec)?,
        (System::Spark(io), Level::Transport) => {
            let spec = spark_load::with_jvm_warmup(spec);
            let measurement = spark_load::run(io, &spec)?;
            return Record::new(&spec, &measurement, env);
        }
        (System::RawTokio | System::Spark(_) | System::UringZeroCopy, level) => {
            return Err(BenchError::LevelUnavailable {
                system: spec.system.to_string(),
                level,
            });
        }
    };
    Record::new(spec, &measurement, env)
}

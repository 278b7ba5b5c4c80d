//! Spark Standalone's Master and Worker on the Rust [`rpc`] RpcEnv.
//!
//! As in Spark (`org.apache.spark.deploy`), a [`Master`] process creates an
//! RpcEnv and registers the `Master` endpoint; each [`Worker`] process creates
//! its own and registers a `Worker` endpoint, which registers with the master
//! ([`RegisterWorker`](messages::RegisterWorker), retried with exponential
//! backoff), sends a [`Heartbeat`](messages::MasterMessage::Heartbeat) every
//! quarter of `worker_timeout_ms`, registers again when the master answers
//! [`ReconnectWorker`](messages::MasterReply::ReconnectWorker) (it restarted),
//! and says [`WorkerStopping`](messages::MasterMessage::WorkerStopping) when it
//! stops. The master drops a worker after `worker_timeout_ms` without
//! heartbeats (Spark's `CheckForWorkerTimeOut`) or when its connection closes,
//! and serves a web UI ([`web_ui`], Spark's `MasterWebUI`): an HTML page at `/`
//! and JSON at `/json/workers`.
//!
//! | here | Spark |
//! | --- | --- |
//! | [`Master`], [`master::MasterEndpoint`] | `deploy.master.Master` |
//! | [`Worker`] | `deploy.worker.Worker` |
//! | [`messages`] | `deploy.DeployMessages` |
//! | [`WorkerInfo`] | `deploy.master.WorkerInfo` |
//! | [`web_ui::WebUi`] | `deploy.master.ui.MasterWebUI` |
//! | [`StandaloneConfig`] | `spark.worker.timeout`, `SPARK_MASTER_*`, `SPARK_WORKER_*` |
//!
//! The `standalone` binary runs `standalone master` and `standalone worker`;
//! `scripts/start-all.sh` and `scripts/stop-all.sh` run a cluster from
//! `conf/workers`, as Spark's `sbin/` scripts do. [`load::heartbeat_load`]
//! measures the master's heartbeat handling under load.
//!
//! # Example
//!
//! A master and a worker in one process, on loopback (free ports):
//!
//! ```
//! use std::time::Duration;
//! use rpc::RpcEnvConfig;
//! use standalone::{Master, StandaloneConfig, Worker};
//!
//! # fn main() -> Result<(), standalone::StandaloneError> {
//! let config = StandaloneConfig {
//!     master_port: 0, // pick a free port
//!     web_ui_port: 0,
//!     worker_timeout_ms: 5_000,
//!     ..StandaloneConfig::default()
//! };
//! let master = Master::start(&config, RpcEnvConfig::default())?;
//! let config = StandaloneConfig { master_port: master.address().port, ..config };
//! let worker = Worker::launch(&config, RpcEnvConfig::default())?;
//! worker.wait_registered(Duration::from_secs(5))?;
//! assert_eq!(master.workers().len(), 1);
//! println!("web UI: http://127.0.0.1:{}/", master.web_ui_port().unwrap());
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod error;
pub mod load;
pub mod master;
pub mod master_state;
pub mod messages;
pub mod scheduler;
pub mod web_ui;
pub mod worker;
pub mod worker_info;
pub mod worker_status;

pub use config::StandaloneConfig;
pub use error::{Result, StandaloneError};
pub use load::{HeartbeatLoad, HeartbeatReport, heartbeat_load};
pub use master::Master;
pub use worker::Worker;
pub use worker_info::{WorkerInfo, WorkerSnapshot, WorkerState};

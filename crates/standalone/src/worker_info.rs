//! `WorkerInfo`: what the master knows of one worker (Spark's `deploy.master.WorkerInfo`).

use std::time::Instant;

use rpc::RpcAddress;
use serde::Serialize;

use crate::messages::RegisterWorker;

/// A worker's state as the master sees it (Spark's `WorkerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WorkerState {
    /// Registered and sending heartbeats.
    Alive,
    /// Timed out, disconnected or stopped; removed right after.
    Dead,
}

impl WorkerState {
    /// `ALIVE` or `DEAD`, as Spark's UI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "ALIVE",
            Self::Dead => "DEAD",
        }
    }
}

/// One registered worker.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: String,
    /// The host it registered with.
    pub host: String,
    /// Its RPC port (0 for a client-mode RpcEnv).
    pub port: u16,
    /// The address its RpcEnv announced on the connection, if it listens.
    pub address: Option<RpcAddress>,
    /// Cores offered.
    pub cores: u32,
    /// Memory offered, in MiB.
    pub memory_mb: u64,
    /// Its IO mode.
    pub io_mode: String,
    /// Its endpoint's name.
    pub endpoint_name: String,
    /// Alive or dead.
    pub state: WorkerState,
    /// When it registered.
    pub registered_at: Instant,
    /// When its last heartbeat (or its registration) arrived (Spark's `lastHeartbeat`).
    pub last_heartbeat: Instant,
}

impl WorkerInfo {
    /// A fresh, alive worker from its registration.
    pub fn new(reg: RegisterWorker, address: Option<RpcAddress>, now: Instant) -> Self {
        Self {
            id: reg.id,
            host: reg.host,
            port: reg.port,
            address,
            cores: reg.cores,
            memory_mb: reg.memory_mb,
            io_mode: reg.io_mode,
            endpoint_name: reg.endpoint_name,
            state: WorkerState::Alive,
            registered_at: now,
            last_heartbeat: now,
        }
    }

    /// A point-in-time view for the web UI and the JSON API.
    pub fn snapshot(&self, now: Instant) -> WorkerSnapshot {
        WorkerSnapshot {
            id: self.id.clone(),
            address: format!("{}:{}", self.host, self.port),
            cores: self.cores,
            memory_mb: self.memory_mb,
            state: self.state,
            io_mode: self.io_mode.clone(),
            seconds_since_heartbeat: now.saturating_duration_since(self.last_heartbeat).as_secs_f64(),
            seconds_since_registration: now.saturating_duration_since(self.registered_at).as_secs_f64(),
        }
    }
}

/// A worker as `/json/workers` serves it (the field names are a stable API).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerSnapshot {
    /// The worker's id.
    pub id: String,
    /// `host:port` it registered with.
    pub address: String,
    /// Cores offered.
    pub cores: u32,
    /// Memory offered, in MiB.
    pub memory_mb: u64,
    /// `ALIVE` or `DEAD`.
    pub state: WorkerState,
    /// `epoll` or `io_uring`.
    pub io_mode: String,
    /// Seconds since its last heartbeat.
    pub seconds_since_heartbeat: f64,
    /// Seconds since it registered.
    pub seconds_since_registration: f64,
}

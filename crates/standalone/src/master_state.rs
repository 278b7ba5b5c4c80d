//! `MasterState`: the master's bookkeeping of workers, in one place shared by
//! the `Master` endpoint and the web UI (Spark's `Master.workers`,
//! `idToWorker`, `addressToWorker`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rpc::RpcAddress;
use serde::Serialize;

use crate::messages::RegisterWorker;
use crate::worker_info::{WorkerInfo, WorkerSnapshot, WorkerState};

/// The master's state behind a lock, shared by the endpoint and the web UI.
pub type SharedMasterState = Arc<Mutex<MasterState>>;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The workers a master knows, and what it is.
#[derive(Debug)]
pub struct MasterState {
    /// The master's RPC address.
    pub address: RpcAddress,
    /// The web UI port; 0 when off.
    pub web_ui_port: u16,
    /// The IO mode the master runs on.
    pub io_mode: String,
    /// When the master started.
    pub started_at: Instant,
    workers: BTreeMap<String, WorkerInfo>,
    by_address: HashMap<RpcAddress, Vec<String>>,
}

/// A summary of the cluster, served at `/json`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSnapshot {
    /// `rpc://host:port`.
    pub url: String,
    /// The IO mode of the master.
    pub io_mode: String,
    /// Alive workers.
    pub alive_workers: usize,
    /// Cores of alive workers.
    pub cores: u64,
    /// Memory of alive workers, in MiB.
    pub memory_mb: u64,
    /// Every worker.
    pub workers: Vec<WorkerSnapshot>,
}

impl MasterState {
    /// An empty state for a master at `address`.
    pub fn new(address: RpcAddress, web_ui_port: u16, io_mode: String) -> Self {
        Self {
            address,
            web_ui_port,
            io_mode,
            started_at: Instant::now(),
            workers: BTreeMap::new(),
            by_address: HashMap::new(),
        }
    }

    /// Registers a worker (Spark's `Master.registerWorker`); refuses an id a live worker has.
    ///
    /// # Errors
    /// [`Refusal`] saying why.
    pub fn register(&mut self, reg: RegisterWorker, address: Option<RpcAddress>) -> Result<(), Refusal> {
        if let Some(old) = self.workers.get(&reg.id) {
            // The same RpcEnv registering again (its earlier answer was lost) replaces
            // its entry; another process with a live worker's id is refused.
            let same_process = address.is_some() && old.address == address;
            if old.state == WorkerState::Alive && !same_process {
                return Err(Refusal(format!(
                    "Duplicate worker ID: `{}` is already registered by {}:{}",
                    reg.id, old.host, old.port
                )));
            }
            let id = reg.id.clone();
            self.remove(&id);
        }
        if let Some(a) = &address {
            self.by_address.entry(a.clone()).or_default().push(reg.id.clone());
        }
        let info = WorkerInfo::new(reg, address, Instant::now());
        self.workers.insert(info.id.clone(), info);
        Ok(())
    }

    /// Records a heartbeat; false when the worker is unknown (it should re-register).
    pub fn heartbeat(&mut self, id: &str) -> bool {
        match self.workers.get_mut(id) {
            Some(w) if w.state == WorkerState::Alive => {
                w.last_heartbeat = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Marks a worker dead and removes it (Spark's `removeWorker`); returns it if known.
    pub fn remove(&mut self, id: &str) -> Option<WorkerInfo> {
        let mut info = self.workers.remove(id)?;
        info.state = WorkerState::Dead;
        if let Some(a) = &info.address
            && let Some(ids) = self.by_address.get_mut(a)
        {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_address.remove(a);
            }
        }
        Some(info)
    }

    /// Removes every worker whose RpcEnv was at `address` (Spark's `onDisconnected`).
    pub fn remove_address(&mut self, address: &RpcAddress) -> Vec<WorkerInfo> {
        let ids = self.by_address.get(address).cloned().unwrap_or_default();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Removes the workers without a heartbeat for `timeout` (Spark's `timeOutDeadWorkers`).
    pub fn time_out(&mut self, timeout: Duration, now: Instant) -> Vec<WorkerInfo> {
        let expired: Vec<String> = self
            .workers
            .values()
            .filter(|w| now.saturating_duration_since(w.last_heartbeat) > timeout)
            .map(|w| w.id.clone())
            .collect();
        expired.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The worker with `id`.
    pub fn worker(&self, id: &str) -> Option<&WorkerInfo> {
        self.workers.get(id)
    }

    /// How many workers are registered.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Every worker, sorted by id.
    pub fn workers(&self) -> Vec<WorkerSnapshot> {
        let now = Instant::now();
        self.workers.values().map(|w| w.snapshot(now)).collect()
    }

    /// The cluster summary.
    pub fn cluster(&self) -> ClusterSnapshot {
        let workers = self.workers();
        let alive = workers.iter().filter(|w| w.state == WorkerState::Alive);
        ClusterSnapshot {
            url: self.address.to_url(),
            io_mode: self.io_mode.clone(),
            alive_workers: alive.clone().count(),
            cores: alive.clone().map(|w| u64::from(w.cores)).sum(),
            memory_mb: alive.map(|w| w.memory_mb).sum(),
            workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str) -> RegisterWorker {
        RegisterWorker {
            id: id.into(),
            host: "h".into(),
            port: 1,
            cores: 2,
            memory_mb: 512,
            io_mode: "epoll".into(),
            endpoint_name: "Worker".into(),
        }
    }

    #[test]
    fn register_duplicate_heartbeat_timeout_disconnect() {
        let mut s = MasterState::new(RpcAddress::new("m", 1), 0, "epoll".into());
        let a = RpcAddress::new("w", 9);
        s.register(reg("a"), Some(a.clone())).unwrap();
        s.register(reg("b"), None).unwrap();
        assert!(s.register(reg("a"), None).unwrap_err().0.contains("Duplicate"));
        assert!(s.heartbeat("a") && !s.heartbeat("zz"));
        assert_eq!(s.cluster().cores, 4);
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(s.time_out(Duration::from_secs(60), later).len(), 0);
        assert_eq!(s.remove_address(&a).len(), 1);
        assert_eq!(s.time_out(Duration::from_secs(1), later).len(), 1);
        assert!(s.is_empty());
    }
}

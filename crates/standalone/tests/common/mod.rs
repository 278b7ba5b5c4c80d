//! Helpers shared by the standalone tests: masters and workers on loopback
//! with short timeouts and few threads.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use rpc::RpcEnvConfig;
use standalone::{Master, StandaloneConfig, Worker};
use transport::IoMode;

/// An RpcEnv config for `mode` with one thread of each kind.
pub fn rpc_conf(mode: IoMode) -> RpcEnvConfig {
    let mut c = RpcEnvConfig::default();
    c.transport.io_mode = mode;
    c.transport.server_threads = 1;
    c.transport.client_threads = 1;
    c.transport.connect_timeout_ms = 2_000;
    c.dispatcher_threads = 1;
    c.ask_timeout_ms = 5_000;
    c
}

/// A config for a master on a free port with worker timeout `timeout_ms`.
pub fn conf(timeout_ms: u64, web_ui: bool) -> StandaloneConfig {
    StandaloneConfig {
        master_port: 0,
        web_ui_port: 0,
        web_ui,
        worker_timeout_ms: timeout_ms,
        register_timeout_ms: 10_000,
        register_backoff_initial_ms: 50,
        register_backoff_max_ms: 500,
        worker_cores: 2,
        worker_memory_mb: 2048,
        ..StandaloneConfig::default()
    }
}

/// Starts a master.
pub fn master(mode: IoMode, conf: &StandaloneConfig) -> Master {
    Master::start(conf, rpc_conf(mode)).expect("master starts")
}

/// The same config, pointing at `master`.
pub fn for_master(conf: &StandaloneConfig, master: &Master) -> StandaloneConfig {
    StandaloneConfig {
        master_port: master.address().port,
        ..conf.clone()
    }
}

/// Starts a worker with its own RpcEnv and id `id`.
pub fn worker(mode: IoMode, conf: &StandaloneConfig, id: &str) -> Worker {
    let conf = StandaloneConfig {
        worker_id: id.into(),
        ..conf.clone()
    };
    Worker::launch(&conf, rpc_conf(mode)).expect("worker starts")
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

//! A heartbeat load workload: many workers heartbeating one master at a set
//! rate, with HdrHistogram latencies of the master's heartbeat handling.
//!
//! Each heartbeat is an ask to the `Master` endpoint, sent open loop (on a
//! schedule, not after the previous answer) so that a slow master shows up as
//! latency rather than as a lower rate. The latency measured is the round trip
//! a worker sees: from the ask leaving to the master's `HeartbeatAck` arriving,
//! over loopback, in microseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rpc::{RpcEnv, RpcEnvConfig};
use serde::Serialize;
use transport::IoMode;

use crate::config::StandaloneConfig;
use crate::error::{Result, StandaloneError};
use crate::master::Master;
use crate::messages::{MASTER_ENDPOINT_NAME, MasterMessage, MasterReply, RegisterWorker};

/// The workload's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatLoad {
    /// Workers heartbeating.
    pub workers: usize,
    /// Heartbeats per second per worker.
    pub rate_per_worker: f64,
    /// How long to send for.
    pub duration: Duration,
    /// The IO mode of the master and of the workers' RpcEnvs.
    pub io_mode: IoMode,
    /// Client-mode RpcEnvs (connections) the workers share; 0 picks min(workers, 4).
    pub connections: usize,
}

impl Default for HeartbeatLoad {
    fn default() -> Self {
        Self {
            workers: 100,
            rate_per_worker: 10.0,
            duration: Duration::from_secs(5),
            io_mode: IoMode::Auto,
            connections: 0,
        }
    }
}

/// What a run measured (one JSON object with `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeartbeatReport {
    /// Workers heartbeating.
    pub workers: usize,
    /// Heartbeats per second per worker, as asked.
    pub rate_per_worker: f64,
    /// Seconds of sending.
    pub duration_secs: f64,
    /// The IO mode that ran.
    pub io_mode: String,
    /// Heartbeats sent.
    pub requests: u64,
    /// Heartbeats that failed or were not acknowledged.
    pub errors: u64,
    /// Heartbeats acknowledged per second.
    pub achieved_rate: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
}

/// Runs [`HeartbeatLoad`] with `workers`, `rate_per_worker` heartbeats per
/// second each, for `duration`, on the default IO mode.
///
/// # Errors
/// As [`HeartbeatLoad::run`].
pub fn heartbeat_load(workers: usize, rate_per_worker: f64, duration: Duration) -> Result<HeartbeatReport> {
    HeartbeatLoad {
        workers,
        rate_per_worker,
        duration,
        ..HeartbeatLoad::default()
    }
    .run()
}

struct Counters {
    hist: Mutex<Histogram<u64>>,
    sent: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
}

impl HeartbeatLoad {
    /// Starts a master on 127.0.0.1 (no web UI), registers the workers from
    /// client-mode RpcEnvs, sends heartbeats for `duration`, waits up to 5 s for
    /// the last answers, and reports.
    ///
    /// # Errors
    /// [`StandaloneError::Rpc`] when an RpcEnv cannot start or a registration
    /// fails; [`StandaloneError::BadSetting`] for zero workers or a rate that is not positive.
    pub fn run(&self) -> Result<HeartbeatReport> {
        if self.workers == 0 || self.rate_per_worker.is_nan() || self.rate_per_worker <= 0.0 {
            return Err(StandaloneError::BadSetting {
                key: "workers / rate".into(),
                value: format!("{} / {}", self.workers, self.rate_per_worker),
                expected: "at least 1 worker and a rate above 0".into(),
            });
        }
        let config = StandaloneConfig {
            master_port: 0,
            web_ui: false,
            ..StandaloneConfig::default()
        };
        let mut rpc_conf = RpcEnvConfig::default();
        rpc_conf.transport.io_mode = self.io_mode;
        let master = Master::start(&config, rpc_conf)?;
        let conns = if self.connections == 0 {
            self.workers.min(4)
        } else {
            self.connections
        };
        let envs = (0..conns)
            .map(|i| {
                let mut c = RpcEnvConfig::client(format!("load-{i}"));
                c.transport.io_mode = self.io_mode;
                c.transport.client_threads = 1;
                c.dispatcher_threads = 1;
                RpcEnv::create(c)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let refs: Vec<_> = envs
            .iter()
            .map(|e| e.endpoint_ref::<MasterMessage, MasterReply>(master.address(), MASTER_ENDPOINT_NAME))
            .collect();
        let pending: Vec<_> = (0..self.workers)
            .map(|i| {
                refs[i % conns].ask(MasterMessage::RegisterWorker(RegisterWorker {
                    id: format!("load-worker-{i}"),
                    host: "127.0.0.1".into(),
                    port: 0,
                    cores: 1,
                    memory_mb: 1024,
                    io_mode: master.io_mode().as_str().into(),
                    endpoint_name: "Worker".into(),
                }))
            })
            .collect();
        for p in pending {
            p.wait()?;
        }
        let counters = Arc::new(Counters {
            hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")),
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let started = Instant::now();
        std::thread::scope(|s| {
            for (c, master_ref) in refs.iter().enumerate() {
                let ids: Vec<String> = (c..self.workers)
                    .step_by(conns)
                    .map(|i| format!("load-worker-{i}"))
                    .collect();
                let counters = &counters;
                let interval = Duration::from_secs_f64(1.0 / (self.rate_per_worker * ids.len() as f64));
                s.spawn(move || {
                    let mut next = started;
                    let mut i = 0usize;
                    while next < started + self.duration {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        let sent_at = Instant::now();
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        let msg = MasterMessage::Heartbeat {
                            worker_id: ids[i % ids.len()].clone(),
                        };
                        let cs = Arc::clone(counters);
                        master_ref.ask(msg).on_complete(move |r| {
                            if matches!(r, Ok(MasterReply::HeartbeatAck)) {
                                let us = (sent_at.elapsed().as_micros() as u64).max(1);
                                let _ = cs.hist.lock().record(us);
                            } else {
                                cs.errors.fetch_add(1, Ordering::Relaxed);
                            }
                            cs.done.fetch_add(1, Ordering::Relaxed);
                        });
                        i += 1;
                        next += interval;
                    }
                });
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while counters.done.load(Ordering::Acquire) < counters.sent.load(Ordering::Acquire)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let requests = counters.sent.load(Ordering::Acquire);
        let unanswered = requests - counters.done.load(Ordering::Acquire);
        let errors = counters.errors.load(Ordering::Acquire) + unanswered;
        let h = counters.hist.lock();
        let report = HeartbeatReport {
            workers: self.workers,
            rate_per_worker: self.rate_per_worker,
            duration_secs: self.duration.as_secs_f64(),
            io_mode: master.io_mode().as_str().into(),
            requests,
            errors,
            achieved_rate: h.len() as f64 / elapsed,
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        };
        drop(h);
        for e in &envs {
            e.shutdown();
        }
        Ok(report)
    }
}

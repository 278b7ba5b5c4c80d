//! The JSON record of one run: one line of `runs.jsonl`, or of `run --json`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::histogram_files::Latency;
use crate::host::{CpuList, Environment, Host, RunPlacement};
use crate::measure::Measurement;
use crate::raw_frames::HEADER_LEN;
use crate::run::{Level, RunSpec};
use crate::workload::{System, Workload};

/// Every option that shaped a run, resolved (defaults, then `--config` file, then flags),
/// under the names of its flags and config keys. Output-only options (`--json`,
/// `--histogram-dir`, `--config` itself) are not echoed: they do not change what is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// `--io-mode` as asked (`auto` stays `auto`; the record's `system` is what it resolved to);
    /// `null` for a baseline.
    pub io_mode: Option<String>,
    /// `--baseline`: `raw-tokio`, `spark-nio`, `spark-epoll`; `null` for a transport backend.
    pub baseline: Option<String>,
    /// `--level`.
    pub level: Level,
    /// `--payload`, in bytes.
    pub payload: usize,
    /// `--response`, in bytes.
    pub response: usize,
    /// `--conns`.
    pub conns: usize,
    /// `--inflight`: requests in flight per connection (closed loop), or the cap on outstanding ones (open loop).
    pub inflight: usize,
    /// `--rate`, requests per second over all connections; `null` for a closed loop.
    pub rate: Option<u64>,
    /// `--duration`, in seconds.
    pub duration: f64,
    /// `--warmup`, in seconds (the Spark baseline raises it to what a JVM needs).
    pub warmup: f64,
    /// `--server-threads`.
    pub server_threads: usize,
    /// `--client-threads`.
    pub client_threads: usize,
    /// `--server-cpus`; `null` when not pinned.
    pub server_cpus: Option<Vec<usize>>,
    /// `--client-cpus`; `null` when not pinned.
    pub client_cpus: Option<Vec<usize>>,
    /// Bytes from which io_uring sends a body with `SENDMSG_ZC` (the `io_uring-zc` column);
    /// `null` for the defaults (no zero-copy sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_copy_threshold: Option<usize>,
    /// The transport's environment variables set for the run (name to value):
    /// `RPC_<KEY>` for each [`TransportConf`](transport::TransportConf) key
    /// (`RPC_SPIN_BEFORE_PARK_US`, say), which the run applies, and the
    /// io_uring backend's own `RPC_IO_URING_*` (zero-copy threshold, fixed
    /// files); they shape what is measured. Empty (and left out) when none is
    /// set. Records before this field was widened called it `io_uring_env`.
    #[serde(
        default,
        alias = "io_uring_env",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub transport_env: std::collections::BTreeMap<String, String>,
}

/// The transport variables among `vars`, by name: `RPC_` + a transport key,
/// and `RPC_IO_URING_*`.
pub fn transport_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> std::collections::BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| {
            k.starts_with("RPC_IO_URING_")
                || k.strip_prefix(transport::ENV_PREFIX)
                    .is_some_and(|key| transport::CONF_KEYS.contains(&key.to_ascii_lowercase().as_str()))
        })
        .collect()
}

impl RunOptions {
    /// The options of `spec`.
    pub fn of(spec: &RunSpec) -> Self {
        let w = spec.workload;
        let (io_mode, baseline) = match spec.system.io_mode() {
            Some(mode) => (Some(mode.as_str().to_string()), None),
            None => (None, Some(spec.system.name().to_string())),
        };
        Self {
            io_mode,
            baseline,
            level: spec.level,
            payload: w.payload,
            response: w.response,
            conns: w.conns,
            inflight: w.inflight,
            rate: w.rate,
            duration: spec.duration_s,
            warmup: spec.warmup_s,
            server_threads: spec.server_threads,
            client_threads: spec.client_threads,
            server_cpus: spec.server_cpus.as_ref().map(CpuList::cpus),
            client_cpus: spec.client_cpus.as_ref().map(CpuList::cpus),
            zero_copy_threshold: (spec.system == System::UringZeroCopy)
                .then_some(crate::workload::ZERO_COPY_THRESHOLD),
            transport_env: transport_env(std::env::vars()),
        }
    }
}

/// The result of one run, as written in JSON (one object per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The system that ran: `epoll`, `raw-tokio` (later `io_uring`).
    pub system: String,
    /// The layer loaded: `transport` or `rpc`.
    pub level: Level,
    /// Request body size, in bytes.
    pub payload: usize,
    /// Response body size, in bytes.
    pub response: usize,
    /// Connections.
    pub conns: usize,
    /// Requests in flight per connection (closed loop), or the most outstanding per connection (open loop).
    pub inflight: usize,
    /// Measured length of the measurement phase, in seconds.
    pub duration_s: f64,
    /// Warmup asked for, in seconds.
    pub warmup_s: f64,
    /// Requests completed while measuring.
    pub requests: u64,
    /// Failed requests over the whole run (warmup, measurement and drain).
    pub errors: u64,
    /// Requests per second achieved: `requests / duration_s` (under `rate` when an open
    /// loop cannot keep up).
    pub rps: f64,
    /// Megabytes (10^6 bytes) per second moved both ways: request plus response
    /// frames, their 21-byte headers included, times `rps`.
    pub mb_per_s: f64,
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
    /// Server event-loop threads.
    pub server_threads: usize,
    /// Client event-loop threads.
    pub client_threads: usize,
    /// Offered rate in requests per second for open-loop runs (`--rate`, the rate asked
    /// for; `rps` is what was achieved); `null` for closed loop. Open-loop latencies count
    /// from each request's due time on the timetable (coordinated omission corrected).
    pub rate: Option<f64>,
    /// Heap allocations per request while measuring: every allocation of the process (both
    /// ends, when they share it) divided by `requests`; `null` where not counted (the Spark
    /// baseline, in a JVM, or a process without the counting allocator).
    #[serde(default)]
    pub allocs_per_op: Option<f64>,
    /// Thread placement: pinned CPUs of server and client, or the allowed set.
    pub cpus: RunPlacement,
    /// The resolved options of the run; `null` in records written before they were echoed.
    #[serde(default)]
    pub options: Option<RunOptions>,
    /// The machine.
    pub host: Host,
    /// Short git revision of the source, or `unknown`.
    pub git_sha: String,
    /// Whether the source had uncommitted changes to tracked files.
    pub git_dirty: bool,
    /// When the run ended, RFC 3339 in UTC.
    pub timestamp: String,
    /// Stem of the run's histogram files (`<stem>.hgrm`, `<stem>.hist`, latencies in µs),
    /// relative to the results folder (`runs/001-epoll-transport-64B-1x1`) or to `run
    /// --histogram-dir`; `null` when they were not saved.
    #[serde(default)]
    pub histogram: Option<String>,
    /// The run's latency histogram, in µs: in memory only (not in the JSON; see `histogram`),
    /// `None` for a record read back from JSON.
    #[serde(skip)]
    pub latency: Option<Latency>,
}

impl Record {
    /// Builds the record of a run.
    ///
    /// # Errors
    /// [`BenchError::NoRequests`] when no request completed while measuring.
    pub fn new(spec: &RunSpec, m: &Measurement, env: &Environment) -> Result<Self, BenchError> {
        let w = spec.workload;
        let duration_s = m.elapsed.as_secs_f64();
        let requests = m.requests();
        if requests == 0 {
            return Err(BenchError::NoRequests {
                system: m.system.clone(),
                workload: w.to_string(),
                duration_s,
                errors: m.errors,
            });
        }
        let rps = requests as f64 / duration_s;
        let frame_bytes = (2 * HEADER_LEN + w.payload + w.response) as f64;
        let h = &m.latency_us;
        Ok(Self {
            system: m.system.clone(),
            level: spec.level,
            payload: w.payload,
            response: w.response,
            conns: w.conns,
            inflight: w.inflight,
            duration_s,
            warmup_s: spec.warmup_s,
            requests,
            errors: m.errors,
            rps,
            mb_per_s: rps * frame_bytes / 1e6,
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
            server_threads: spec.server_threads,
            client_threads: spec.client_threads,
            rate: w.rate.map(|r| r as f64),
            allocs_per_op: m.allocs.map(|a| a as f64 / requests as f64),
            cpus: RunPlacement::new(&env.cpus, spec.server_cpus, spec.client_cpus),
            options: Some(RunOptions::of(spec)),
            host: env.host.clone(),
            git_sha: env.git_sha.clone(),
            git_dirty: env.git_dirty,
            timestamp: jiff::Timestamp::now().to_string(),
            histogram: None,
            latency: Some(Latency(m.latency_us.clone())),
        })
    }

    /// The workload this record measured; `pinned_cpu` is set when the server's and the
    /// client's threads were all pinned to the same single CPU.
    pub fn workload(&self) -> Workload {
        let pinned_cpu = match (&self.cpus.server, &self.cpus.client) {
            (Some(server), Some(client)) if self.cpus.pinned && server == client && server.len() == 1 => {
                Some(server[0])
            }
            _ => None,
        };
        Workload {
            payload: self.payload,
            response: self.response,
            conns: self.conns,
            inflight: self.inflight,
            rate: self.rate.map(|r| r as u64),
            pinned_cpu,
        }
    }

    /// The record as one line of JSON (no trailing newline).
    ///
    /// # Errors
    /// [`BenchError::Json`] if serialization fails (it does not for these fields).
    pub fn to_json_line(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string(self)?)
    }
}

impl fmt::Display for Record {
    /// A short human summary over three lines (four with the allocation count).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} at {} level: {}", self.system, self.level, self.workload())?;
        writeln!(
            f,
            "  {:.0} req/s, {:.1} MB/s, {} requests in {:.2} s, {} errors",
            self.rps, self.mb_per_s, self.requests, self.duration_s, self.errors
        )?;
        write!(
            f,
            "  latency µs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        )?;
        if self.rate.is_some() {
            write!(f, " (from each request's due time: open loop)")?;
        }
        if let Some(a) = self.allocs_per_op {
            write!(f, "\n  {a:.2} heap allocations per request")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::measure::ConnStats;
    use crate::workload::System;

    /// A spec for `w` on `system` at the transport level, 1 s after 0.5 s of warmup, one thread each side.
    pub(crate) fn spec(system: System, w: Workload) -> RunSpec {
        spec_at(system, Level::Transport, w)
    }

    /// As [`spec`], at `level`.
    pub(crate) fn spec_at(system: System, level: Level, w: Workload) -> RunSpec {
        RunSpec {
            system,
            level,
            workload: w,
            duration_s: 1.0,
            warmup_s: 0.5,
            server_threads: 1,
            client_threads: 1,
            server_cpus: None,
            client_cpus: None,
        }
    }

    /// A transport-level record of `requests` requests of 10 µs each (p99 at 20 µs) over 2 s.
    pub(crate) fn record(system: System, w: Workload, requests: u64) -> Record {
        record_at(system, Level::Transport, w, requests)
    }

    /// As [`record`], at `level`.
    pub(crate) fn record_at(system: System, level: Level, w: Workload, requests: u64) -> Record {
        let mut c = ConnStats::default();
        c.latency_us.record_n(10, requests - requests / 50).unwrap();
        c.latency_us.record_n(20, requests / 50).unwrap();
        let mut m = Measurement::merge(system.name(), Duration::from_secs(2), [&c]);
        m.system = system.name().into();
        Record::new(&spec_at(system, level, w), &m, &Environment::detect()).unwrap()
    }

    #[test]
    fn json_has_every_field() {
        let r = record(System::RawTokio, Workload::echo(64, 1, 64), 1000);
        let v: serde_json::Value = serde_json::from_str(&r.to_json_line().unwrap()).unwrap();
        for key in [
            "system",
            "level",
            "payload",
            "response",
            "conns",
            "inflight",
            "duration_s",
            "warmup_s",
            "requests",
            "errors",
            "rps",
            "mb_per_s",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "cpus",
            "host",
            "git_sha",
            "git_dirty",
            "server_threads",
            "client_threads",
            "rate",
            "allocs_per_op",
            "options",
            "timestamp",
            "histogram",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["system"], "raw-tokio");
        assert_eq!(v["level"], "transport");
        assert_eq!(v["rate"], serde_json::Value::Null);
        assert_eq!(v["allocs_per_op"], serde_json::Value::Null);
        assert_eq!(v["options"]["baseline"], "raw-tokio");
        assert_eq!(
            (
                v["options"]["inflight"].as_u64(),
                v["options"]["duration"].as_f64()
            ),
            (Some(64), Some(1.0))
        );
        let rpc = record_at(
            System::Transport(transport::IoMode::Epoll),
            Level::Rpc,
            Workload::echo(64, 1, 1),
            10,
        );
        assert_eq!(serde_json::to_value(&rpc).unwrap()["level"], "rpc");
        assert_eq!(v["cpus"]["pinned"], false);
        assert!(v["cpus"]["allowed"].as_array().is_some_and(|a| !a.is_empty()));
        assert!(v["host"]["kernel"].is_string() && v["host"]["cores"].is_u64());
        assert!(
            v["timestamp"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok()
        );
        let back: Record = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
        // The histogram stays in memory; the JSON names its files.
        assert_eq!(v["histogram"], serde_json::Value::Null);
        assert!(v.get("latency").is_none());
        assert_eq!(r.latency.as_ref().map(|l| l.0.len()), Some(1000));
        assert!(back.latency.is_none());
    }

    #[test]
    fn rates_and_percentiles() {
        let r = record(System::RawTokio, Workload::echo(64, 1, 64), 1000);
        assert_eq!(r.rps, 500.0);
        // (21 + 64) × 2 bytes per request, 500 per second.
        assert!((r.mb_per_s - 500.0 * 170.0 / 1e6).abs() < 1e-9);
        assert_eq!((r.p50_us, r.p90_us, r.p99_us, r.max_us), (10, 10, 20, 20));
        assert!(r.to_string().contains("500 req/s"), "{r}");
    }

    #[test]
    fn zero_requests_is_an_error_that_says_so() {
        let w = Workload::echo(64, 1, 1);
        let m = Measurement::merge("epoll", Duration::from_secs(1), [&ConnStats::default()]);
        let e = Record::new(&spec(System::RawTokio, w), &m, &Environment::detect()).unwrap_err();
        assert!(e.to_string().contains("no request completed"), "{e}");
    }

    #[test]
    fn transport_env_keeps_only_the_transport_variables() {
        let vars = [
            ("RPC_SPIN_BEFORE_PARK_US", "0"),
            ("RPC_ASK_TIMEOUT_MS", "5"),
            ("PATH", "/bin"),
            ("RPC_IO_URING_FIXED_FILES", "0"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = super::transport_env(vars);
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            [
                ("RPC_IO_URING_FIXED_FILES".to_string(), "0".to_string()),
                ("RPC_SPIN_BEFORE_PARK_US".to_string(), "0".to_string())
            ]
        );
    }

    #[test]
    fn records_naming_io_uring_env_still_read() {
        let mut options = RunOptions::of(&spec(System::RawTokio, Workload::echo(64, 1, 1)));
        options
            .transport_env
            .insert("RPC_IO_URING_FIXED_FILES".into(), "0".into());
        let json = serde_json::to_string(&options).unwrap();
        assert!(json.contains("\"transport_env\""), "{json}");
        let old = json.replace("\"transport_env\"", "\"io_uring_env\"");
        let read: RunOptions = serde_json::from_str(&old).unwrap();
        assert_eq!(read, options);
    }
}

//! The Apache Spark baseline: Spark network-common's own `TransportServer` and
//! `TransportClient` (Netty, `spark.rpc.io.mode` NIO or EPOLL), one server and
//! one client event-loop thread unless set, run in a JVM by
//! `scripts/spark-baseline.sh` (`baselines/spark/SparkTransportBench.java`)
//! with the same workload, and read back as the same [`Measurement`].
//!
//! The JVM compiles its hot paths while it runs, so a Spark run warms up for
//! at least [`JVM_MIN_WARMUP_S`] whatever `--warmup` says; the record states
//! the warmup used.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::error::BenchError;
use crate::measure::{Measurement, new_histogram};
use crate::run::RunSpec;
use crate::workload::SparkIo;

/// Shortest warmup of a Spark run, in seconds (JIT compilation).
pub const JVM_MIN_WARMUP_S: f64 = 1.5;

/// Environment variable naming the baseline script, if not the repository's.
pub const SCRIPT_ENV: &str = "RPC_BENCH_SPARK_SCRIPT";

/// The script that installs, builds and runs the baseline.
pub fn script() -> PathBuf {
    std::env::var_os(SCRIPT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/spark-baseline.sh"))
}

/// Whether the baseline can run here: installs pyspark and compiles the Java
/// program on first use (`spark-baseline.sh --setup`).
///
/// # Errors
/// [`BenchError::BaselineUnavailable`] saying why (no Java, no python3, the
/// install failed), with the script's own message.
pub fn check_available() -> Result<(), BenchError> {
    let out = Command::new("bash")
        .arg(script())
        .arg("--setup")
        .output()
        .map_err(|source| BenchError::Io {
            what: "start scripts/spark-baseline.sh",
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::BaselineUnavailable {
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `spec` with the warmup a JVM needs.
pub fn with_jvm_warmup(spec: &RunSpec) -> RunSpec {
    RunSpec {
        warmup_s: spec.warmup_s.max(JVM_MIN_WARMUP_S),
        ..*spec
    }
}

/// What the Java program prints.
#[derive(Debug, Deserialize)]
struct JavaOutput {
    requests: u64,
    errors: u64,
    mismatches: u64,
    duration_s: f64,
    /// Every latency of the measurement as (µs, count) pairs.
    latency_us: Vec<(u64, u64)>,
}

/// Runs Spark's transport on `spec`'s workload.
///
/// # Errors
/// [`BenchError::BaselineUnavailable`] when the script fails (its stderr
/// says why); [`BenchError::SparkOutput`] when its output is not the expected JSON.
pub fn run(io: SparkIo, spec: &RunSpec) -> Result<Measurement, BenchError> {
    let w = &spec.workload;
    let args = [
        "bench".to_string(),
        "--io-mode".into(),
        io.spark_name().into(),
        "--payload".into(),
        w.payload.to_string(),
        "--response".into(),
        w.response.to_string(),
        "--conns".into(),
        w.conns.to_string(),
        "--inflight".into(),
        w.inflight.to_string(),
        "--duration".into(),
        spec.duration_s.to_string(),
        "--warmup".into(),
        spec.warmup_s.to_string(),
        "--server-threads".into(),
        spec.server_threads.to_string(),
        "--client-threads".into(),
        spec.client_threads.to_string(),
    ];
    let out = Command::new("bash")
        .arg(script())
        .args(&args)
        .output()
        .map_err(|source| BenchError::Io {
            what: "start scripts/spark-baseline.sh",
            source,
        })?;
    if !out.status.success() {
        return Err(BenchError::BaselineUnavailable {
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    parse(line, io)
}

fn parse(line: &str, io: SparkIo) -> Result<Measurement, BenchError> {
    let o: JavaOutput = serde_json::from_str(line).map_err(|e| BenchError::SparkOutput {
        reason: format!("{e}: `{}`", line.chars().take(200).collect::<String>()),
    })?;
    let mut latency_us = new_histogram();
    for (us, count) in &o.latency_us {
        latency_us
            .record_n((*us).max(1), *count)
            .map_err(|e| BenchError::SparkOutput {
                reason: format!("latency {us} µs out of the histogram's range: {e}"),
            })?;
    }
    if latency_us.len() != o.requests {
        return Err(BenchError::SparkOutput {
            reason: format!("{} latencies for {} requests", latency_us.len(), o.requests),
        });
    }
    Ok(Measurement {
        system: format!("spark-{}", io.spark_name().to_ascii_lowercase()),
        elapsed: Duration::from_secs_f64(o.duration_s),
        latency_us,
        errors: o.errors + o.mismatches,
        allocs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_java_programs_line() {
        let line = r#"{"requests":3,"errors":1,"mismatches":0,"duration_s":0.5,"p50_us":5,"p90_us":9,"p99_us":9,"p999_us":9,"max_us":9,"mean_us":6.0,"io_mode":"EPOLL","spark_version":"4.3.0","latency_us":[[0,1],[5,1],[9,1]]}"#;
        let m = parse(line, SparkIo::Epoll).unwrap();
        assert_eq!(m.system, "spark-epoll");
        assert_eq!((m.requests(), m.errors), (3, 1));
        assert_eq!(m.latency_us.max(), 9);
        assert!(parse("{}", SparkIo::Nio).is_err());
        assert!(
            parse(
                r#"{"requests":2,"errors":0,"mismatches":0,"duration_s":1,"latency_us":[[1,1]]}"#,
                SparkIo::Nio
            )
            .is_err()
        );
    }

    #[test]
    fn jvm_warmup_has_a_floor() {
        let spec = RunSpec {
            system: crate::workload::System::Spark(SparkIo::Nio),
            level: crate::run::Level::Transport,
            workload: crate::workload::Workload::default_matrix()[0],
            duration_s: 1.0,
            warmup_s: 0.5,
            server_threads: 1,
            client_threads: 1,
            server_cpus: None,
            client_cpus: None,
        };
        assert_eq!(with_jvm_warmup(&spec).warmup_s, JVM_MIN_WARMUP_S);
    }
}

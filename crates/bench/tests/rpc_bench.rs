//! Runs the real `rpc-bench` binary with tiny durations.

use std::process::{Command, Output};

use serde_json::Value;

const FIELDS: [&str; 25] = [
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
    "timestamp",
];

fn rpc_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpc-bench"))
        .args(args)
        .output()
        .expect("rpc-bench starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs one `run --json` at `level` and checks it printed exactly one complete, error-free record.
fn one_json_run(system_args: &[&str], system: &str, level: &str) -> Value {
    let mut args = vec!["run"];
    args.extend_from_slice(system_args);
    args.extend([
        "--level",
        level,
        "--payload",
        "64",
        "--inflight",
        "64",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--json",
    ]);
    let out = rpc_bench(&args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one JSON line, got: {stdout}");
    let v: Value = serde_json::from_str(lines[0]).expect("valid JSON");
    for f in FIELDS {
        assert!(v.get(f).is_some(), "missing `{f}` in {v}");
    }
    assert_eq!(v["system"], system);
    assert_eq!(v["level"], level);
    assert_eq!(
        (v["payload"].as_u64(), v["response"].as_u64()),
        (Some(64), Some(64))
    );
    assert_eq!((v["conns"].as_u64(), v["inflight"].as_u64()), (Some(1), Some(64)));
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["requests"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["rps"].as_f64().unwrap() > 0.0 && v["duration_s"].as_f64().unwrap() >= 0.3,
        "{v}"
    );
    assert!(
        v["p50_us"].as_u64().unwrap() <= v["p99_us"].as_u64().unwrap(),
        "{v}"
    );
    assert_eq!(v["rate"], Value::Null);
    assert_eq!(v["cpus"]["pinned"], false);
    assert!(v["host"]["cores"].as_u64().unwrap() >= 1);
    v
}

#[test]
fn epoll_run_prints_one_json_record() {
    one_json_run(&["--io-mode", "epoll"], "epoll", "transport");
}

#[test]
fn raw_tokio_run_prints_one_json_record() {
    one_json_run(&["--baseline", "raw-tokio"], "raw-tokio", "transport");
}

#[test]
fn epoll_rpc_run_prints_one_json_record() {
    one_json_run(&["--io-mode", "epoll"], "epoll", "rpc");
}

#[test]
fn rpc_level_with_several_client_envs() {
    let out = rpc_bench(&[
        "run",
        "--io-mode",
        "epoll",
        "--level",
        "rpc",
        "--conns",
        "4",
        "--inflight",
        "2",
        "--duration",
        "0.2",
        "--warmup",
        "0.05",
        "--json",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "failed: {stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!((v["level"].as_str(), v["conns"].as_u64()), (Some("rpc"), Some(4)));
    assert_eq!(v["inflight"], 2);
    assert!(v["requests"].as_u64().unwrap() > 0 && v["errors"] == 0, "{v}");
}

#[test]
fn raw_tokio_has_no_rpc_level() {
    let out = rpc_bench(&["run", "--baseline", "raw-tokio", "--level", "rpc"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("raw-tokio has only the transport level"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn io_uring_unavailable_fails_clearly() {
    for level in ["transport", "rpc"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rpc-bench"))
            .args([
                "run",
                "--io-mode",
                "io_uring",
                "--level",
                level,
                "--duration",
                "0.1",
                "--warmup",
                "0",
            ])
            // Where the kernel has io_uring, this makes its probe fail, as it would under seccomp.
            .env("RPC_IO_URING_FORCE_UNAVAILABLE", "1")
            .output()
            .expect("rpc-bench starts");
        assert!(!out.status.success(), "{level}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("io_uring") && stderr.contains("not available"),
            "{level}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{level}");
    }
}

#[test]
fn human_summary_without_json() {
    let out = rpc_bench(&[
        "run",
        "--baseline",
        "raw-tokio",
        "--payload",
        "4KiB",
        "--inflight",
        "4",
        "--duration",
        "0.2",
        "--warmup",
        "0",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("raw-tokio") && stdout.contains("req/s") && stdout.contains("p99"),
        "{stdout}"
    );
}

#[test]
fn matrix_writes_runs_and_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = rpc_bench(&[
        "matrix",
        "--duration",
        "0.2",
        "--warmup",
        "0.05",
        "--repeat",
        "1",
        "--results-dir",
        dir,
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "matrix failed: {stderr}");
    for needle in [
        "epoll transport req/s",
        "raw-tokio req/s",
        "epoll rpc req/s",
        "epoll rpc p50/p99 µs",
        "epoll / raw-tokio",
        "epoll rpc / transport",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in {stdout}");
    }
    assert!(stdout.contains("64 B, 256 conns × 1 in flight"), "{stdout}");

    let folders: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let runs = std::fs::read_to_string(folders[0].join("runs.jsonl")).unwrap();
    let records: Vec<Value> = runs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 15, "{runs}");
    let columns: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["system"].as_str().unwrap(), r["level"].as_str().unwrap()))
        .collect();
    let abc = [
        ("epoll", "transport"),
        ("raw-tokio", "transport"),
        ("epoll", "rpc"),
    ];
    assert_eq!(columns[..6], [abc, abc].concat());
    for r in &records {
        assert!(r["requests"].as_u64().unwrap() > 0 && r["errors"] == 0, "{r}");
    }

    let summary = std::fs::read_to_string(folders[0].join("summary.md")).unwrap();
    for needle in [
        "Command: `",
        "Machine:",
        "Placement:",
        "| workload",
        "Levels: transport (",
        " and rpc (",
        "medians of 1 interleaved runs",
    ] {
        assert!(
            summary.contains(needle),
            "summary.md lacks {needle:?}:\n{summary}"
        );
    }
}

//! What issue 8's targets are measured with, run for real with tiny durations on both IO
//! modes: `rpc-bench idle-conns`, the matrix's pinned row and `io_uring-zc` column, and
//! `rpc-bench check` on the folder a matrix wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn rpc_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpc-bench"))
        .args(args)
        .output()
        .expect("rpc-bench starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `idle-conns --json` with 200 connections on `mode`: one record, counted by the server.
fn idle_conns(mode: &str) {
    let out = rpc_bench(&["idle-conns", "--io-mode", mode, "--connections", "200", "--json"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "idle-conns on {mode} failed: {stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["io_mode"], mode);
    assert_eq!(v["connections"], 200);
    assert_eq!(
        v["server_connections"], 208,
        "200 idle and 8 warmup connections: {v}"
    );
    let (before, after) = (
        v["rss_before_bytes"].as_u64().unwrap(),
        v["rss_after_bytes"].as_u64().unwrap(),
    );
    assert!(before > 0 && after > 0, "{v}");
    let per_conn = (after as f64 - before as f64) / 200.0;
    assert!(
        (v["rss_per_conn_bytes"].as_f64().unwrap() - per_conn).abs() < 1e-6,
        "{v}"
    );
    let buffers = |k: &str| v[k].as_u64().unwrap() as f64;
    let per_conn = (buffers("pool_buffers_after") - buffers("pool_buffers_before")) / 200.0;
    assert!(
        (v["buffers_per_conn"].as_f64().unwrap() - per_conn).abs() < 1e-9,
        "{v}"
    );

    let out = rpc_bench(&["idle-conns", "--io-mode", mode, "--connections", "50"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("50 idle connections to the {mode} server"))
            && stdout.contains("B per idle connection")
            && stdout.contains("per idle connection (an idle connection holds"),
        "{stdout}"
    );
}

#[test]
fn idle_connections_on_epoll() {
    idle_conns("epoll");
}

#[test]
fn idle_connections_on_io_uring() {
    idle_conns("io_uring");
}

#[test]
fn idle_conns_refuses_more_connections_than_descriptors() {
    let out = rpc_bench(&["idle-conns", "--io-mode", "epoll", "--connections", "100000000"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("hard limit") && stderr.contains("fewer connections"),
        "{stderr}"
    );
}

/// The one results folder under `parent`.
fn only_folder(parent: &Path) -> PathBuf {
    let folders: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    folders[0].clone()
}

/// A tiny matrix of `systems` at the transport level, its records, stdout and folder.
fn tiny_matrix(tmp: &Path, systems: &str) -> (Vec<Value>, String, PathBuf) {
    let out = rpc_bench(&[
        "matrix",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--repeat",
        "1",
        "--systems",
        systems,
        "--levels",
        "transport",
        "--idle-conns",
        "100",
        "--results-dir",
        tmp.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "matrix failed: {stderr}");
    let dir = only_folder(tmp);
    let runs = std::fs::read_to_string(dir.join("runs.jsonl")).unwrap();
    let records = runs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (records, stdout, dir)
}

/// The last cell of a Markdown table row.
fn status(row: &str) -> &str {
    row.trim_end_matches('|')
        .rsplit('|')
        .next()
        .unwrap_or_default()
        .trim()
}

/// `rpc-bench check` on `dir`: exit 0, one line per target (36), and the verdicts given.
fn check(dir: &Path) -> String {
    let out = rpc_bench(&["check", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "check failed: {stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
        .collect();
    assert_eq!(rows.len(), 36, "{stdout}");
    for row in rows {
        assert!(["MET", "NOT MET", "NOT MEASURED"].contains(&status(row)), "{row}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("check.md"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("| 1 ")),
        stdout.lines().find(|l| l.starts_with("| 1 ")),
        "check.md holds the same report"
    );
    stdout
}

#[test]
fn io_uring_matrix_has_the_pinned_row_the_zero_copy_column_and_a_checked_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (records, stdout, dir) = tiny_matrix(tmp.path(), "io_uring,io_uring-zc,raw-tokio");
    // 7 workloads on io_uring and raw-tokio, the 1 MiB one also on io_uring-zc.
    assert_eq!(records.len(), 15, "{records:?}");
    let zc: Vec<&Value> = records.iter().filter(|r| r["system"] == "io_uring-zc").collect();
    assert_eq!(zc.len(), 1);
    assert_eq!(
        (zc[0]["payload"].as_u64(), zc[0]["inflight"].as_u64()),
        (Some(1 << 20), Some(4))
    );
    assert_eq!(zc[0]["options"]["io_mode"], "io_uring");
    assert!(
        zc[0]["options"]["zero_copy_threshold"].as_u64().is_some(),
        "{}",
        zc[0]
    );
    assert!(
        zc[0]["requests"].as_u64().unwrap() > 0 && zc[0]["errors"] == 0,
        "{}",
        zc[0]
    );
    let pinned: Vec<&Value> = records.iter().filter(|r| r["cpus"]["pinned"] == true).collect();
    assert_eq!(pinned.len(), 2, "io_uring and raw-tokio on the pinned row");
    for r in &pinned {
        assert_eq!(r["cpus"]["server"], r["cpus"]["client"], "{r}");
        assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
    }
    for needle in [
        "io_uring-zc transport req/s",
        "io_uring-zc / raw-tokio",
        "pinned to CPU ",
        "io_uring-zc transport MB/s",
        "100 idle connections to the io_uring server",
        "Issue 8's targets: ",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in {stdout}");
    }
    let idle: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("idle_conns.json")).unwrap()).unwrap();
    assert_eq!(idle.as_array().map(Vec::len), Some(1), "io_uring only: {idle}");
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    for needle in [
        "## Idle connections",
        "[`check.md`](check.md)",
        "Bulk workloads in bytes",
        "io_uring-zc is io_uring",
    ] {
        assert!(
            summary.contains(needle),
            "summary.md lacks {needle:?}:\n{summary}"
        );
    }

    let report = check(&dir);
    // Only figures this folder has are judged; the Spark and rpc columns did not run.
    for (what, status) in [
        (
            "io_uring transport / raw-tokio p50 µs, 64 B, 1 conn × 1 in flight, pinned",
            "MET",
        ),
        ("io_uring-zc transport / epoll transport MB/s", "NOT MEASURED"),
        ("epoll rpc / spark-epoll req/s", "NOT MEASURED"),
        ("io_uring server RSS growth per idle connection", "NOT MEASURED"),
        ("io_uring pool buffers held per idle connection", "MET"),
    ] {
        let row = report
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in {report}"));
        let judged = self::status(row) != "NOT MEASURED";
        assert_eq!(judged, status != "NOT MEASURED", "{row}");
    }

    // `report` rewrites check.md from the folder alone, the same.
    let before = std::fs::read_to_string(dir.join("check.md")).unwrap();
    std::fs::remove_file(dir.join("check.md")).unwrap();
    let out = rpc_bench(&["report", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("check.md")).unwrap(), before);
}

#[test]
fn check_refuses_a_folder_it_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rpc_bench(&["check", tmp.path().join("missing").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no such folder"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_matrix_whose_idle_connections_cannot_be_opened_keeps_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rpc_bench(&[
        "matrix",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--repeat",
        "1",
        "--systems",
        "epoll",
        "--levels",
        "transport",
        "--idle-conns",
        "100000000",
        "--results-dir",
        tmp.path().to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "matrix failed: {stderr}");
    assert!(
        stderr.contains("hard limit") && stderr.contains("not measured"),
        "{stderr}"
    );
    let dir = only_folder(tmp.path());
    assert_eq!(
        std::fs::read_to_string(dir.join("idle_conns.json"))
            .unwrap()
            .trim(),
        "[]"
    );
    let report = check(&dir);
    let row = report
        .lines()
        .find(|l| l.contains("epoll server RSS growth"))
        .unwrap();
    assert_eq!(status(row), "NOT MEASURED", "{row}");
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("| epoll transport req/s"), "{summary}");
    assert!(
        summary.contains("Not measured: `idle_conns.json` is empty"),
        "{summary}"
    );
}

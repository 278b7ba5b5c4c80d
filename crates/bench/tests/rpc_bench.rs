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
    let allocs = v["allocs_per_op"].as_f64().expect("allocs_per_op is a number");
    assert!(allocs.is_finite() && allocs >= 0.0, "{v}");
    assert_eq!(v["options"]["inflight"], 64, "{v}");
    v
}

/// Runs `rpc-bench run ARGS --json` (0.3 s after 0.1 s of warmup) and returns its record.
fn json_run(args: &[&str]) -> Value {
    let mut all = vec!["run", "--duration", "0.3", "--warmup", "0.1", "--json"];
    all.extend_from_slice(args);
    let out = rpc_bench(&all);
    assert!(out.status.success(), "{all:?} failed: {}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).trim()).expect("one JSON line")
}

#[test]
fn open_loop_runs_at_the_rate_asked() {
    for (system, level) in [
        (["--io-mode", "epoll"], "transport"),
        (["--io-mode", "epoll"], "rpc"),
        (["--baseline", "raw-tokio"], "transport"),
    ] {
        let mut args = system.to_vec();
        args.extend(["--level", level, "--rate", "2000", "--conns", "2"]);
        let v = json_run(&args);
        assert_eq!(
            (v["rate"].as_f64(), v["errors"].as_u64()),
            (Some(2000.0), Some(0)),
            "{v}"
        );
        assert_eq!(
            v["inflight"], 64,
            "--rate without --inflight caps at 64 outstanding: {v}"
        );
        let rps = v["rps"].as_f64().unwrap();
        assert!(
            (1500.0..=2500.0).contains(&rps),
            "{args:?}: {rps} req/s at 2000 asked: {v}"
        );
        assert!(v["allocs_per_op"].as_f64().unwrap().is_finite(), "{v}");
    }
}

#[test]
fn pinned_run_says_where_it_ran() {
    let v = json_run(&["--io-mode", "epoll", "--server-cpus", "0", "--client-cpus", "0-0"]);
    assert_eq!(v["cpus"]["pinned"], true, "{v}");
    assert_eq!(
        (v["cpus"]["server"].clone(), v["cpus"]["client"].clone()),
        (serde_json::json!([0]), serde_json::json!([0]))
    );
    assert_eq!(v["options"]["server_cpus"], serde_json::json!([0]));
    let v = json_run(&["--baseline", "raw-tokio", "--client-cpus", "0"]);
    assert_eq!(
        (v["cpus"]["pinned"].clone(), v["cpus"]["client"].clone()),
        (Value::Bool(true), serde_json::json!([0]))
    );
    assert_eq!(
        v["cpus"]["server"], v["cpus"]["allowed"],
        "an unpinned side shows the allowed set"
    );
    let out = rpc_bench(&["run", "--server-cpus", "200", "--duration", "0.1"]);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("is not available to this process"),
        "{stderr}"
    );
    let out = rpc_bench(&["run", "--client-cpus", "1-x"]);
    assert!(!out.status.success() && text(&out.stderr).contains("is not a CPU list"));
}

#[test]
fn config_file_options_are_echoed_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.toml");
    std::fs::write(
        &path,
        "io_mode = \"epoll\"\npayload = 128\nrate = 1000\ninflight = 8\nwarmup = 0.05\n",
    )
    .unwrap();
    let v = json_run(&["--config", path.to_str().unwrap(), "--payload", "64"]);
    assert_eq!(
        (v["system"].as_str(), v["payload"].as_u64()),
        (Some("epoll"), Some(64)),
        "{v}"
    );
    let o = &v["options"];
    assert_eq!(
        (o["io_mode"].as_str(), o["rate"].as_u64(), o["inflight"].as_u64()),
        (Some("epoll"), Some(1000), Some(8))
    );
    assert_eq!(
        (
            o["payload"].as_u64(),
            o["warmup"].as_f64(),
            o["duration"].as_f64()
        ),
        (Some(64), Some(0.1), Some(0.3))
    );
    std::fs::write(&path, "payload = 64\nthreads = 2\nrates = 1\n").unwrap();
    let out = rpc_bench(&["run", "--config", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown keys `rates`, `threads`"), "{stderr}");
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
    let hist = tempfile::tempdir().unwrap();
    let out = rpc_bench(&[
        "run",
        "--histogram-dir",
        hist.path().to_str().unwrap(),
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
    // --histogram-dir saved the run's histogram, named in the record.
    assert_eq!(v["histogram"], "epoll-rpc-64B-4x2", "{v}");
    let hgrm = std::fs::read_to_string(hist.path().join("epoll-rpc-64B-4x2.hgrm")).unwrap();
    assert!(
        hgrm.contains(&format!(
            "Total count    = {:>12}]",
            v["requests"].as_u64().unwrap()
        )),
        "{hgrm}"
    );
    assert!(hist.path().join("epoll-rpc-64B-4x2.hist").is_file());
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
        "--systems",
        "epoll,raw-tokio",
        "--idle-conns",
        "100",
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
        "epoll rpc-loop req/s",
        "epoll rpc / rpc-loop",
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
    assert_eq!(records.len(), 28, "7 workloads × 4 columns: {runs}");
    assert!(
        stdout.contains("64 B, 1 conn at 20000 req/s (≤ 64 in flight)"),
        "{stdout}"
    );
    for r in &records[20..24] {
        assert_eq!(
            (r["rate"].as_f64(), r["options"]["rate"].as_u64()),
            (Some(20000.0), Some(20000)),
            "{r}"
        );
    }
    // The last row: 64 B × 1 with server and client threads all on one CPU, on every column.
    assert!(
        stdout.contains("64 B, 1 conn × 1 in flight, pinned to CPU "),
        "{stdout}"
    );
    for r in &records[24..] {
        assert_eq!(
            (r["payload"].as_u64(), r["inflight"].as_u64()),
            (Some(64), Some(1))
        );
        let cpus = &r["cpus"];
        assert!(cpus["pinned"] == true && cpus["server"] == cpus["client"], "{r}");
        assert_eq!(cpus["server"].as_array().map(Vec::len), Some(1), "{r}");
    }
    assert!(records[..24].iter().all(|r| r["cpus"]["pinned"] == false));
    let columns: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["system"].as_str().unwrap(), r["level"].as_str().unwrap()))
        .collect();
    let abc = [
        ("epoll", "transport"),
        ("raw-tokio", "transport"),
        ("epoll", "rpc"),
        ("epoll", "rpc-loop"),
    ];
    assert_eq!(columns[..8], [abc, abc].concat());
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
    // The idle connections of epoll, the one IO mode here, and the targets checked.
    assert!(
        stdout.contains("100 idle connections to the epoll server"),
        "{stdout}"
    );
    let idle: Value =
        serde_json::from_str(&std::fs::read_to_string(folders[0].join("idle_conns.json")).unwrap()).unwrap();
    assert_eq!(idle[0]["io_mode"], "epoll", "{idle}");
    assert!(summary.contains("## Idle connections") && summary.contains("[`check.md`](check.md)"));
    let out = rpc_bench(&["check", folders[0].to_str().unwrap()]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "check failed: {}", text(&out.stderr));
    let row = report
        .lines()
        .find(|l| l.contains("epoll pool buffers held"))
        .unwrap();
    assert!(
        !row.contains("NOT MEASURED"),
        "judged from idle_conns.json: {row}"
    );
    let row = report
        .lines()
        .find(|l| l.contains("epoll transport / raw-tokio p50 µs"))
        .unwrap();
    assert!(!row.contains("NOT MEASURED"), "judged from the pinned row: {row}");
    check_report_files(&folders[0], &records, &stdout, &summary);
}

/// The files a person reads in a matrix results folder, `report` re-rendering them unchanged,
/// and `merge` of the runs' histograms.
fn check_report_files(dir: &std::path::Path, records: &[Value], matrix_stdout: &str, summary: &str) {
    let machine: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("machine.json")).unwrap()).unwrap();
    for key in ["kernel", "cpu_model", "cores", "rustc", "git_sha", "git_dirty"] {
        assert!(machine.get(key).is_some(), "machine.json lacks {key}: {machine}");
    }
    assert!(dir.join("matrix.json").is_file());
    let mut hists = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let stem = r["histogram"].as_str().expect("each record names its histogram");
        assert!(stem.starts_with(&format!("runs/{:03}-", i + 1)), "{stem}");
        let hgrm = std::fs::read_to_string(dir.join(format!("{stem}.hgrm"))).unwrap();
        assert!(
            hgrm.trim_start().starts_with("Value") && hgrm.contains("#[Buckets = "),
            "{hgrm}"
        );
        hists.push(dir.join(format!("{stem}.hist")));
    }
    let columns = ["epoll transport", "raw-tokio", "epoll rpc", "epoll rpc-loop"];
    let pinned_cpu = records[26]["cpus"]["server"][0].as_u64().unwrap();
    let pinned_slug = format!("64B-1x1-cpu{pinned_cpu}");
    for slug in [
        "64B-1x1",
        "64B-1x64",
        "4KiB-1x16",
        "1MiB-1x4",
        "64B-256x1",
        &pinned_slug,
    ] {
        for kind in ["latency", "throughput"] {
            let rel = format!("plots/{slug}-{kind}.svg");
            assert!(
                summary.contains(&format!("]({rel})")),
                "summary.md does not link {rel}"
            );
            let svg = std::fs::read_to_string(dir.join(&rel)).unwrap();
            let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let texts: Vec<&str> = doc
                .descendants()
                .filter(|n| n.has_tag_name("text"))
                .filter_map(|n| n.text().map(str::trim))
                .collect();
            for c in columns {
                assert!(texts.contains(&c), "{rel} has no {c:?} in {texts:?}");
            }
        }
    }

    // `report` re-renders the same table and summary.md from the folder alone.
    std::fs::remove_dir_all(dir.join("plots")).unwrap();
    let out = rpc_bench(&["report", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "report failed: {stderr}");
    let table = |s: &str| {
        s.lines()
            .take_while(|l| !l.starts_with("Medians of"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let matrix_table = table(matrix_stdout);
    assert!(
        stdout.starts_with(&matrix_table),
        "report printed:\n{stdout}\nthe matrix:\n{matrix_table}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("summary.md")).unwrap(), summary);
    assert!(dir.join("plots/64B-1x1-latency.svg").is_file());

    // `merge` adds every run's histogram: the count is every request measured.
    let out_stem = dir.join("merged");
    let mut args = vec![
        "merge".to_string(),
        "--out".into(),
        out_stem.to_string_lossy().into_owned(),
    ];
    args.extend(hists.iter().map(|p| p.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = rpc_bench(&args);
    assert!(out.status.success(), "merge failed: {}", text(&out.stderr));
    let merged: Value = serde_json::from_str(text(&out.stdout).trim()).expect("one JSON line");
    let requests: u64 = records.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert_eq!(
        (merged["count"].as_u64(), merged["files"].as_u64()),
        (Some(requests), Some(records.len() as u64))
    );
    let max = records.iter().map(|r| r["max_us"].as_u64().unwrap()).max();
    assert_eq!(merged["max_us"].as_u64(), max);
    assert!(merged["p50_us"].as_u64() <= merged["p99_us"].as_u64());
    assert!(dir.join("merged.hgrm").is_file() && dir.join("merged.hist").is_file());
}

/// The Spark baseline runs where Java and python3 are (CI has both; its first
/// use installs pyspark); elsewhere the run must fail saying why.
#[test]
fn spark_baseline_runs_or_says_why_not() {
    let out = rpc_bench(&[
        "run",
        "--baseline",
        "spark-epoll",
        "--payload",
        "64",
        "--inflight",
        "8",
        "--duration",
        "0.3",
        "--json",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let has_java = std::process::Command::new("javac")
        .arg("-version")
        .output()
        .is_ok();
    if !has_java && std::env::var_os("CI").is_none() {
        assert!(
            !out.status.success() && stderr.contains("Spark baseline"),
            "{stderr}"
        );
        return;
    }
    assert!(out.status.success(), "spark-epoll failed: {stderr}");
    let record: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(record["system"], "spark-epoll");
    assert_eq!(record["errors"], 0);
    assert!(record["requests"].as_u64().unwrap() > 0);
    assert!(
        record["warmup_s"].as_f64().unwrap() >= 1.5,
        "the JVM gets its warmup"
    );
}

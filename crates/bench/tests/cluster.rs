//! `scripts/run-cluster-bench.sh --netns 3`: one `rpc-bench serve` and two `rpc-bench load`s in
//! three network namespaces of this machine, their records and histograms gathered and merged.
//!
//! Needs root and the `ip` command: without root it fails under `CI` and is skipped, saying
//! so, elsewhere; without `ip` it is skipped, saying so.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn script() -> String {
    format!(
        "{}/../../scripts/run-cluster-bench.sh",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Whether the netns run can happen here; skips loudly (or fails under `CI` without root) if not.
fn can_run(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: not root; CI must run the network-namespace cluster test as root"
        );
        eprintln!("\n*** SKIPPED {test}: needs root for network namespaces (run as root or with sudo) ***\n");
        return false;
    }
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ip {
        eprintln!("\n*** SKIPPED {test}: the `ip` command (iproute2) is missing ***\n");
    }
    ip
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn netns_cluster_gathers_and_merges_every_client() {
    if !can_run("netns_cluster_gathers_and_merges_every_client") {
        return;
    }
    let results = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(script())
        .args(["--netns", "3", "--bin", env!("CARGO_BIN_EXE_rpc-bench")])
        .args([
            "--io-mode",
            "epoll",
            "--payload",
            "4KiB",
            "--inflight",
            "8",
            "--verify",
        ])
        .args(["--duration", "1", "--warmup", "0.3"])
        .arg("--results-dir")
        .arg(results.path())
        .output()
        .expect("bash starts");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "the cluster run failed: {stderr}");

    let runs = lines(&results.path().join("runs.jsonl"));
    assert_eq!(runs.len(), 2, "one record per client: {runs:?}");
    let mut requests = 0;
    for (run, client) in runs.iter().zip(["10.77.0.2", "10.77.0.3"]) {
        assert_eq!(run["client"], client, "{run}");
        assert_eq!(
            (run["system"].as_str(), run["verified"].as_bool()),
            (Some("epoll"), Some(true))
        );
        assert_eq!(
            run["server"].as_str().map(|s| s.starts_with("10.77.0.1:")),
            Some(true),
            "{run}"
        );
        assert_eq!(run["errors"], 0, "{run}");
        assert!(run["requests"].as_u64().unwrap() > 0, "{run}");
        let hist = results
            .path()
            .join(format!("{}.hist", run["histogram"].as_str().unwrap()));
        assert!(hist.is_file(), "{}", hist.display());
        requests += run["requests"].as_u64().unwrap();
    }
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(results.path().join("merged.json")).unwrap()).unwrap();
    assert_eq!(
        (merged["files"].as_u64(), merged["count"].as_u64()),
        (Some(2), Some(requests))
    );
    assert!(results.path().join("merged.hgrm").is_file());

    let summary = std::fs::read_to_string(results.path().join("summary.md")).unwrap();
    assert_eq!(stdout.trim(), summary.trim(), "the summary is also printed");
    let total: f64 = runs.iter().map(|r| r["rps"].as_f64().unwrap()).sum();
    assert!(
        summary.contains(&format!("**Total: {} req/s**", total.floor())),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{requests} requests, 0 errors")),
        "{summary}"
    );
    assert!(
        summary.contains("--netns 3") && summary.contains("10.77.0.3"),
        "{summary}"
    );
    let serve_log = std::fs::read_to_string(results.path().join("serve.log")).unwrap();
    assert!(serve_log.contains("until SIGTERM"), "{serve_log}");

    // The namespaces it names are gone.
    let names = summary
        .lines()
        .find_map(|l| l.strip_prefix("Namespaces (removed after the run): "))
        .expect("the summary names its namespaces");
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for ns in names.split(' ') {
        assert!(!left.contains(ns), "{ns} still exists: {left}");
    }
    eprintln!("{summary}");
}

#[test]
fn bad_options_say_what_to_do() {
    let out = Command::new("bash").arg(script()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Usage:"), "{stderr}");
    assert!(
        stderr.contains("give --hosts SERVER,CLIENT... or --netns N"),
        "{stderr}"
    );
    let out = Command::new("bash")
        .arg(script())
        .args(["--netns", "1", "--bin", env!("CARGO_BIN_EXE_rpc-bench")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("from 2 to 200"),
        "{stderr}"
    );
    let out = Command::new("bash")
        .arg(script())
        .args(["--hosts", "a,b", "--delay", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--delay works with --netns only"), "{stderr}");
}

#[test]
fn netns_cluster_with_netem_delay() {
    if !can_run("netns_cluster_with_netem_delay") {
        return;
    }
    let results = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(script())
        .args([
            "--netns",
            "2",
            "--bin",
            env!("CARGO_BIN_EXE_rpc-bench"),
            "--io-mode",
            "epoll",
        ])
        .args([
            "--delay",
            "2",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--results-dir",
        ])
        .arg(results.path())
        .output()
        .expect("bash starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("this kernel has no netem qdisc") {
        eprintln!("\n*** SKIPPED netns_cluster_with_netem_delay: this kernel has no netem qdisc ***\n");
        return;
    }
    assert!(out.status.success(), "the cluster run failed: {stderr}");
    let runs = lines(&results.path().join("runs.jsonl"));
    assert_eq!(runs.len(), 1, "{runs:?}");
    // 2 ms of netem on each namespace's link: no request comes back in under 4 ms.
    assert!(runs[0]["p50_us"].as_u64().unwrap() >= 4000, "{}", runs[0]);
    let summary = std::fs::read_to_string(results.path().join("summary.md")).unwrap();
    assert!(summary.contains("netem delay 2 ms each way"), "{summary}");
}

/// The ssh path of the script (`--hosts`), through `ssh` and `scp` shims that run on this
/// machine: it needs neither root nor an ssh server, and checks what goes where.
#[test]
fn ssh_hosts_through_local_shims() {
    let tmp = tempfile::tempdir().unwrap();
    let shims = tmp.path().join("bin");
    std::fs::create_dir(&shims).unwrap();
    let skip_options =
        "while [ $# -gt 0 ]; do case \"$1\" in -o|-i|-p|-F|-l) shift 2;; -*) shift;; *) break;; esac; done\n";
    let ssh = format!(
        "#!/bin/bash\n{skip_options}echo \"$1\" >> \"{log}\"; shift; exec bash -c \"$*\"\n",
        log = tmp.path().join("ssh.log").display()
    );
    let scp = format!("#!/bin/bash\n{skip_options}exec cp \"${{1#*:}}\" \"${{2#*:}}\"\n");
    for (name, text) in [("ssh", ssh), ("scp", scp)] {
        let path = shims.join(name);
        std::fs::write(&path, text).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    }
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let results = tmp.path().join("results");
    let out = Command::new("bash")
        .arg(script())
        .env("PATH", path)
        .args([
            "--hosts",
            "srv,user@c1,c2",
            "--server-addr",
            "127.0.0.1",
            "--ssh-opts",
            "-p 22",
        ])
        .args([
            "--bin",
            env!("CARGO_BIN_EXE_rpc-bench"),
            "--io-mode",
            "epoll",
            "--level",
            "rpc",
        ])
        .args(["--duration", "0.3", "--warmup", "0.1", "--verify", "--remote-dir"])
        .arg(tmp.path().join("remote"))
        .arg("--results-dir")
        .arg(&results)
        .output()
        .expect("bash starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the ssh-mode run failed: {stderr}");
    let runs = lines(&results.join("runs.jsonl"));
    assert_eq!(runs.len(), 2, "{runs:?}");
    let clients: Vec<&str> = runs.iter().map(|r| r["client"].as_str().unwrap()).collect();
    assert_eq!(clients, ["user@c1", "c2"]);
    assert!(
        runs.iter().all(|r| r["errors"] == 0 && r["level"] == "rpc"),
        "{runs:?}"
    );
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("merged.json")).unwrap()).unwrap();
    let requests: u64 = runs.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert_eq!(merged["count"].as_u64(), Some(requests));
    assert!(
        tmp.path().join("remote/rpc-bench").is_file(),
        "the binary was copied"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("remote"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("run-"))
        .collect();
    assert!(left.is_empty(), "the hosts' run folders are removed: {left:?}");
    let ssh_log = std::fs::read_to_string(tmp.path().join("ssh.log")).unwrap();
    for host in ["srv", "user@c1", "c2"] {
        assert!(ssh_log.lines().any(|l| l == host), "no ssh to {host}: {ssh_log}");
    }
}

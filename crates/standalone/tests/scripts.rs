//! `scripts/start-all.sh` and `scripts/stop-all.sh` with a temporary conf
//! folder listing localhost twice: two worker processes register, one killed
//! with SIGKILL disappears after the (short) worker timeout, and `stop-all.sh`
//! leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT_MS: u64 = 1_000;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

/// Runs a script with the test's environment, bounded by 60 s.
fn run(name: &str, dir: &Path, io_mode: &str) -> String {
    let mut child = Command::new("bash")
        .arg(script(name))
        .env("STANDALONE_CONF_DIR", dir.join("conf"))
        .env("STANDALONE_PID_DIR", dir.join("pids"))
        .env("STANDALONE_LOG_DIR", dir.join("logs"))
        .env("STANDALONE_BIN", env!("CARGO_BIN_EXE_standalone"))
        .env("STANDALONE_MASTER_PORT", "0")
        .env("STANDALONE_WEB_UI_PORT", "0")
        .env("STANDALONE_WORKER_TIMEOUT_MS", TIMEOUT_MS.to_string())
        // Removal by the heartbeat timeout, not by the closed connection.
        .env("STANDALONE_REMOVE_ON_DISCONNECT", "false")
        .env("RPC_IO_MODE", io_mode)
        .env("RPC_SERVER_THREADS", "1")
        .env("RPC_CLIENT_THREADS", "1")
        .env("RPC_DISPATCHER_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{text}");
    text
}

fn workers(web_port: u16) -> Vec<serde_json::Value> {
    let Ok(mut resp) = ureq::get(&format!("http://127.0.0.1:{web_port}/json/workers")).call() else {
        return Vec::new();
    };
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap_or_default()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

fn start_kill_stop(io_mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("conf")).unwrap();
    std::fs::write(
        dir.path().join("conf/workers"),
        "# two local workers\nlocalhost\n127.0.0.1 # again\n",
    )
    .unwrap();
    let out = run("start-all.sh", dir.path(), io_mode);
    assert!(out.contains("2 worker(s)"), "{out}");
    let pids = dir.path().join("pids");
    let ports = std::fs::read_to_string(pids.join("master.ports")).unwrap();
    let web_port: u16 = ports.split_whitespace().nth(1).unwrap().parse().unwrap();
    let all_pids = [
        read_pid(&pids.join("standalone-master.pid")),
        read_pid(&pids.join("standalone-worker-1.pid")),
        read_pid(&pids.join("standalone-worker-2.pid")),
    ];
    wait_for("2 workers", Duration::from_secs(10), || {
        workers(web_port).len() == 2
    });
    let listed = workers(web_port);
    assert_ne!(listed[0]["id"], listed[1]["id"], "distinct ids");
    assert_ne!(listed[0]["address"], listed[1]["address"], "distinct ports");
    assert_eq!(listed[0]["io_mode"], io_mode);

    // SIGKILL one worker: it cannot say goodbye; the master times it out.
    let victim = all_pids[1];
    // SAFETY: kill(2) on a pid this test started, with a valid signal number.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    wait_for("the killed worker to time out", Duration::from_secs(10), || {
        workers(web_port).len() == 1
    });
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS / 2),
        "removed before the timeout: {took:?}"
    );

    let out = run("stop-all.sh", dir.path(), io_mode);
    assert!(out.contains("stopped"), "{out}");
    wait_for("every process to exit", Duration::from_secs(5), || {
        all_pids.iter().all(|p| !alive(*p))
    });
    let left: Vec<_> = std::fs::read_dir(&pids)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "pid files left: {left:?}");
    let logs = dir.path().join("logs");
    let master_log = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("master"))
        .unwrap();
    let text = std::fs::read_to_string(master_log).unwrap();
    assert!(
        text.contains("because we got no heartbeat"),
        "the timeout is logged:\n{text}"
    );
    assert!(
        text.contains("worker stopped; removed"),
        "SIGTERM made the worker tell the master it leaves:\n{text}"
    );
}

#[test]
fn start_all_kill_a_worker_stop_all_epoll() {
    start_kill_stop("epoll");
}

#[test]
fn start_all_kill_a_worker_stop_all_io_uring() {
    start_kill_stop("io_uring");
}

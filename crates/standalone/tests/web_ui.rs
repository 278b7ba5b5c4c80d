//! The master's web UI in a real headless browser (Debian's chromium), and
//! its JSON API, with workers registered on each IO mode. The screenshot is
//! saved under `target/test-artifacts/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{conf, for_master, master, worker};
use transport::IoMode;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser, or `None` (after saying so loudly) when it is absent outside CI.
fn chromium() -> Option<&'static str> {
    if Path::new(CHROMIUM).exists() {
        return Some(CHROMIUM);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{CHROMIUM} is missing; CI must install Debian's `chromium` package");
    }
    eprintln!("\n!!!!! SKIPPING the browser test: {CHROMIUM} is missing (apt-get install chromium) !!!!!\n");
    None
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Runs chromium headless with `args` then `url`; returns stdout. Killed after 60 s.
fn run_chromium(bin: &str, args: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn page_lists_workers(mode: IoMode) {
    let c = conf(60_000, true);
    let m = master(mode, &c);
    let c = for_master(&c, &m);
    let workers: Vec<_> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|id| worker(mode, &c, id))
        .collect();
    for w in &workers {
        w.wait_registered(Duration::from_secs(10)).unwrap();
    }
    let port = m.web_ui_port().unwrap();

    // The JSON API, at its stable path.
    let mut resp = ureq::get(&format!("http://127.0.0.1:{port}/json/workers"))
        .call()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["id"], "alpha");
    assert_eq!(list[0]["state"], "ALIVE");
    assert_eq!(list[0]["cores"], 2);
    assert_eq!(list[0]["memory_mb"], 2048);
    assert_eq!(list[0]["io_mode"], mode.as_str());
    assert!(list[0]["seconds_since_heartbeat"].as_f64().unwrap() < 60.0);

    let Some(bin) = chromium() else { return };
    let url = format!("http://127.0.0.1:{port}/");
    let dom = run_chromium(bin, &["--dump-dom".into()], &url);
    for id in ["alpha", "beta", "gamma"] {
        assert!(
            dom.contains(&format!("<td class=\"id\">{id}</td>")),
            "{id} missing from the page:\n{dom}"
        );
    }
    assert!(dom.contains(&m.address().to_url()), "the page names the master");
    assert!(dom.contains("ALIVE") && dom.contains(mode.as_str()));
    let shot = artifacts_dir().join(format!("master-web-ui-{mode}.png"));
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        bin,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,800".into(),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "a real PNG");
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn page_lists_workers_epoll() {
    page_lists_workers(IoMode::Epoll);
}

#[test]
fn page_lists_workers_io_uring() {
    page_lists_workers(IoMode::IoUring);
}

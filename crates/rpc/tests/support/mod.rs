//! Helpers of the hardening tests: raw-socket peers, log capture, a watcher
//! endpoint that records every call, and RpcEnvs with a configuration tweak.

#![allow(dead_code)]

/// One `#[test]` per case on each IO mode: `both_io_modes!(a, b)` makes
/// `epoll::a`, `io_uring::a`, ... calling `a(IoMode::Epoll)` and
/// `a(IoMode::IoUring)`. (Use with `#[macro_use] mod support;`.)
#[allow(unused_macros)]
macro_rules! both_io_modes {
    ($($case:ident),* $(,)?) => {
        mod epoll {
            $(#[test] fn $case() { super::$case(transport::IoMode::Epoll); })*
        }
        mod io_uring {
            $(#[test] fn $case() { super::$case(transport::IoMode::IoUring); })*
        }
    };
}

pub mod endpoints;
pub mod epoch;
pub mod raw;
pub mod watch;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use rpc::{RpcEnv, RpcEnvConfig};
use transport::IoMode;

/// A server-mode RpcEnv on 127.0.0.1 with an ephemeral port, after `tweak`.
pub fn server_with(mode: IoMode, name: &str, tweak: impl FnOnce(&mut RpcEnvConfig)) -> RpcEnv {
    let mut c = RpcEnvConfig::server(name, SocketAddr::from(([127, 0, 0, 1], 0)));
    c.transport.io_mode = mode;
    c.transport.server_threads = 2;
    c.transport.client_threads = 2;
    c.ask_timeout_ms = 10_000;
    tweak(&mut c);
    RpcEnv::create(c).expect("server RpcEnv")
}

/// A client-mode RpcEnv, after `tweak`.
pub fn client_with(mode: IoMode, name: &str, tweak: impl FnOnce(&mut RpcEnvConfig)) -> RpcEnv {
    let mut c = RpcEnvConfig::client(name);
    c.transport.io_mode = mode;
    c.transport.client_threads = 2;
    c.ask_timeout_ms = 10_000;
    tweak(&mut c);
    RpcEnv::create(c).expect("client RpcEnv")
}

/// Sets `auth_secret`.
pub fn secret(s: &'static str) -> impl FnOnce(&mut RpcEnvConfig) {
    move |c| c.transport.auth_secret = Some(s.into())
}

/// Leaves the configuration as it is.
pub fn plain(_: &mut RpcEnvConfig) {}

static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(logs) = LOGS.get() {
            logs.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing this process's logs (`warn` and above), once.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
        logs
    });
}

/// Whether a captured log line contains every one of `parts`, waiting up to 5 s.
pub fn logged(parts: &[&str]) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found = LOGS.get().is_some_and(|logs| {
            let text = String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
            text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
        });
        if found || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Captured log lines containing `part`.
pub fn log_lines(part: &str) -> Vec<String> {
    LOGS.get().map_or(Vec::new(), |logs| {
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner()))
            .lines()
            .filter(|l| l.contains(part))
            .map(String::from)
            .collect()
    })
}

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

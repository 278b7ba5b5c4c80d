//! `io_mode` picks the backend: `auto` runs on io_uring where the kernel
//! allows it and falls back to epoll otherwise; `io_uring` fails clearly when
//! it cannot run. `RPC_IO_URING_FORCE_UNAVAILABLE=1` forces the probe to fail;
//! that case runs in a child process so the variable reaches no other test.

use std::net::SocketAddr;
use std::process::Command;

use rpc::{RpcEnv, RpcEnvConfig, RpcError};
use transport::{IoMode, TransportError};

fn config(mode: IoMode) -> RpcEnvConfig {
    let mut c = RpcEnvConfig::server("sel", SocketAddr::from(([127, 0, 0, 1], 0)));
    c.transport.io_mode = mode;
    c
}

#[test]
fn auto_runs_on_io_uring_here() {
    if std::env::var_os("RPC_IO_URING_FORCE_UNAVAILABLE").is_some() {
        return;
    }
    let env = RpcEnv::create(config(IoMode::Auto)).unwrap();
    assert_eq!(env.io_mode(), IoMode::IoUring);
}

#[test]
fn forced_unavailable_falls_back_or_fails_clearly() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "child_with_io_uring_forced_off",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("RPC_IO_URING_FORCE_UNAVAILABLE", "1")
        .env("RPC_SELECTION_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CHILD_CHECKED"),
        "the child ran its checks:\n{stdout}"
    );
}

#[test]
fn child_with_io_uring_forced_off() {
    if std::env::var_os("RPC_SELECTION_CHILD").is_none() {
        return;
    }
    let env = RpcEnv::create(config(IoMode::Auto)).unwrap();
    assert_eq!(env.io_mode(), IoMode::Epoll, "auto falls back to epoll");
    let err = RpcEnv::create(config(IoMode::IoUring)).unwrap_err();
    let RpcError::Transport(TransportError::IoModeUnavailable { mode, reason }) = &err else {
        panic!("expected IoModeUnavailable, got {err:?}");
    };
    assert_eq!(*mode, IoMode::IoUring);
    assert!(reason.contains("RPC_IO_URING_FORCE_UNAVAILABLE"), "{reason}");
    println!("CHILD_CHECKED");
}

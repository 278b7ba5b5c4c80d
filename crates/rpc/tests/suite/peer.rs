//! A peer RpcEnv in another process: the test binary re-runs itself with
//! `RPC_SUITE_PEER=<io mode>` and runs only `peer_process_main`, which serves
//! a `Recorder` named `rec` and prints its address.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use rpc::RpcAddress;
use transport::IoMode;

/// The child process and the address it serves on.
pub struct Peer {
    child: Child,
    pub address: RpcAddress,
}

impl Peer {
    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the peer process and waits for its address.
pub fn spawn(mode: IoMode) -> Peer {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "peer_process_main",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("RPC_SUITE_PEER", mode.as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the peer process");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the peer printed its address")
            .expect("readable stdout");
        // libtest prints `test peer_process_main ... ` on the same line first.
        if let Some((_, addr)) = line.split_once("PEER_ADDRESS=") {
            break addr.trim().parse().expect("a valid address");
        }
    };
    Peer { child, address }
}

/// The body of the peer process: serve until killed.
pub fn peer_main() {
    let Ok(mode) = std::env::var("RPC_SUITE_PEER") else {
        return; // A normal test run: nothing to do.
    };
    let env = super::server(mode.parse().expect("io mode"), "peer");
    let (tx, rx) = std::sync::mpsc::channel();
    env.setup_endpoint("rec", super::endpoints::Recorder { events: tx })
        .unwrap();
    println!("PEER_ADDRESS={}", env.address().unwrap());
    // Serve until killed (bounded, so a lost parent cannot leave it running).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let _ = rx.recv_timeout(std::time::Duration::from_secs(1));
    }
}

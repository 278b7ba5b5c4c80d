//! Bounded inboxes (`inbox_capacity`) on both IO modes: once an endpoint's
//! inbox is full, local and remote sends and asks fail with `InboxFull`, and
//! it serves again once drained.

mod suite;
mod support;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEndpointRef, RpcError, RpcSender};
use support::{client_with, plain, server_with};
use transport::IoMode;

/// Tells when it starts an ask, then waits for the gate (30 s at most).
struct Gated {
    started: Sender<u64>,
    gate: Arc<Mutex<Receiver<()>>>,
}

impl RpcEndpoint for Gated {
    type Message = u64;
    type Reply = u64;

    fn receive(&mut self, _msg: Msg<'_, u64>, _sender: &RpcSender) {}

    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let n = msg.into_owned().unwrap();
        let _ = self.started.send(n);
        if n == 0 {
            let _ = self.gate.lock().unwrap().recv_timeout(Duration::from_secs(30));
        }
        ctx.reply(n);
    }
}

const CAPACITY: usize = 4;

fn full(err: RpcError) {
    assert!(
        matches!(&err, RpcError::InboxFull { endpoint, capacity: CAPACITY } if endpoint == "gated"),
        "{err:?}"
    );
    assert!(err.to_string().contains("inbox_capacity"), "{err}");
}

fn full_inbox_refuses_sends_and_asks(mode: IoMode) {
    let s = server_with(mode, "server", |c| c.inbox_capacity = CAPACITY);
    let (started_tx, started) = mpsc::channel();
    let (release, gate) = mpsc::channel();
    let local = s
        .setup_endpoint(
            "gated",
            Gated {
                started: started_tx,
                gate: Arc::new(Mutex::new(gate)),
            },
        )
        .unwrap();
    let c = client_with(mode, "client", plain);
    let remote: RpcEndpointRef<u64, u64> = c.setup_endpoint_ref(s.address().unwrap(), "gated").unwrap();

    // The first ask is being processed (out of the queue); four more fill it.
    let first = remote.ask(0);
    assert_eq!(started.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    let queued: Vec<_> = (1..=CAPACITY as u64).map(|i| remote.ask(i)).collect();
    // The remote asks above are in the inbox once a remote ask behind them is refused.
    full(remote.ask_sync(99).unwrap_err());
    full(local.ask_sync(98).unwrap_err());
    full(local.send(97).unwrap_err());
    remote.send(96).unwrap(); // one-way and remote: dropped and logged by the server

    release.send(()).unwrap();
    assert_eq!(first.wait().unwrap(), 0);
    for (i, q) in queued.into_iter().enumerate() {
        assert_eq!(q.wait().unwrap(), i as u64 + 1);
    }
    assert_eq!(remote.ask_sync(5).unwrap(), 5, "serving again once drained");
    assert_eq!(local.ask_sync(6).unwrap(), 6);
}

#[test]
fn epoll() {
    full_inbox_refuses_sends_and_asks(IoMode::Epoll);
}

#[test]
fn io_uring() {
    full_inbox_refuses_sends_and_asks(IoMode::IoUring);
}

#[test]
fn peer_process_main() {
    suite::peer::peer_main();
}

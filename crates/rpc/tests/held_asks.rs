//! Asks an endpoint holds unanswered when it stops, on both IO modes: the
//! asker learns the endpoint stopped (`RpcError::EndpointStopped`, typed the
//! same for a remote asker as for a local one), not that the endpoint
//! "dropped the call without replying", and not only at its ask timeout.

#[macro_use]
mod support;

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcError};
use support::{client_with, plain, server_with};
use transport::IoMode;

/// Keeps every ask it gets, and says on `got` that it got one.
struct Holder {
    held: Vec<RpcCallContext<u64>>,
    got: Sender<u64>,
}

impl Holder {
    fn new() -> (Self, Receiver<u64>) {
        let (got, rx) = mpsc::channel();
        (
            Self {
                held: Vec::new(),
                got,
            },
            rx,
        )
    }
}

impl RpcEndpoint for Holder {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let n = msg.into_owned().expect("a u64 message decodes");
        self.held.push(ctx);
        let _ = self.got.send(n);
    }
}

/// Whether `result` is the failure of an ask held by endpoint `holder` when it stopped.
fn stopped_holder(result: &Result<u64, RpcError>) -> bool {
    matches!(result, Err(RpcError::EndpointStopped { name }) if name == "holder")
}

fn remote_ask_held_while_the_server_shuts_down(mode: IoMode) {
    let server = server_with(mode, "server", plain);
    let (holder, got) = Holder::new();
    server.setup_endpoint("holder", holder).unwrap();
    let client = client_with(mode, "client", plain);
    let holder = client
        .setup_endpoint_ref::<u64, u64>(server.address().unwrap(), "holder")
        .unwrap();
    let waiting = holder.ask(1);
    assert_eq!(
        got.recv_timeout(Duration::from_secs(10)),
        Ok(1),
        "the ask reached the endpoint"
    );
    server.shutdown();
    let result = waiting.wait();
    assert!(stopped_holder(&result), "{result:?}");
    let text = result.unwrap_err().to_string();
    assert!(!text.contains("dropped the call"), "{text}");
    client.shutdown();
}

fn remote_ask_held_while_its_endpoint_is_stopped(mode: IoMode) {
    let server = server_with(mode, "server", plain);
    let (holder, got) = Holder::new();
    let local = server.setup_endpoint("holder", holder).unwrap();
    let client = client_with(mode, "client", plain);
    let holder = client
        .setup_endpoint_ref::<u64, u64>(server.address().unwrap(), "holder")
        .unwrap();
    let waiting = holder.ask(2);
    assert_eq!(
        got.recv_timeout(Duration::from_secs(10)),
        Ok(2),
        "the ask reached the endpoint"
    );
    assert!(server.stop(&local));
    let result = waiting.wait();
    assert!(stopped_holder(&result), "{result:?}");
    client.shutdown();
    server.shutdown();
}

fn local_ask_held_while_its_endpoint_is_stopped(mode: IoMode) {
    let server = server_with(mode, "server", plain);
    let (holder, got) = Holder::new();
    let local = server.setup_endpoint("holder", holder).unwrap();
    let waiting = local.ask(3);
    assert_eq!(
        got.recv_timeout(Duration::from_secs(10)),
        Ok(3),
        "the ask reached the endpoint"
    );
    assert!(server.stop(&local));
    let result = waiting.wait();
    assert!(stopped_holder(&result), "{result:?}");
    server.shutdown();
}

both_io_modes!(
    remote_ask_held_while_the_server_shuts_down,
    remote_ask_held_while_its_endpoint_is_stopped,
    local_ask_held_while_its_endpoint_is_stopped,
);

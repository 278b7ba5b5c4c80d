//! A peer's message that is no valid archive of an endpoint's type goes to
//! the endpoint's `on_error` on its MessageLoop thread. An `on_error` that
//! panics must not end that thread (shared by other endpoints, which would
//! then never get another message): it is contained as a panicking handler
//! is. Bad network input never harms anything else. One MessageLoop thread,
//! on both IO modes.

#[macro_use]
mod support;

use std::time::Duration;

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEndpointRef, RpcError};
use support::raw::{Raw, envelope, fingerprint};
use support::{client_with, server_with};
use transport::{Frame, IoMode};

/// Answers `n` with `n`; panics in `on_error`.
struct Fragile;

impl RpcEndpoint for Fragile {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        ctx.reply(msg.into_owned().expect("a u64 message decodes"));
    }

    fn on_error(&mut self, error: &RpcError) {
        panic!("a bug in on_error, given {error}");
    }
}

fn an_on_error_that_panics_harms_no_other_endpoint(mode: IoMode) {
    let server = server_with(mode, "server", |c| c.dispatcher_threads = 1);
    server.setup_endpoint("fragile", Fragile).unwrap();
    server.setup_endpoint("other", Fragile).unwrap();
    let mut raw = Raw::connect(&server.address().unwrap().to_string());
    // u64's fingerprint, and 3 bytes: no archive of a u64.
    raw.rpc(1, envelope(fingerprint::<u64>(), "fragile", &[0xFF; 3]))
        .unwrap();
    match raw.next_frame() {
        Some(Frame::RpcFailure { request_id: 1, error }) => {
            assert!(error.contains("invalid message"), "{mode:?}: {error}")
        }
        other => panic!("{mode:?}: expected the ask refused, got {other:?}"),
    }
    let client = client_with(mode, "client", |c| c.ask_timeout_ms = 10_000);
    for name in ["other", "fragile"] {
        let r: RpcEndpointRef<u64, u64> = client.endpoint_ref(server.address().unwrap(), name);
        let (tx, rx) = std::sync::mpsc::channel();
        r.ask_with(7, move |reply| {
            let _ = tx.send(reply.and_then(Msg::into_owned));
        });
        let answer = rx.recv_timeout(Duration::from_secs(30));
        assert!(
            matches!(answer, Ok(Ok(7))),
            "{mode:?}: `{name}` still answers after on_error panicked: {answer:?}"
        );
    }
    client.shutdown();
    server.shutdown();
}

both_io_modes!(an_on_error_that_panics_harms_no_other_endpoint);

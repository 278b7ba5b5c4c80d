//! Asks that time out give up their connection's outstanding-RPC entry, as
//! Spark's `RpcOutboxMessage.onTimeout` calls `TransportClient.removeRpcRequest`:
//! otherwise every ask to an endpoint that never answers stays in the
//! transport's map (and holds its ask) until the connection closes. Seen
//! through `max_outstanding_rpcs_per_connection`: with a bound of 4, four
//! timed-out asks must not make the next ask on that connection refused.
//! On both IO modes, for `ask_with` and for `ask`.
//!
//! Found by review (both failed); fixed by `RpcResponseListener::on_registered`:
//! the transport tells the ask its (connection, request id) when the request
//! is registered, and the ask's timeout calls `TransportClient::remove_rpc_request`.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use rpc::{Msg, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcError};
use support::endpoints::{Increment, Silent};
use transport::IoMode;

const OUTSTANDING: usize = 4;

fn timed_out_asks_free_their_outstanding_entries(mode: IoMode) {
    let mut server_conf = RpcEnvConfig::server("server", SocketAddr::from(([127, 0, 0, 1], 0)));
    server_conf.transport.io_mode = mode;
    let server = RpcEnv::create(server_conf).expect("server RpcEnv");
    server
        .setup_inline_endpoint("increment", Increment)
        .expect("register increment");
    server
        .setup_inline_endpoint("silent", Silent::default())
        .expect("register silent");
    let mut client_conf = RpcEnvConfig::client("client");
    client_conf.transport.io_mode = mode;
    client_conf.transport.max_outstanding_rpcs_per_connection = OUTSTANDING;
    client_conf.ask_timeout_ms = 200;
    let client = RpcEnv::create(client_conf).expect("client RpcEnv");
    let address = server.address().expect("server address");
    let increment: RpcEndpointRef<u64, u64> = client
        .setup_endpoint_ref(address, "increment")
        .expect("a reference to increment");
    let silent: RpcEndpointRef<u64, u64> = client
        .setup_endpoint_ref(address, "silent")
        .expect("a reference to silent");
    assert_eq!(increment.ask_sync(1).expect("connected"), 2, "{mode:?}");

    for round in 0..3 {
        let (done, timed_out) = mpsc::channel();
        for n in 0..OUTSTANDING as u64 {
            let done = done.clone();
            if n % 2 == 0 {
                silent.ask_with(n, move |r: Result<Msg<'_, u64>, RpcError>| {
                    let _ = done.send(
                        r.err()
                            .map(|e| (matches!(e, RpcError::AskTimeout { .. }), e.to_string())),
                    );
                });
            } else {
                let future = silent.ask(n);
                std::thread::spawn(move || {
                    let _ = done.send(
                        future
                            .wait()
                            .err()
                            .map(|e| (matches!(e, RpcError::AskTimeout { .. }), e.to_string())),
                    );
                });
            }
        }
        for _ in 0..OUTSTANDING {
            let error = timed_out
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{mode:?}: an ask to the silent endpoint never ended"));
            assert!(
                error.as_ref().is_some_and(|(timed_out, _)| *timed_out),
                "{mode:?}: round {round}: {error:?}"
            );
        }
        assert_eq!(
            increment.ask_sync(10).map_err(|e| e.to_string()),
            Ok(11),
            "{mode:?}: round {round}: after {OUTSTANDING} asks timed out, the connection takes asks"
        );
    }
    client.shutdown();
    server.shutdown();
}

#[test]
fn timed_out_asks_free_their_outstanding_entries_on_epoll() {
    timed_out_asks_free_their_outstanding_entries(IoMode::Epoll);
}

#[test]
fn timed_out_asks_free_their_outstanding_entries_on_io_uring() {
    timed_out_asks_free_their_outstanding_entries(IoMode::IoUring);
}

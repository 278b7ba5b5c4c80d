//! `ask_with` called from other asks' callbacks, where those run: on the
//! timer thread (an ask that timed out), on a connection's event loop (a
//! remote answer), each answered exactly once, many times over so that the
//! asks of those threads are recycled, on both IO modes.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use rpc::{Msg, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcError};
use support::endpoints::{Increment, Silent};
use transport::IoMode;

/// What a callback reports: which ask (`tag`) and its reply or error text.
type Report = (u64, Result<u64, String>);

fn report(tag: u64, reply: Result<Msg<'_, u64>, RpcError>) -> Report {
    let reply = match reply {
        Ok(Msg::Local(n)) => Ok(n),
        Ok(Msg::Remote(n)) => Ok(n.to_native()),
        Err(e) => Err(e.to_string()),
    };
    (tag, reply)
}

/// Asks that time out: 200 ms.
const ASK_TIMEOUT_MS: u64 = 200;
/// Chains started: each a timed-out ask whose callback asks again, whose
/// callback asks once more.
const CHAINS: u64 = 100;

fn asks_from_callbacks_are_each_answered_once(mode: IoMode) {
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
    client_conf.ask_timeout_ms = ASK_TIMEOUT_MS;
    let client = RpcEnv::create(client_conf).expect("client RpcEnv");
    let address = server.address().expect("server address");
    let increment: RpcEndpointRef<u64, u64> = client
        .setup_endpoint_ref(address, "increment")
        .expect("a reference to increment");
    let silent: RpcEndpointRef<u64, u64> = client
        .setup_endpoint_ref(address, "silent")
        .expect("a reference to silent");

    let (reports, reported) = mpsc::channel::<Report>();
    for chain in 0..CHAINS {
        let (reports, increment) = (reports.clone(), increment.clone());
        silent.ask_with(chain, move |first| {
            // On the timer thread: the ask timed out.
            let _ = reports.send(report(3 * chain, first));
            let again = increment.clone();
            increment.ask_with(10 * chain, move |second| {
                // On the client connection's event loop.
                let _ = reports.send(report(3 * chain + 1, second));
                again.ask_with(10 * chain + 1, move |third| {
                    let _ = reports.send(report(3 * chain + 2, third));
                });
            });
        });
    }
    let mut got: Vec<Report> = (0..3 * CHAINS)
        .map(|i| {
            reported
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{mode:?}: only {i} of {} callbacks ran", 3 * CHAINS))
        })
        .collect();
    assert!(
        reported
            .recv_timeout(Duration::from_millis(2 * ASK_TIMEOUT_MS))
            .is_err(),
        "{mode:?}: a callback ran twice"
    );
    got.sort_by_key(|(tag, _)| *tag);
    for chain in 0..CHAINS {
        let tags: Vec<u64> = got[3 * chain as usize..][..3].iter().map(|(t, _)| *t).collect();
        assert_eq!(
            tags,
            [3 * chain, 3 * chain + 1, 3 * chain + 2],
            "{mode:?}: each callback once"
        );
        let (_, first) = &got[3 * chain as usize];
        assert!(
            first
                .as_ref()
                .is_err_and(|e| e.contains("timed out") || e.contains("imeout")),
            "{mode:?}: chain {chain}: the ask to the silent endpoint timed out, got {first:?}"
        );
        assert_eq!(
            got[3 * chain as usize + 1].1,
            Ok(10 * chain + 1),
            "{mode:?}: chain {chain}"
        );
        assert_eq!(
            got[3 * chain as usize + 2].1,
            Ok(10 * chain + 2),
            "{mode:?}: chain {chain}"
        );
    }
    client.shutdown();
    server.shutdown();
}

#[test]
fn asks_from_callbacks_are_each_answered_once_on_epoll() {
    asks_from_callbacks_are_each_answered_once(IoMode::Epoll);
}

#[test]
fn asks_from_callbacks_are_each_answered_once_on_io_uring() {
    asks_from_callbacks_are_each_answered_once(IoMode::IoUring);
}

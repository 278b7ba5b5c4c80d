//! Asks that time out while still queued in the Outbox (the connection is
//! not yet introduced) must not stay in the connection's outstanding-RPC
//! table once they are sent. Such an ask has no registration to forget when
//! its timer fires; when the Outbox sends it later, the transport used to
//! register it anyway, and it stayed until an answer or the connection's
//! close: with an endpoint that never answers, for good, counting against
//! `max_outstanding_rpcs_per_connection` (here 2: two such asks made the next
//! ask on that connection refused at once). On both IO modes.
//!
//! The peer is a raw socket that holds the answer to the Outbox's
//! `ConnectionEpoch` until the test lets it go, and never answers anything else.

#[macro_use]
mod support;

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use rpc::{Msg, RpcAddress, RpcEndpointRef, RpcError};
use support::client_with;
use support::raw::Raw;
use transport::{EncodedFrame, Frame, IoMode};

/// Accepts one connection; answers its first RpcRequest (the Outbox's
/// `ConnectionEpoch`) once `release` says so, then reports every further
/// request's id on the returned channel and answers none.
fn slow_peer(listener: TcpListener, release: mpsc::Receiver<()>) -> mpsc::Receiver<i64> {
    let (got, requests) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept the client's connection");
        let mut raw = Raw::from_stream(stream);
        let mut introduced = false;
        while let Some(frame) = raw.next_frame() {
            let Frame::RpcRequest { request_id, .. } = frame else {
                continue;
            };
            if introduced {
                let _ = got.send(request_id);
                continue;
            }
            introduced = true;
            let _ = release.recv_timeout(Duration::from_secs(30));
            let answer = EncodedFrame::rpc_response(request_id, bytes::Bytes::new()).expect("a small frame");
            if raw.send(&answer).is_err() {
                return;
            }
        }
    });
    requests
}

/// Asks that time out in the Outbox: two of each kind.
const ASKS: u64 = 4;

fn is_timeout(r: &Result<u64, RpcError>) -> bool {
    matches!(r, Err(RpcError::AskTimeout { .. }))
}

fn asks_timed_out_while_queued_do_not_stay_outstanding(mode: IoMode) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the raw peer");
    let port = listener.local_addr().unwrap().port();
    let (release, released) = mpsc::channel();
    let requests = slow_peer(listener, released);
    let client = client_with(mode, "client", |c| {
        c.ask_timeout_ms = 150;
        c.transport.max_outstanding_rpcs_per_connection = 2;
    });
    let silent: RpcEndpointRef<u64, u64> = client.endpoint_ref(&RpcAddress::new("127.0.0.1", port), "silent");

    // All queue in the Outbox behind the held ConnectionEpoch, and time out there.
    let (done, ended) = mpsc::channel();
    // Two of each kind of ask, `ask_with` (a pooled CallbackAsk) and `ask` (a
    // promise): either kind left outstanding fills the bound of 2 by itself.
    for n in 0..ASKS / 2 {
        let d = done.clone();
        silent.ask_with(n, move |r: Result<Msg<'_, u64>, RpcError>| {
            let _ = d.send(r.map(|_| n));
        });
        let d = done.clone();
        silent.ask(n).on_complete(move |r| {
            let _ = d.send(r);
        });
    }
    for _ in 0..ASKS {
        let r = ended
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{mode:?}: a queued ask never ended"));
        assert!(is_timeout(&r), "{mode:?}: {r:?}");
    }
    // Now the connection is introduced and the Outbox sends them.
    release.send(()).unwrap();
    for _ in 0..ASKS {
        requests
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{mode:?}: the queued asks were never sent"));
    }
    // None is outstanding: the next ask is sent, and times out itself.
    let r = silent.ask(7).wait();
    assert!(
        is_timeout(&r),
        "{mode:?}: after {ASKS} asks timed out in the Outbox, the next one should time out, got {r:?}"
    );
    client.shutdown();
}

both_io_modes!(asks_timed_out_while_queued_do_not_stay_outstanding);

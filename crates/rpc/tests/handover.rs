//! Per-sender order across reconnects (`handover`), on both IO modes, driven
//! from raw sockets so that each step is deterministic: a sender's newer
//! connection is held until its older one closes, then released in order; a
//! held connection that never sees its predecessor close is released by the
//! handover timeout; a connection older than one already seen is fenced; a
//! second epoch on one connection is a protocol error.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc::{CONNECTION_ACK_NAME, CONNECTION_EPOCH_NAME, RpcError};
use support::epoch::*;
use support::raw::{Raw, envelope, fingerprint, u64_envelope};
use support::watch::{Watcher, messages};
use support::{capture_logs, logged};
use transport::{Frame, IoMode};

/// The newer connection's one-way and ask wait while the older connection is
/// open (it keeps being served), and follow everything it delivered.
fn newer_connection_waits_for_the_older_to_close(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut old = Raw::connect(&addr);
    say_epoch(&mut old, 41, 1);
    send_n(&mut old, 1);
    wait_for(&calls, &["send Some(1)"]);

    let mut new = Raw::connect(&addr);
    say_epoch(&mut new, 41, 2);
    send_n(&mut new, 100);
    new.rpc(7, u64_envelope("w", 101)).unwrap();
    stays(&calls, &["send Some(1)"]);

    send_n(&mut old, 2);
    wait_for(&calls, &["send Some(1)", "send Some(2)"]);
    drop(old);
    wait_for(
        &calls,
        &["send Some(1)", "send Some(2)", "send Some(100)", "ask 101"],
    );
    match next_answer(&mut new) {
        Some(Frame::RpcResponse { request_id: 7, .. }) => {}
        other => panic!("the held ask is answered once released, got {other:?}"),
    }
    send_n(&mut new, 102);
    wait_for(
        &calls,
        &[
            "send Some(1)",
            "send Some(2)",
            "send Some(100)",
            "ask 101",
            "send Some(102)",
        ],
    );
}

/// Another sender's connections are not held by this one's handover.
fn other_senders_are_not_held(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut old = Raw::connect(&addr);
    say_epoch(&mut old, 1, 1);
    send_n(&mut old, 0);
    wait_for(&calls, &["send Some(0)"]);
    let mut new = Raw::connect(&addr);
    say_epoch(&mut new, 1, 2);
    send_n(&mut new, 10);
    let mut other = Raw::connect(&addr);
    say_epoch(&mut other, 2, 1);
    send_n(&mut other, 20);
    wait_for(&calls, &["send Some(0)", "send Some(20)"]);
    let mut plain = Raw::connect(&addr);
    send_n(&mut plain, 30);
    wait_for(&calls, &["send Some(0)", "send Some(20)", "send Some(30)"]);
    drop(old);
    wait_for(
        &calls,
        &["send Some(0)", "send Some(20)", "send Some(30)", "send Some(10)"],
    );
}

/// A held connection whose predecessor never closes is released after the
/// handover timeout, and the predecessor is closed.
fn handover_timeout_closes_the_older_connection(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 300);
    let mut old = Raw::connect(&addr);
    say_epoch(&mut old, 51, 1);
    send_n(&mut old, 1);
    wait_for(&calls, &["send Some(1)"]);
    let mut new = Raw::connect(&addr);
    let me = old.stream.local_addr().unwrap().to_string();
    say_epoch(&mut new, 51, 2);
    send_n(&mut new, 2);
    wait_for(&calls, &["send Some(1)", "send Some(2)"]);
    assert!(old.closed_by_peer(), "the replaced connection is closed");
    assert!(logged(&[&me, "handover timeout"]));
    send_n(&mut new, 3);
    wait_for(&calls, &["send Some(1)", "send Some(2)", "send Some(3)"]);
}

/// A connection whose epoch is not above one already seen from its sender is
/// closed and what it sent is dropped; the newer one goes on.
fn older_epoch_is_fenced(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut new = Raw::connect(&addr);
    say_epoch(&mut new, 61, 5);
    send_n(&mut new, 50);
    wait_for(&calls, &["send Some(50)"]);
    let mut late = Raw::connect(&addr);
    let me = late.stream.local_addr().unwrap().to_string();
    say_epoch(&mut late, 61, 4);
    send_n(&mut late, 40);
    assert!(late.closed_by_peer(), "the superseded connection is closed");
    assert!(logged(&[&me, "superseded"]));
    send_n(&mut new, 51);
    wait_for(&calls, &["send Some(50)", "send Some(51)"]);
    stays(&calls, &["send Some(50)", "send Some(51)"]);
}

/// A held connection that closes keeps its place: what it delivered is
/// dispatched when its turn comes, before the connections after it.
fn held_connection_that_closes_is_still_delivered(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut first = Raw::connect(&addr);
    say_epoch(&mut first, 71, 1);
    send_n(&mut first, 1);
    wait_for(&calls, &["send Some(1)"]);
    let mut second = Raw::connect(&addr);
    say_epoch(&mut second, 71, 2);
    send_n(&mut second, 2);
    // Let the server read it before the close (which it would see next).
    std::thread::sleep(Duration::from_millis(100));
    drop(second);
    let mut third = Raw::connect(&addr);
    say_epoch(&mut third, 71, 3);
    send_n(&mut third, 3);
    stays(&calls, &["send Some(1)"]);
    drop(first);
    wait_for(&calls, &["send Some(1)", "send Some(2)", "send Some(3)"]);
    send_n(&mut third, 4);
    wait_for(
        &calls,
        &["send Some(1)", "send Some(2)", "send Some(3)", "send Some(4)"],
    );
}

/// Two epochs on one connection: a protocol error, the connection is closed.
fn second_epoch_on_a_connection_is_refused(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut raw = Raw::connect(&addr);
    let me = raw.stream.local_addr().unwrap().to_string();
    say_epoch(&mut raw, 81, 1);
    send_n(&mut raw, 1);
    say_epoch(&mut raw, 81, 2);
    assert!(raw.closed_by_peer());
    assert!(logged(&[&me, "a second connection epoch"]));
    wait_for(&calls, &["send Some(1)"]);
}

/// A ConnectionEpoch sent as a one-way is dropped and logged; one with the
/// wrong type is refused with an RpcFailure; no endpoint sees either.
fn malformed_epoch_is_refused(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut raw = Raw::connect(&addr);
    let me = raw.stream.local_addr().unwrap().to_string();
    one_way(&mut raw, epoch_body(91, 1));
    assert!(logged(&[&me, "an RPC, not a one-way message"]));
    raw.rpc(4, envelope(fingerprint::<u64>(), CONNECTION_EPOCH_NAME, &[0; 32]))
        .unwrap();
    match raw.next_frame() {
        Some(Frame::RpcFailure { request_id: 4, error }) => {
            assert!(error.contains("ConnectionEpoch"), "{error}")
        }
        other => panic!("expected an RpcFailure, got {other:?}"),
    }
    assert_eq!(messages(&calls), Vec::<String>::new());
}

/// Two outboxes of one RpcEnv reach the same server under two spellings of
/// its address: each numbers its one-ways and counts its epochs on its own,
/// so neither may fence, hold or drop the other's messages.
fn two_outboxes_to_one_server_are_independent_senders(mode: IoMode) {
    let (server, calls, _addr) = server(mode, 60_000);
    let client = support::client_with(mode, "client", |_| {});
    let port = server.address().unwrap().port;
    let by_ip = client
        .setup_endpoint_ref::<u64, u64>(&rpc::RpcAddress::new("127.0.0.1", port), "w")
        .unwrap();
    let by_name = client
        .setup_endpoint_ref::<u64, u64>(&rpc::RpcAddress::new("localhost", port), "w")
        .unwrap();
    by_ip.send(1).unwrap();
    wait_for(&calls, &["send Some(1)"]);
    by_name.send(2).unwrap();
    wait_for(&calls, &["send Some(1)", "send Some(2)"]);
    by_ip.send(3).unwrap();
    by_name.send(4).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 4 && Instant::now() < deadline {
        got = messages(&calls);
        std::thread::sleep(Duration::from_millis(10));
    }
    got.sort();
    assert_eq!(
        got,
        ["send Some(1)", "send Some(2)", "send Some(3)", "send Some(4)"],
        "each message once"
    );
    client.shutdown();
}

/// The older connection's disconnect reaches the endpoints before what the
/// newer one delivered: an endpoint that forgets a peer on disconnect (a
/// master removing a worker) must not forget what the peer said again after
/// reconnecting.
fn the_older_connection_disconnects_before_the_newer_is_dispatched(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut old = Raw::connect(&addr);
    let old_addr = old.stream.local_addr().unwrap().to_string();
    say_epoch(&mut old, 121, 1);
    send_n(&mut old, 1);
    wait_for(&calls, &["send Some(1)"]);
    let mut new = Raw::connect(&addr);
    say_epoch(&mut new, 121, 2);
    send_n(&mut new, 2);
    stays(&calls, &["send Some(1)"]);
    drop(old);
    wait_for(&calls, &["send Some(1)", "send Some(2)"]);
    let gone = format!("disconnected {old_addr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = support::watch::seen(&calls);
        if events.contains(&gone) || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let at = |what: &str| events.iter().position(|e| e == what);
    assert!(
        at(&gone).is_some() && at(&gone) < at("send Some(2)"),
        "the old connection's disconnect first: {events:?}"
    );
}

/// A `u64` one-way to "w" from the sender address `host:port`.
fn from_sender(host: &str, port: u16, n: u64) -> Bytes {
    let mut out = vec![1u8];
    out.extend_from_slice(&fingerprint::<u64>().to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(b"w");
    out.push(1);
    out.extend_from_slice(&(host.len() as u16).to_be_bytes());
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    Bytes::from(out)
}

/// A held connection that closes before its turn: its messages are
/// dispatched in turn, and its peer's disconnect follows them (it is not
/// left connected for ever).
fn a_held_connection_that_closed_disconnects_after_its_messages(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut first = Raw::connect(&addr);
    say_epoch(&mut first, 131, 1);
    one_way(&mut first, from_sender("peer", 1, 1));
    wait_for(&calls, &["send Some(1)"]);
    let mut second = Raw::connect(&addr);
    say_epoch(&mut second, 131, 2);
    one_way(&mut second, from_sender("peer", 1, 2));
    std::thread::sleep(Duration::from_millis(100));
    drop(second);
    stays(&calls, &["send Some(1)"]);
    drop(first);
    wait_for(&calls, &["send Some(1)", "send Some(2)"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events: Vec<String> = support::watch::seen(&calls)
            .into_iter()
            .filter(|e| e.ends_with(" peer:1") || e.starts_with("send"))
            .collect();
        if events.len() >= 6 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        events,
        [
            "connected peer:1",
            "send Some(1)",
            "disconnected peer:1",
            "connected peer:1",
            "send Some(2)",
            "disconnected peer:1",
        ],
        "each connection's messages between its connect and its disconnect; all: {:?}",
        support::watch::seen(&calls)
    );
}

/// A server that sends a ConnectionEpoch back on the connection an Outbox
/// opened breaks the protocol: the RpcEnv closes that connection rather than
/// take it for a sender's (whose reading it could then hold).
fn an_epoch_on_an_outbound_connection_closes_it(mode: IoMode) {
    capture_logs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = support::client_with(mode, "client", |_| {});
    let w = client.endpoint_ref::<u64, u64>(&rpc::RpcAddress::new("127.0.0.1", port), "w");
    w.send(1).unwrap();
    let (stream, _) = listener.accept().unwrap();
    let mut raw = Raw::from_stream(stream);
    // Once its epoch arrived, the outbox has set the connection up.
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut raw.stream, &mut first).unwrap();
    say_epoch(&mut raw, 141, 1);
    assert!(raw.closed_by_peer(), "the client closes the connection");
    assert!(logged(&[
        "protocol error",
        "a connection epoch on a connection this RpcEnv opened"
    ]));
    client.shutdown();
}

/// The epoch's receiver name is reserved.
#[test]
fn the_epoch_name_is_reserved() {
    let (server, _calls, _addr) = server(IoMode::Epoll, 60_000);
    for reserved in [CONNECTION_EPOCH_NAME, CONNECTION_ACK_NAME] {
        let (w, _) = Watcher::new();
        match server.setup_endpoint(reserved, w) {
            Err(RpcError::EndpointAlreadyExists { name }) => assert_eq!(name, reserved),
            other => panic!("expected EndpointAlreadyExists, got {:?}", other.map(|_| ())),
        }
    }
}

both_io_modes!(
    newer_connection_waits_for_the_older_to_close,
    other_senders_are_not_held,
    handover_timeout_closes_the_older_connection,
    older_epoch_is_fenced,
    held_connection_that_closes_is_still_delivered,
    second_epoch_on_a_connection_is_refused,
    malformed_epoch_is_refused,
    two_outboxes_to_one_server_are_independent_senders,
    the_older_connection_disconnects_before_the_newer_is_dispatched,
    a_held_connection_that_closed_disconnects_after_its_messages,
    an_epoch_on_an_outbound_connection_closes_it,
);

//! Per-sender order across reconnects (`handover`), on both IO modes, driven
//! from raw sockets so that each step is deterministic: a sender's newer
//! connection is held until its older one closes, then released in order; a
//! held connection that never sees its predecessor close is released by the
//! handover timeout; a connection older than one already seen is fenced; a
//! second epoch on one connection is a protocol error.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc::{CONNECTION_ACK_NAME, CONNECTION_EPOCH_NAME, ConnectionAck, ConnectionEpoch, RpcEnv, RpcError};
use support::raw::{Raw, envelope, fingerprint, u64_envelope};
use support::watch::{Calls, Watcher, messages};
use support::{capture_logs, logged, server_with};
use transport::{EncodedFrame, Frame, IoMode};

/// The body of a [`ConnectionEpoch`] message, as the wire format says: the
/// envelope, then the rkyv archive of four `u64`s (little-endian, unaligned):
/// instance, epoch, the number of the connection's first one-way, and how
/// many of its first one-ways are resent.
fn resend_epoch_body(instance: u64, epoch: u64, resend: [u64; 2]) -> Bytes {
    let payload: Vec<u8> = [instance, epoch, resend[0], resend[1]]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    envelope(fingerprint::<ConnectionEpoch>(), CONNECTION_EPOCH_NAME, &payload)
}

fn epoch_body(instance: u64, epoch: u64) -> Bytes {
    resend_epoch_body(instance, epoch, [0; 2])
}

fn one_way(raw: &mut Raw, body: Bytes) {
    raw.send(&EncodedFrame::one_way(body).unwrap()).unwrap();
}

/// The request id the raw peers give their ConnectionEpoch.
const EPOCH_ID: i64 = 1 << 40;

/// Sends a ConnectionEpoch request (answered once the connection is live;
/// these raw peers do not wait for it, as an Outbox does).
fn say_epoch(raw: &mut Raw, instance: u64, epoch: u64) {
    raw.rpc(EPOCH_ID, epoch_body(instance, epoch)).unwrap();
}

fn send_n(raw: &mut Raw, n: u64) {
    one_way(raw, u64_envelope("w", n));
}

/// The next frame other than a ConnectionAck (one-way).
fn next_answer(raw: &mut Raw) -> Option<Frame> {
    loop {
        match raw.next_frame()? {
            Frame::OneWayMessage { body }
                if body.windows(14).any(|w| w == CONNECTION_ACK_NAME.as_bytes()) => {}
            Frame::RpcResponse {
                request_id: EPOCH_ID, ..
            } => {}
            other => return Some(other),
        }
    }
}

/// Waits up to 10 s for the watcher's messages to equal `want`.
fn wait_for(calls: &Calls, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = messages(calls);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "messages {got:?}, waiting for {want:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The watcher's messages stay `want` for 300 ms (nothing more is dispatched).
fn stays(calls: &Calls, want: &[&str]) {
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(messages(calls), want, "nothing else was dispatched");
}

fn server(mode: IoMode, handover_timeout_ms: u64) -> (RpcEnv, Calls, String) {
    capture_logs();
    let server = server_with(mode, "server", |c| c.handover_timeout_ms = handover_timeout_ms);
    let (w, calls) = Watcher::new();
    server.setup_endpoint("w", w).unwrap();
    let addr = server.address().unwrap().to_string();
    (server, calls, addr)
}

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

/// One-ways of a connection that said its epoch are acknowledged with
/// ConnectionAcks of the count handled, once per read; a connection without
/// an epoch gets none.
fn one_ways_are_acknowledged(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut raw = Raw::connect(&addr);
    say_epoch(&mut raw, 101, 3);
    let frames: Vec<u8> = (0..3u64)
        .flat_map(|n| support::raw::wire(&EncodedFrame::one_way(u64_envelope("w", n)).unwrap()))
        .collect();
    raw.send_bytes(&frames).unwrap();
    match raw.next_frame() {
        Some(Frame::RpcResponse {
            request_id: EPOCH_ID,
            body,
        }) => assert!(body.is_empty()),
        other => panic!("the ConnectionEpoch is answered first, got {other:?}"),
    }
    let mut last = 0;
    while last < 3 {
        match raw.next_frame() {
            Some(Frame::OneWayMessage { body }) => {
                let ack = (1..=3)
                    .find(|n| {
                        body == envelope(
                            fingerprint::<ConnectionAck>(),
                            CONNECTION_ACK_NAME,
                            &[3u64.to_le_bytes(), (*n as u64).to_le_bytes()].concat(),
                        )
                    })
                    .expect("a ConnectionAck { epoch: 3, one_ways: 1..=3 }");
                assert!(ack > last, "acks grow: {last} then {ack}");
                last = ack;
            }
            other => panic!("expected a ConnectionAck, got {other:?}"),
        }
    }
    let mut plain = Raw::connect(&addr);
    for n in 0..3 {
        send_n(&mut plain, n);
    }
    plain.rpc(1, u64_envelope("w", 1)).unwrap();
    match next_answer(&mut plain) {
        Some(Frame::RpcResponse { request_id: 1, .. }) => {}
        other => panic!("only the answer, no ack: got {other:?}"),
    }
    assert_eq!(messages(&calls).len(), 7);
}

/// One-ways resent on a new connection that the old one had delivered are
/// dropped; the rest are delivered, in order.
fn resent_one_ways_are_delivered_once(mode: IoMode) {
    let (_server, calls, addr) = server(mode, 60_000);
    let mut old = Raw::connect(&addr);
    say_epoch(&mut old, 111, 1);
    for n in 1..=3 {
        send_n(&mut old, n);
    }
    wait_for(&calls, &["send Some(1)", "send Some(2)", "send Some(3)"]);
    drop(old);
    // The sender saw no ack: it resends its four one-ways from number 0
    // (the fourth was lost with the connection).
    let mut new = Raw::connect(&addr);
    new.rpc(EPOCH_ID, resend_epoch_body(111, 2, [0, 4])).unwrap();
    for n in 1..=4 {
        send_n(&mut new, n);
    }
    send_n(&mut new, 5);
    wait_for(
        &calls,
        &[
            "send Some(1)",
            "send Some(2)",
            "send Some(3)",
            "send Some(4)",
            "send Some(5)",
        ],
    );
    stays(
        &calls,
        &[
            "send Some(1)",
            "send Some(2)",
            "send Some(3)",
            "send Some(4)",
            "send Some(5)",
        ],
    );
}

/// One-ways that no ack covered when their connection was lost are dropped
/// with a warning naming how many once reconnecting fails (at the next
/// message): not silently. The receiver here is a raw socket that reads and
/// never acknowledges, then goes away.
fn unacknowledged_one_ways_are_reported_when_the_receiver_is_gone(mode: IoMode) {
    capture_logs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = support::client_with(mode, "client", |_| {});
    let w = client.endpoint_ref::<u64, u64>(&rpc::RpcAddress::new("127.0.0.1", port), "w");
    let n = 5;
    for i in 0..n {
        w.send(i).unwrap();
    }
    let (accepted, _) = listener.accept().unwrap();
    let mut raw = Raw::from_stream(accepted);
    // The ConnectionEpoch: nothing else comes before it is answered.
    let Some(Frame::RpcRequest { request_id, .. }) = raw.next_frame() else {
        panic!("a ConnectionEpoch request first");
    };
    raw.send(&EncodedFrame::rpc_response(request_id, Bytes::new()).unwrap())
        .unwrap();
    for _ in 0..n {
        assert!(matches!(raw.next_frame(), Some(Frame::OneWayMessage { .. })));
    }
    drop(raw);
    drop(listener);
    std::thread::sleep(Duration::from_millis(200));
    w.send(99).unwrap();
    let address = format!("127.0.0.1:{port}");
    assert!(
        logged(&[&address, "not acknowledged were dropped", &format!("dropped={n}")]),
        "a warning names the {n} one-ways that no ack covered"
    );
    assert!(
        logged(&[&address, "a one-way message was dropped"]),
        "and the one sent after"
    );
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

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod epoll {
            $(#[test] fn $case() { super::$case(transport::IoMode::Epoll); })*
        }
        mod io_uring {
            $(#[test] fn $case() { super::$case(transport::IoMode::IoUring); })*
        }
    };
}

cases!(
    newer_connection_waits_for_the_older_to_close,
    other_senders_are_not_held,
    handover_timeout_closes_the_older_connection,
    older_epoch_is_fenced,
    held_connection_that_closes_is_still_delivered,
    second_epoch_on_a_connection_is_refused,
    malformed_epoch_is_refused,
    one_ways_are_acknowledged,
    resent_one_ways_are_delivered_once,
    unacknowledged_one_ways_are_reported_when_the_receiver_is_gone,
);

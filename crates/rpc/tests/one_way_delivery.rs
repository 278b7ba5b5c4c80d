//! One-way delivery across reconnects, on both IO modes: the receiver
//! acknowledges what it handled, the sender resends what no ack covered and
//! the receiver drops what it had already handled, and what is given up is
//! named in the log (docs/SOAK.md has the whole path).

#[macro_use]
mod support;

use std::time::Duration;

use bytes::Bytes;
use rpc::{CONNECTION_ACK_NAME, ConnectionAck};
use support::epoch::*;
use support::raw::{Raw, envelope, fingerprint, u64_envelope};
use support::watch::messages;
use support::{capture_logs, logged};
use transport::{EncodedFrame, Frame, IoMode};

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

/// A one-way too large for a frame is dropped with a warning naming why,
/// and nothing else: the connection stays, and the one-ways before and after
/// it are delivered, once and in order.
fn a_one_way_too_large_is_dropped_alone(mode: IoMode) {
    let (server, calls, _addr) = server(mode, 60_000);
    let client = support::client_with(mode, "client", |c| c.transport.max_frame_size = 4096);
    let addr = server.address().unwrap();
    let w = client.setup_endpoint_ref::<u64, u64>(addr, "w").unwrap();
    let big = client.setup_endpoint_ref::<Vec<u8>, u64>(addr, "w").unwrap();
    w.send(1).unwrap();
    wait_for(&calls, &["send Some(1)"]);
    big.send(vec![7; 8192]).unwrap();
    for n in 2..=4 {
        w.send(n).unwrap();
    }
    wait_for(
        &calls,
        &["send Some(1)", "send Some(2)", "send Some(3)", "send Some(4)"],
    );
    // More one-ways, acknowledged as they arrive: the acks count what
    // arrived, so a number given to the dropped one would let the outbox
    // forget one not covered.
    for n in 5..133 {
        w.send(n).unwrap();
    }
    let want: Vec<String> = (1..133).map(|i| format!("send Some({i})")).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    wait_for(&calls, &want);
    assert!(
        logged(&["one-way message was dropped", "exceeds the maximum frame size"]),
        "the dropped one-way is named with its reason"
    );
    client.shutdown();
}

/// A one-way the receiver refuses (larger than its max_frame_size) would go
/// first on every new connection and close it: the sender gives it up after
/// 3 connections in a row that acknowledged nothing, says so, and the
/// one-ways after it are delivered, once and in order.
fn a_one_way_the_receiver_refuses_is_given_up(mode: IoMode) {
    capture_logs();
    let server = support::server_with(mode, "server", |c| c.transport.max_frame_size = 4096);
    let (w, calls) = support::watch::Watcher::new();
    server.setup_endpoint("w", w).unwrap();
    let client = support::client_with(mode, "client", |_| {});
    let addr = server.address().unwrap();
    let w = client.setup_endpoint_ref::<u64, u64>(addr, "w").unwrap();
    let big = client.endpoint_ref::<Vec<u8>, u64>(addr, "w");
    w.send(1).unwrap();
    wait_for(&calls, &["send Some(1)"]);
    big.send(vec![7; 10_000]).unwrap();
    // Each send after a close opens the next connection.
    for n in 2..=6 {
        std::thread::sleep(Duration::from_millis(100));
        w.send(n).unwrap();
    }
    let want: Vec<String> = (1..=6).map(|i| format!("send Some({i})")).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    wait_for(&calls, &want);
    assert!(
        logged(&[&addr.to_string(), "dropping a one-way message", "bytes="]),
        "the given-up one-way is named"
    );
    client.shutdown();
}

both_io_modes!(
    one_ways_are_acknowledged,
    resent_one_ways_are_delivered_once,
    unacknowledged_one_ways_are_reported_when_the_receiver_is_gone,
    a_one_way_too_large_is_dropped_alone,
    a_one_way_the_receiver_refuses_is_given_up,
);

//! Cases about misbehaving peers and limits: a peer closing mid-frame,
//! undecodable input, and frames over `max_frame_size`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use bytes::Bytes;

use super::TransportFactory;
use super::support::{
    Event, Probe, assert_echo_works, connect, echoed, expect_closed_by_peer, expect_no_event, raw_connect,
    rpc, serve, shutdown, test_conf, wait_event, wire,
};
use crate::protocol::MAX_HEADER_SIZE;
use crate::{DecodeError, EncodedFrame, TransportClient, TransportConf, TransportError};

/// Waits for the server to report the connection from `peer` ended, with no
/// `exception_caught` other than a `Decode` error or an IO error.
fn expect_server_saw_close(events: &Receiver<Event>, peer: SocketAddr, what: &str) {
    let e = wait_event(events, &format!("channel_inactive for {what}"), |e| {
        e.peer() == peer && matches!(e, Event::Inactive { .. } | Event::Exception(..))
    });
    if let Event::Exception(_, err) = &e {
        assert!(
            matches!(err, TransportError::Io { .. } | TransportError::Decode { .. }),
            "{what}: unexpected exception {err:?}"
        );
        wait_event(events, &format!("channel_inactive for {what}"), |e| {
            e.peer() == peer && matches!(e, Event::Inactive { .. })
        });
    }
}

/// Raw peers that close after half a frame header, after a header and half a
/// body, and after one whole frame plus half of the next (whose answer must
/// still arrive): each time the server reports the connection closed, stays
/// up, and a regular client keeps getting answers, as does a new one.
pub fn peer_closing_mid_frame(factory: &TransportFactory) {
    let t = factory(test_conf());
    let (server_probe, server_events) = Probe::echo();
    let server = serve(&t, server_probe);
    let addr = server.local_addr();
    let (client_probe, _client_events) = Probe::echo();
    let client = connect(&t, addr, client_probe.clone());

    let frame = wire(&EncodedFrame::rpc_request(7, Bytes::from(vec![b'b'; 1000])).expect("encode"));
    let cuts: [(&str, &[u8]); 2] = [
        ("half a frame header", &frame[..MAX_HEADER_SIZE / 2]),
        ("a header and half a body", &frame[..MAX_HEADER_SIZE + 500]),
    ];
    for (what, bytes) in cuts {
        let mut raw = raw_connect(addr);
        let peer = raw.local_addr().expect("raw local address");
        raw.write_all(bytes).expect("write a partial frame");
        thread::sleep(Duration::from_millis(20));
        raw.shutdown(Shutdown::Both).expect("close the raw socket");
        drop(raw);
        expect_server_saw_close(&server_events, peer, &format!("a peer that closed after {what}"));
        assert_echo_works(&client, &format!("after a peer closed after {what}"));
    }

    // A whole frame then half of the next: the whole one is answered first.
    let mut raw = raw_connect(addr);
    let peer = raw.local_addr().expect("raw local address");
    let body = b"whole frame".to_vec();
    let mut bytes = wire(&EncodedFrame::rpc_request(41, Bytes::from(body.clone())).expect("encode"));
    bytes.extend_from_slice(&frame[..MAX_HEADER_SIZE + 10]);
    raw.write_all(&bytes).expect("write a frame and a half");
    let answer = EncodedFrame::rpc_response(41, Bytes::from(echoed(&body))).expect("encode");
    let mut got = vec![0u8; answer.len()];
    raw.read_exact(&mut got)
        .expect("the answer to the whole frame before the cut one");
    assert_eq!(got, wire(&answer), "the answer to the whole frame is wrong");
    raw.shutdown(Shutdown::Both).expect("close the raw socket");
    drop(raw);
    expect_server_saw_close(
        &server_events,
        peer,
        "a peer that closed after a frame and a half",
    );

    assert_echo_works(&client, "after three peers closed mid-frame");
    let (probe, _events) = Probe::echo();
    let fresh = connect(&t, addr, probe);
    assert_echo_works(&fresh, "a new client after peers closed mid-frame");
    shutdown(&t);
}

/// A negative length, an unknown type byte and a length over `max_frame_size`
/// (with no body sent), each from its own raw socket: the server closes that
/// connection, reports `exception_caught` with the matching `Decode` error
/// before `channel_inactive`, and other connections keep working.
pub fn bad_input_closes_only_that_connection(factory: &TransportFactory) {
    const MAX: u64 = 64 << 10;
    let t = factory(TransportConf {
        max_frame_size: MAX,
        ..test_conf()
    });
    let (server_probe, server_events) = Probe::echo();
    let server = serve(&t, server_probe);
    let addr = server.local_addr();
    let (client_probe, _client_events) = Probe::echo();
    let client = connect(&t, addr, client_probe);
    assert_echo_works(&client, "before bad input");

    let header = |length: i64, ty: u8| -> Vec<u8> {
        let mut h = length.to_be_bytes().to_vec();
        h.push(ty);
        h.extend_from_slice(&[0; 12]);
        h
    };
    let cases = [
        (
            "a negative length",
            header(-5, 3),
            DecodeError::NegativeLength { length: -5 },
        ),
        (
            "an unknown type",
            header(21, 42),
            DecodeError::UnknownType { id: 42 },
        ),
        (
            "a length over max_frame_size",
            header(1 << 20, 3),
            DecodeError::FrameTooLarge {
                length: 1 << 20,
                max: MAX,
            },
        ),
    ];
    for (what, bytes, want) in cases {
        let mut raw = raw_connect(addr);
        let peer = raw.local_addr().expect("raw local address");
        raw.write_all(&bytes).expect("write bad input");
        expect_closed_by_peer(&mut raw, &format!("a connection that sent {what}"));
        let e = wait_event(&server_events, &format!("exception_caught for {what}"), |e| {
            e.peer() == peer && matches!(e, Event::Exception(..) | Event::Inactive { .. })
        });
        match &e {
            Event::Exception(_, TransportError::Decode { peer: p, source }) => {
                assert_eq!(*source, want, "{what}: wrong decode error");
                assert_eq!(*p, peer, "{what}: the Decode error names the wrong peer");
            }
            _ => panic!(
                "{what}: expected exception_caught with a Decode error first, got {}",
                e.describe()
            ),
        }
        wait_event(&server_events, &format!("channel_inactive after {what}"), |e| {
            e.peer() == peer && matches!(e, Event::Inactive { .. })
        });
        assert!(
            client.is_active(),
            "{what} on another connection closed the regular client"
        );
        assert_echo_works(&client, &format!("after another connection sent {what}"));
    }
    expect_no_event(&server_events, "event on the regular connection", |e| {
        e.peer() == client.local_addr() && matches!(e, Event::Exception(..) | Event::Inactive { .. })
    });
    shutdown(&t);
}

/// With `max_frame_size` = 4096: sending a larger RpcRequest, OneWayMessage or
/// RpcResponse fails with `FrameTooLarge` on the sender (the RPC's callback is
/// dropped uncalled) and the connection stays open; frames of exactly 4096
/// bytes pass both ways.
pub fn oversized_send_fails_without_closing(factory: &TransportFactory) {
    const MAX: u64 = 4096;
    const TOO_BIG: usize = 5000;
    let t = factory(TransportConf {
        max_frame_size: MAX,
        ..test_conf()
    });
    // Answers "big reply" by first trying a response over the limit; answers
    // anything else with the body reversed (same length).
    let (server_probe, server_events) = Probe::new(false, |client: &TransportClient, id, body: Bytes| {
        let answer: Bytes = if &body[..] == b"big reply" {
            match client.send_response(id, Bytes::from(vec![0u8; TOO_BIG])) {
                Err(TransportError::FrameTooLarge { length, max }) => {
                    format!("refused {length} > {max}").into()
                }
                other => format!("unexpected {other:?}").into(),
            }
        } else {
            body.iter().rev().copied().collect::<Vec<u8>>().into()
        };
        let _ = client.send_response(id, answer);
    });
    let server = serve(&t, server_probe);
    let (client_probe, client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);
    let want_err = |r: Result<(), TransportError>, what: &str| match r {
        Err(TransportError::FrameTooLarge { length, max }) => {
            assert_eq!(
                (length, max),
                (TOO_BIG as u64 + 21, MAX),
                "{what}: FrameTooLarge fields"
            );
        }
        other => panic!("{what} over max_frame_size returned {other:?}, expected FrameTooLarge"),
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, TransportError>>();
    let r = client.send_rpc(Bytes::from(vec![1u8; TOO_BIG]), move |r| {
        let _ = tx.send(r);
    });
    want_err(r.map(drop), "send_rpc");
    match rx.recv_timeout(Duration::from_millis(100)) {
        Err(RecvTimeoutError::Disconnected) => {}
        other => panic!("the callback of a refused send_rpc must be dropped uncalled, got {other:?}"),
    }
    let r = client.send_one_way(Bytes::from(vec![1u8; TOO_BIG]));
    match r {
        Err(TransportError::FrameTooLarge { length, .. }) => assert_eq!(length, TOO_BIG as u64 + 13),
        other => panic!("send_one_way over max_frame_size returned {other:?}, expected FrameTooLarge"),
    }
    assert!(client.is_active(), "a refused send closed the connection");
    assert_eq!(
        client.outstanding_rpcs(),
        0,
        "a refused send_rpc left an outstanding RPC"
    );

    match rpc(&client, "big reply") {
        Ok(answer) => assert_eq!(
            &answer[..],
            format!("refused {} > {MAX}", TOO_BIG + MAX_HEADER_SIZE).as_bytes()
        ),
        Err(e) => panic!("after the server's refused response the request failed: {e}"),
    }
    // Exactly max_frame_size, both ways.
    let body: Vec<u8> = (0..MAX as usize - MAX_HEADER_SIZE)
        .map(|i| (i % 251) as u8)
        .collect();
    let want: Vec<u8> = body.iter().rev().copied().collect();
    match rpc(&client, body) {
        Ok(answer) => assert!(answer[..] == want[..], "a max_frame_size frame came back altered"),
        Err(e) => panic!("a frame of exactly max_frame_size bytes failed: {e}"),
    }
    assert!(client.is_active(), "the connection closed");
    let closed = |e: &Event| matches!(e, Event::Exception(..) | Event::Inactive { .. });
    expect_no_event(&server_events, "server-side close after refused sends", closed);
    expect_no_event(&client_events, "client-side close after refused sends", closed);
    shutdown(&t);
}

/// A response callback that panics when its connection closes under it (the
/// RPC failed with `ConnectionClosed`) ends nothing else: the other RPCs
/// outstanding on that connection still fail with `ConnectionClosed`, the
/// connection's handler still hears `channel_inactive`, and another
/// connection on the same event loop (one client thread) still works, as does
/// a new one. The panic is the caller's bug; the transport survives it, as
/// Netty survives an exception thrown from a listener.
pub fn a_callback_panicking_as_its_connection_closes_harms_nothing_else(factory: &TransportFactory) {
    let t = factory(TransportConf {
        server_threads: 1,
        client_threads: 1,
        ..test_conf()
    });
    // The server closes a connection that sends "close"; it answers nothing
    // else on it, and echoes on the others.
    let (server_probe, _server_events) = Probe::new(false, |client, id, body| {
        if &body[..] == b"close" {
            client.close();
        } else if &body[..] != b"hold" {
            super::support::echo_reply(client, id, body);
        }
    });
    let server = serve(&t, server_probe);
    let addr = server.local_addr();
    let (doomed_probe, doomed_events) = Probe::echo();
    let doomed = connect(&t, addr, doomed_probe);
    let (other_probe, _other_events) = Probe::echo();
    let other = connect(&t, addr, other_probe);
    assert_echo_works(&other, "before");

    let (failed_tx, failed_rx) = mpsc::channel();
    for _ in 0..2 {
        let failed_tx = failed_tx.clone();
        doomed
            .send_rpc(Bytes::from_static(b"hold"), move |r| {
                let _ = failed_tx.send(matches!(r, Err(TransportError::ConnectionClosed { .. })));
            })
            .expect("send a held request");
    }
    doomed
        .send_rpc(Bytes::from_static(b"close"), |r| {
            panic!("this response callback panics on purpose (conformance case), with {r:?}")
        })
        .expect("send the request that closes the connection");
    for i in 0..2 {
        let closed = failed_rx
            .recv_timeout(super::support::TIMEOUT)
            .unwrap_or_else(|_| panic!("held RPC {i} was never failed after a callback panicked"));
        assert!(closed, "held RPC {i} failed, but not with ConnectionClosed");
    }
    wait_event(
        &doomed_events,
        "channel_inactive of the connection whose callback panicked",
        |e| matches!(e, Event::Inactive { .. }),
    );
    assert!(
        !doomed.is_active(),
        "the closed connection still says it is active"
    );
    assert_echo_works(
        &other,
        "after a callback panicked on another connection of the same event loop",
    );
    let (fresh_probe, _fresh_events) = Probe::echo();
    let fresh = connect(&t, addr, fresh_probe);
    assert_echo_works(&fresh, "a connection made after a callback panicked");
    drop(server);
    shutdown(&t);
}

/// Echoes requests, and panics in `channel_inactive` and `exception_caught`.
struct PanickingOnClose {
    inactive: std::sync::atomic::AtomicUsize,
}

impl crate::TransportHandler for PanickingOnClose {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        super::support::echo_reply(client, request_id, body);
    }

    fn receive_one_way(&self, _client: &TransportClient, _body: Bytes) {}

    fn channel_inactive(&self, _client: &TransportClient) {
        self.inactive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panic!("channel_inactive panics on purpose (conformance case)");
    }

    fn exception_caught(&self, _client: &TransportClient, error: &TransportError) {
        panic!("exception_caught panics on purpose (conformance case): {error}");
    }
}

/// A server handler that panics in `channel_inactive` (and in
/// `exception_caught`) as connections end, on a server with one event loop:
/// the loop goes on serving the other connections and accepting new ones.
pub fn a_handler_panicking_as_connections_end_harms_no_other(factory: &TransportFactory) {
    let t = factory(TransportConf {
        server_threads: 1,
        ..test_conf()
    });
    let handler = std::sync::Arc::new(PanickingOnClose {
        inactive: std::sync::atomic::AtomicUsize::new(0),
    });
    let server = t
        .bind(super::support::any_local_port(), handler.clone())
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    let addr = server.local_addr();
    let (probe, _events) = Probe::echo();
    let staying = connect(&t, addr, probe);
    assert_echo_works(&staying, "before");
    for round in 0..3 {
        let (probe, _events) = Probe::echo();
        let leaving = connect(&t, addr, probe);
        assert_echo_works(&leaving, &format!("round {round}: the connection about to close"));
        leaving.close();
        // A peer that sends bytes that do not decode: exception_caught, then channel_inactive.
        let mut raw = raw_connect(addr);
        raw.write_all(&[0xff; 32]).expect("write bad input");
        expect_closed_by_peer(&mut raw, &format!("round {round}: a peer that sent bad input"));
        super::support::wait_until("the server's handler heard both connections end", || {
            handler.inactive.load(std::sync::atomic::Ordering::SeqCst) >= 2 * (round + 1)
        });
        assert_echo_works(
            &staying,
            &format!("round {round}: after the handler panicked twice"),
        );
    }
    let (probe, _events) = Probe::echo();
    let fresh = connect(&t, addr, probe);
    assert_echo_works(&fresh, "a connection made after the handler panicked");
    drop(server);
    shutdown(&t);
}

//! Authentication (`auth_secret`) on both IO modes: the right secret works
//! both ways; a wrong or missing secret closes the connection, is logged with
//! the peer's address, fails the ask clearly, and reaches no endpoint; a
//! replayed handshake is refused.

mod suite;
mod support;

use std::sync::mpsc;

use bytes::Bytes;
use rpc::{RpcEndpointRef, RpcError};
use suite::endpoints::{Recorder, Req};
use support::raw::Raw;
use support::watch::{Watcher, messages, seen};
use support::{capture_logs, client_with, logged, plain, secret, server_with};
use transport::auth::{ClientHandshake, FAILURE_PREFIX, fresh_nonce};
use transport::{Frame, IoMode};

fn right_secret_works_both_ways(mode: IoMode) {
    let s = server_with(mode, "server", secret("open sesame"));
    let c = client_with(mode, "client", secret("open sesame"));
    let (tx, _rx) = mpsc::channel();
    s.setup_endpoint("rec", Recorder { events: tx }).unwrap();
    let (tx, _rx2) = mpsc::channel();
    c.setup_endpoint("client-echo", Recorder { events: tx }).unwrap();
    let r: RpcEndpointRef<Req, u64> = c.setup_endpoint_ref(s.address().unwrap(), "rec").unwrap();
    assert_eq!(r.ask_sync(Req::Double(21)).unwrap(), 42);
    // The server asks the client back over the client's connection.
    assert_eq!(r.ask_sync(Req::AskBack(5)).unwrap(), 11);
    // And a server-mode RpcEnv asks the other by address.
    let s2 = server_with(mode, "server2", secret("open sesame"));
    let (w, calls) = Watcher::new();
    s2.setup_endpoint("w", w).unwrap();
    let back: RpcEndpointRef<u64, u64> = s.setup_endpoint_ref(s2.address().unwrap(), "w").unwrap();
    assert_eq!(back.ask_sync(1).unwrap(), 2);
    assert!(
        seen(&calls).iter().any(|c| c.starts_with("connected")),
        "{:?}",
        seen(&calls)
    );
}

/// An RpcEnv with `client` config asks a watcher on an RpcEnv with `server` config;
/// returns the error and what the watcher saw.
fn refused(
    mode: IoMode,
    server: impl FnOnce(&mut rpc::RpcEnvConfig),
    client: impl FnOnce(&mut rpc::RpcEnvConfig),
) -> (RpcError, Vec<String>) {
    let s = server_with(mode, "server", server);
    let c = client_with(mode, "client", client);
    let (w, calls) = Watcher::new();
    s.setup_endpoint("w", w).unwrap();
    let r = c.endpoint_ref::<u64, u64>(s.address().unwrap(), "w");
    let err = r.ask_sync(7).unwrap_err();
    r.send(8).unwrap();
    // The same again once the client has seen the close: a new connection, refused too.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let again = r.ask_sync(9).unwrap_err();
    assert_eq!(
        std::mem::discriminant(&err),
        std::mem::discriminant(&again),
        "{err:?} then {again:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    (err, seen(&calls))
}

fn wrong_secret_is_refused(mode: IoMode) {
    capture_logs();
    let (err, seen) = refused(mode, secret("right"), secret("wrong"));
    assert!(matches!(err, RpcError::AuthenticationFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("authentication") && text.contains("auth_secret"),
        "{text}"
    );
    assert!(seen.is_empty(), "the endpoint saw {seen:?}");
    assert!(logged(&["authentication failed", "peer=127.0.0.1:"]));
}

fn missing_secret_on_client_is_refused(mode: IoMode) {
    let (err, seen) = refused(mode, secret("right"), plain);
    assert!(matches!(err, RpcError::AuthenticationFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(FAILURE_PREFIX), "{err:?}");
    assert!(text.contains("auth_secret"), "{text}");
    assert!(seen.is_empty(), "the endpoint saw {seen:?}");
}

fn missing_secret_on_server_is_refused(mode: IoMode) {
    let (err, seen) = refused(mode, plain, secret("right"));
    assert!(matches!(err, RpcError::AuthenticationFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("refused the handshake"), "{err}");
    // A server without a secret sees connections come and go, never a message.
    assert!(seen.iter().all(|c| c.contains("connected")), "{seen:?}");
}

fn response_body(frame: Option<Frame>) -> Bytes {
    match frame {
        Some(Frame::RpcResponse { body, .. }) => body,
        other => panic!("expected an RpcResponse, got {other:?}"),
    }
}

fn failure_text(frame: Option<Frame>) -> String {
    match frame {
        Some(Frame::RpcFailure { error, .. }) => error,
        other => panic!("expected an RpcFailure, got {other:?}"),
    }
}

fn raw_peers_cannot_replay_or_skip_the_handshake(mode: IoMode) {
    capture_logs();
    let s = server_with(mode, "server", secret("k"));
    let (w, calls) = Watcher::new();
    s.setup_endpoint("w", w).unwrap();
    let addr = s.address().unwrap().to_string();

    // A peer that knows the secret, its handshake recorded.
    let mut honest = Raw::connect(&addr);
    let mut hs = ClientHandshake::new(b"k", fresh_nonce().unwrap());
    let hello = hs.hello();
    honest.rpc(0, hello.clone()).unwrap();
    let challenge = response_body(honest.next_frame());
    let proof = hs.on_challenge(&challenge).unwrap();
    honest.rpc(1, proof.clone()).unwrap();
    hs.on_server_proof(&response_body(honest.next_frame())).unwrap();
    drop(honest);

    // Replaying it on a new connection meets a fresh challenge and fails.
    let mut replay = Raw::connect(&addr);
    let me = replay.stream.local_addr().unwrap().to_string();
    replay.rpc(0, hello).unwrap();
    assert_ne!(response_body(replay.next_frame()), challenge, "a fresh nonce");
    replay.rpc(1, proof).unwrap();
    let text = failure_text(replay.next_frame());
    assert!(text.starts_with(FAILURE_PREFIX), "{text}");
    assert!(replay.closed_by_peer(), "the server closes the connection");
    assert!(
        logged(&["authentication failed", &me]),
        "logged with the peer address {me}"
    );

    // Skipping the handshake: the first RPC is refused, the connection closed.
    let mut rude = Raw::connect(&addr);
    rude.rpc(5, Bytes::from_static(b"\x01not a handshake")).unwrap();
    assert!(failure_text(rude.next_frame()).starts_with(FAILURE_PREFIX));
    assert!(rude.closed_by_peer());

    // A one-way message first: closed without an answer.
    let mut silent = Raw::connect(&addr);
    let frame = transport::EncodedFrame::one_way(Bytes::from_static(b"hi")).unwrap();
    silent.send(&frame).unwrap();
    assert!(silent.closed_by_peer());

    assert!(messages(&calls).is_empty(), "{:?}", messages(&calls));
}

/// A raw server that answers the client's hello with `answer` (given the hello's request id).
fn impostor(
    answer: impl FnOnce(&mut Raw, i64) + Send + 'static,
) -> (rpc::RpcAddress, std::thread::JoinHandle<Raw>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut raw = Raw::from_stream(listener.accept().unwrap().0);
        match raw.next_frame() {
            Some(Frame::RpcRequest { request_id, body }) => {
                assert!(
                    transport::auth::is_handshake(&body),
                    "the client starts with the handshake"
                );
                answer(&mut raw, request_id);
            }
            other => panic!("expected the client's hello, got {other:?}"),
        }
        raw
    });
    (rpc::RpcAddress::new("127.0.0.1", port), server)
}

fn client_refuses_an_unproven_server(mode: IoMode) {
    let c = client_with(mode, "client", secret("k"));
    let (w, calls) = Watcher::new();
    c.setup_endpoint("w", w).unwrap();

    // A server that asks the client something instead of answering the hello.
    let (addr, server) = impostor(|raw, _| {
        raw.rpc(77, support::raw::u64_envelope("w", 1)).unwrap();
    });
    let err = c.endpoint_ref::<u64, u64>(&addr, "x").ask_sync(1).unwrap_err();
    assert!(matches!(err, RpcError::AuthenticationFailed { .. }), "{err:?}");
    let mut raw = server.join().unwrap();
    match raw.next_frame() {
        Some(Frame::RpcFailure {
            request_id: 77,
            error,
        }) => assert!(error.starts_with(FAILURE_PREFIX), "{error}"),
        other => panic!("the client refuses the early request: {other:?}"),
    }
    assert!(raw.closed_by_peer());

    // A server that answers with a challenge but cannot prove the secret.
    let (addr, server) = impostor(|raw, id| {
        let challenge = transport::auth::encode(transport::auth::Step::ServerChallenge, &[7; 32]);
        raw.send(&transport::EncodedFrame::rpc_response(id, challenge).unwrap())
            .unwrap();
        let Some(Frame::RpcRequest { request_id, .. }) = raw.next_frame() else {
            panic!("expected the client's proof")
        };
        let forged = transport::auth::encode(transport::auth::Step::ServerProof, &[9; 32]);
        raw.send(&transport::EncodedFrame::rpc_response(request_id, forged).unwrap())
            .unwrap();
    });
    let err = c.endpoint_ref::<u64, u64>(&addr, "x").ask_sync(1).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RpcError::AuthenticationFailed { .. }) && text.contains("does not match"),
        "{err:?}"
    );
    assert!(server.join().unwrap().closed_by_peer());
    assert!(seen(&calls).is_empty(), "{:?}", seen(&calls));
}

fn idle_unauthenticated_connections_are_closed(mode: IoMode) {
    capture_logs();
    let s = server_with(mode, "server", |c| {
        c.transport.auth_secret = Some("k".into());
        c.transport.connect_timeout_ms = 300;
    });
    let addr = s.address().unwrap().to_string();
    let mut idle = Raw::connect(&addr);
    let me = idle.stream.local_addr().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let _next = Raw::connect(&addr);
    assert!(idle.closed_by_peer(), "closed after the handshake timeout");
    assert!(logged(&[&me, "no handshake within the timeout"]));
}

macro_rules! auth_cases {
    ($($case:ident),* $(,)?) => {
        mod epoll {
            $(#[test] fn $case() { super::$case(transport::IoMode::Epoll); })*
        }
        mod io_uring {
            $(#[test] fn $case() { super::$case(transport::IoMode::IoUring); })*
        }
    };
}

auth_cases!(
    right_secret_works_both_ways,
    wrong_secret_is_refused,
    missing_secret_on_client_is_refused,
    missing_secret_on_server_is_refused,
    raw_peers_cannot_replay_or_skip_the_handshake,
    client_refuses_an_unproven_server,
    idle_unauthenticated_connections_are_closed,
);

#[test]
fn peer_process_main() {
    suite::peer::peer_main();
}

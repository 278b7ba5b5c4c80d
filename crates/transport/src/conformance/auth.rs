//! Cases about closing after a last answer and about `auth_secret`: the
//! handshake every backend runs through [`crate::auth`].

use std::io::Read;

use bytes::Bytes;

use super::TransportFactory;
use super::support::{
    Event, Probe, TIMEOUT, accepted, assert_echo_works, connect, expect_no_event, raw_connect, serve,
    shutdown, test_conf, try_connect,
};
use crate::{BufferPool, Frame, FrameDecoder, TransportConf, TransportError};

/// `TransportClient::close_after_flush` writes every frame queued before it,
/// then closes the connection.
pub fn close_after_flush_delivers_queued_frames(factory: &TransportFactory) {
    let transport = factory(test_conf());
    let (probe, events) = Probe::echo();
    let server = serve(&transport, probe);
    let mut raw = raw_connect(server.local_addr());
    let conn = accepted(&events, raw.local_addr().unwrap());
    let body = Bytes::from(vec![7u8; 64 << 10]);
    for _ in 0..64 {
        conn.send_one_way(body.clone()).unwrap();
    }
    conn.send_failure(1, "last words").unwrap();
    conn.close_after_flush();
    let mut decoder = FrameDecoder::new(1 << 20, BufferPool::default());
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    loop {
        match raw.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => decoder
                .decode(Bytes::copy_from_slice(&buf[..n]), &mut |f| frames.push(f))
                .expect("valid frames"),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("close_after_flush: read failed before the close: {e}"),
        }
    }
    assert_eq!(frames.len(), 65, "every queued frame arrives before the close");
    assert_eq!(
        frames.last(),
        Some(&Frame::RpcFailure {
            request_id: 1,
            error: "last words".into()
        })
    );
    shutdown(&transport);
}

fn with_secret(secret: Option<&str>) -> TransportConf {
    TransportConf {
        auth_secret: secret.map(String::from),
        ..test_conf()
    }
}

/// With the same `auth_secret` on both ends, connections work both ways; with
/// another or none, `connect` fails with `AuthenticationFailed` and the
/// server's handler never hears of the connection.
pub fn auth_secret_gates_connections(factory: &TransportFactory) {
    let server_side = factory(with_secret(Some("s3cret")));
    let (probe, events) = Probe::echo();
    let server = serve(&server_side, probe);
    let addr = server.local_addr();

    let good = factory(with_secret(Some("s3cret")));
    let (client_probe, client_events) = Probe::echo();
    let client = connect(&good, addr, client_probe);
    assert_echo_works(&client, "authenticated client");
    let conn = accepted(&events, client.local_addr());
    // The server asks the client over the same connection.
    let (tx, rx) = std::sync::mpsc::channel();
    conn.send_rpc(Bytes::from_static(b"ping"), move |r| drop(tx.send(r)))
        .unwrap();
    let answer = rx.recv_timeout(TIMEOUT).expect("the client answers").unwrap();
    assert_eq!(&answer[..], b"re:ping");
    assert!(matches!(
        client_events.recv_timeout(TIMEOUT),
        Ok(Event::Active(_))
    ));

    for (secret, what) in [(Some("guess"), "a wrong secret"), (None, "no secret")] {
        let other = factory(with_secret(secret));
        let (p, _) = Probe::echo();
        match try_connect(&other, addr, p) {
            Err(TransportError::AuthenticationFailed { .. }) if secret.is_some() => {}
            // Without a secret the client connects; its first request is refused.
            Ok(c) if secret.is_none() => {
                let err = super::support::rpc(&c, "hello").unwrap_err();
                assert!(err.to_string().contains(crate::auth::FAILURE_PREFIX), "{err}");
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
        expect_no_event(&events, what, |e| !matches!(e, Event::Inactive { .. }));
        shutdown(&other);
    }
    shutdown(&good);
    shutdown(&server_side);
}

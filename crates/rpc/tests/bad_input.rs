//! Bad input from raw sockets, on both IO modes. Each case: the server logs a
//! clear error naming the peer, closes that connection (for a bad frame) or
//! answers with an RpcFailure (for a bad message), and keeps serving every
//! other connection; the buffer pool stays within its bound.

mod suite;
#[macro_use]
mod support;

use bytes::Bytes;
use rpc::{RpcEndpointRef, RpcEnv};
use suite::endpoints::{Recorder, Req};
use support::raw::{Raw, envelope, fingerprint, u64_envelope};
use support::watch::{Calls, Watcher, messages};
use support::{capture_logs, client_with, logged, plain, server_with};
use transport::{EncodedFrame, Frame, IoMode};

const MAX_FRAME: u64 = 1 << 20;

/// A server with a watcher `w` and a recorder `rec`, and a well-behaved
/// client asking `w` before and after the bad input.
struct Fixture {
    server: RpcEnv,
    _client: RpcEnv,
    healthy: RpcEndpointRef<u64, u64>,
    calls: Calls,
    addr: String,
}

impl Fixture {
    fn new(mode: IoMode) -> Self {
        capture_logs();
        let server = server_with(mode, "server", |c| {
            c.transport.max_frame_size = MAX_FRAME;
            c.transport.pool_max_bytes = 4 << 20;
        });
        let (w, calls) = Watcher::new();
        server.setup_endpoint("w", w).unwrap();
        let (h, _) = Watcher::new();
        server.setup_endpoint("h", h).unwrap();
        let (tx, _rx) = std::sync::mpsc::channel();
        std::mem::forget(_rx);
        server.setup_endpoint("rec", Recorder { events: tx }).unwrap();
        let client = client_with(mode, "client", plain);
        let healthy = client.setup_endpoint_ref(server.address().unwrap(), "h").unwrap();
        assert_eq!(healthy.ask_sync(1).unwrap(), 2);
        let addr = server.address().unwrap().to_string();
        Self {
            server,
            _client: client,
            healthy,
            calls,
            addr,
        }
    }

    /// Sends `bytes` on a new raw connection; asserts the server closes it
    /// and logs `error` with the connection's address.
    fn refused(&self, bytes: &[u8], error: &str) {
        let mut raw = Raw::connect(&self.addr);
        let me = raw.stream.local_addr().unwrap().to_string();
        let _ = raw.send_bytes(bytes);
        assert!(
            raw.closed_by_peer(),
            "the server closes the connection after {error}"
        );
        assert!(logged(&[&me, error]), "a log line naming {me} and `{error}`");
        self.still_serving();
    }

    fn still_serving(&self) {
        assert_eq!(
            self.healthy.ask_sync(41).unwrap(),
            42,
            "other connections unaffected"
        );
        let pool = self.server.pool_stats();
        assert!(pool.bytes_held <= pool.max_held_bytes, "{pool:?}");
    }
}

fn header(len: i64, ty: u8) -> Vec<u8> {
    [&len.to_be_bytes()[..], &[ty]].concat()
}

fn garbage_bytes(mode: IoMode) {
    let f = Fixture::new(mode);
    f.refused(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "exceeds the maximum frame size",
    );
    f.refused(&[0xAB; 4096], "is negative");
    assert!(messages(&f.calls).is_empty());
}

fn bad_lengths(mode: IoMode) {
    let f = Fixture::new(mode);
    f.refused(&header(-5, 3), "frame length -5 is negative");
    f.refused(
        &[&4i64.to_be_bytes()[..], &[0; 8]].concat(),
        "below the 9-byte header size",
    );
    f.refused(
        &[&header(13, 3)[..], &[0; 4]].concat(),
        "below the 21-byte header size",
    );
    // Over the maximum: refused from the header alone, before any body byte is sent.
    f.refused(&header(MAX_FRAME as i64 + 1, 3), "exceeds the maximum frame size");
    f.refused(&header(i64::MAX, 9), "exceeds the maximum frame size");
    // A body length field disagreeing with the frame length.
    let mut bad = EncodedFrame::one_way(Bytes::from_static(b"abcd"))
        .unwrap()
        .header()
        .to_vec();
    bad[9..13].copy_from_slice(&9i32.to_be_bytes());
    f.refused(&[&bad[..], b"abcd"].concat(), "body length field says 9");
    assert!(messages(&f.calls).is_empty());
}

fn unknown_message_types(mode: IoMode) {
    let f = Fixture::new(mode);
    f.refused(
        &[&header(13, 42)[..], &[0; 4]].concat(),
        "unknown message type id 42",
    );
    f.refused(&[&header(30, 0)[..], &[0; 21]].concat(), "ChunkFetchRequest");
    assert!(messages(&f.calls).is_empty());
}

fn frames_cut_off_then_closed(mode: IoMode) {
    let f = Fixture::new(mode);
    let frame = support::raw::wire(&EncodedFrame::one_way(u64_envelope("w", 3)).unwrap());
    for cut in [5, 11, frame.len() - 1] {
        let mut raw = Raw::connect(&f.addr);
        let me = raw.stream.local_addr().unwrap().to_string();
        raw.send_bytes(&frame[..cut]).unwrap();
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(raw.closed_by_peer());
        assert!(logged(&[&me, "mid-frame"]), "cut at {cut}");
        f.still_serving();
    }
    assert!(messages(&f.calls).is_empty(), "{:?}", messages(&f.calls));
}

fn failure(frame: Option<Frame>) -> String {
    match frame {
        Some(Frame::RpcFailure { error, .. }) => error,
        other => panic!("expected an RpcFailure, got {other:?}"),
    }
}

fn invalid_message_for_the_endpoint(mode: IoMode) {
    let f = Fixture::new(mode);
    let mut raw = Raw::connect(&f.addr);
    // The right type fingerprint, a body that is no archive of it.
    raw.rpc(1, envelope(fingerprint::<Req>(), "rec", &[0xFF; 24]))
        .unwrap();
    let text = failure(raw.next_frame());
    assert!(
        text.contains("invalid message for") && text.contains("Req"),
        "{text}"
    );
    // A truncated envelope.
    raw.rpc(2, Bytes::from_static(b"\x01\x00\x00")).unwrap();
    assert!(failure(raw.next_frame()).contains("truncated envelope header"));
    // Another type than the endpoint's.
    raw.rpc(3, envelope(fingerprint::<String>(), "w", &[0; 8]))
        .unwrap();
    assert!(failure(raw.next_frame()).contains("another type"));
    // An unknown endpoint, named.
    raw.rpc(4, u64_envelope("nobody-here", 1)).unwrap();
    let text = failure(raw.next_frame());
    assert!(text.contains("nobody-here") && text.contains(&f.addr), "{text}");
    // The connection is still good: a valid ask on it is answered.
    raw.rpc(5, u64_envelope("w", 9)).unwrap();
    match raw.next_frame() {
        Some(Frame::RpcResponse { request_id: 5, body }) => assert_eq!(&body[..], &10u64.to_le_bytes()),
        other => panic!("{other:?}"),
    }
    f.still_serving();
    assert_eq!(messages(&f.calls), ["ask 9"]);
}

fn response_nobody_asked_for(mode: IoMode) {
    let f = Fixture::new(mode);
    let mut raw = Raw::connect(&f.addr);
    let me = raw.stream.local_addr().unwrap().to_string();
    raw.send(&EncodedFrame::rpc_response(999, Bytes::from_static(b"surprise")).unwrap())
        .unwrap();
    raw.send(&EncodedFrame::rpc_failure(998, "unasked failure").unwrap())
        .unwrap();
    raw.rpc(1, u64_envelope("w", 4)).unwrap();
    match raw.next_frame() {
        Some(Frame::RpcResponse { request_id: 1, body }) => assert_eq!(&body[..], &5u64.to_le_bytes()),
        other => panic!("the connection stays usable: {other:?}"),
    }
    assert!(logged(&[&me, "not outstanding", "request_id=999"]));
    f.still_serving();
}

both_io_modes!(
    garbage_bytes,
    bad_lengths,
    unknown_message_types,
    frames_cut_off_then_closed,
    invalid_message_for_the_endpoint,
    response_nobody_asked_for,
);

#[test]
fn peer_process_main() {
    suite::peer::peer_main();
}

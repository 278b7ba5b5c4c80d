//! Raw peers that speak the handover's protocol (`ConnectionEpoch`,
//! `ConnectionAck`), and a server with a watcher endpoint `w`, for the tests
//! of per-sender order and one-way delivery across reconnects.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc::{CONNECTION_ACK_NAME, CONNECTION_EPOCH_NAME, ConnectionEpoch, RpcEnv};
use transport::{EncodedFrame, Frame, IoMode};

use super::raw::{Raw, envelope, fingerprint, u64_envelope};
use super::watch::{Calls, Watcher, messages};
use super::{capture_logs, server_with};

/// The body of a [`ConnectionEpoch`] message, as the wire format says: the
/// envelope, then the rkyv archive of four `u64`s (little-endian, unaligned):
/// instance, epoch, the number of the connection's first one-way, and how
/// many of its first one-ways are resent.
pub fn resend_epoch_body(instance: u64, epoch: u64, resend: [u64; 2]) -> Bytes {
    let payload: Vec<u8> = [instance, epoch, resend[0], resend[1]]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    envelope(fingerprint::<ConnectionEpoch>(), CONNECTION_EPOCH_NAME, &payload)
}

pub fn epoch_body(instance: u64, epoch: u64) -> Bytes {
    resend_epoch_body(instance, epoch, [0; 2])
}

pub fn one_way(raw: &mut Raw, body: Bytes) {
    raw.send(&EncodedFrame::one_way(body).unwrap()).unwrap();
}

/// The request id the raw peers give their ConnectionEpoch.
pub const EPOCH_ID: i64 = 1 << 40;

/// Sends a ConnectionEpoch request (answered once the connection is live;
/// these raw peers do not wait for it, as an Outbox does).
pub fn say_epoch(raw: &mut Raw, instance: u64, epoch: u64) {
    raw.rpc(EPOCH_ID, epoch_body(instance, epoch)).unwrap();
}

pub fn send_n(raw: &mut Raw, n: u64) {
    one_way(raw, u64_envelope("w", n));
}

/// The next frame other than a ConnectionAck (one-way).
pub fn next_answer(raw: &mut Raw) -> Option<Frame> {
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
pub fn wait_for(calls: &Calls, want: &[&str]) {
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
pub fn stays(calls: &Calls, want: &[&str]) {
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(messages(calls), want, "nothing else was dispatched");
}

pub fn server(mode: IoMode, handover_timeout_ms: u64) -> (RpcEnv, Calls, String) {
    capture_logs();
    let server = server_with(mode, "server", |c| c.handover_timeout_ms = handover_timeout_ms);
    let (w, calls) = Watcher::new();
    server.setup_endpoint("w", w).unwrap();
    let addr = server.address().unwrap().to_string();
    (server, calls, addr)
}

//! Cases about frames of very different sizes from one peer, written in
//! pieces that end anywhere: none may be lost, repeated, reordered or stall
//! the connection, whatever way the backend reads them (io_uring switches
//! between multishot recvs into provided buffers, single-shot ones, and
//! reads straight into a large frame's own buffer).

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use bytes::Bytes;

use super::TransportFactory;
use super::support::{
    Event, Probe, TIMEOUT, accepted, first_difference, pattern, raw_connect, recv_within, serve, shutdown,
    test_conf, wire,
};
use crate::{EncodedFrame, TransportConf};

/// Body sizes (bytes) of the frames the peer sends, in order: 1 MiB frames
/// and tiny ones in turn, empty ones, sizes around 64 KiB (the io_uring
/// backend's default `direct_read_min`) and around 64 KiB plus one 16 KiB
/// provided buffer, and odd ones.
const SIZES: &[usize] = &[
    1 << 20,
    5,
    1 << 20,
    0,
    1 << 20,
    1 << 20,
    1,
    (64 << 10) - 1,
    64 << 10,
    (64 << 10) + 1,
    (80 << 10) - 14,
    (80 << 10) - 13,
    (80 << 10) - 12,
    (80 << 10) + 1,
    300_001,
    7,
    (16 << 10) - 13,
    16 << 10,
    1 << 20,
    3,
];

/// The body of frame `i`: pattern `i`, so a byte from another frame shows.
fn body(i: usize, len: usize) -> Vec<u8> {
    pattern(i as u64 + 1, len)
}

/// The wire bytes of every frame of [`SIZES`], one after another: one-way
/// frames, or requests (id `i`) when `requests`.
fn stream(requests: bool) -> Vec<u8> {
    SIZES
        .iter()
        .enumerate()
        .flat_map(|(i, &len)| {
            let b = Bytes::from(body(i, len));
            let f = if requests {
                EncodedFrame::rpc_request(i as i64, b)
            } else {
                EncodedFrame::one_way(b)
            };
            wire(&f.expect("frames fit the default limit"))
        })
        .collect()
}

/// Writes `bytes` in pieces of the sizes in `steps` (cycled), sleeping
/// `pause` after every piece when given.
fn write_in_pieces(raw: &mut TcpStream, bytes: &[u8], steps: &[usize], pause: Option<Duration>) {
    let mut at = 0;
    for &step in steps.iter().cycle() {
        if at == bytes.len() {
            break;
        }
        let end = at.saturating_add(step).min(bytes.len());
        raw.write_all(&bytes[at..end])
            .unwrap_or_else(|e| panic!("raw peer: write of bytes {at}..{end}: {e}"));
        at = end;
        if let Some(p) = pause {
            thread::sleep(p);
        }
    }
}

/// Checks that the server delivers every frame of [`SIZES`] in order and
/// whole, with no exception and without closing the connection.
fn expect_all_frames(events: &std::sync::mpsc::Receiver<Event>, how: &str) {
    for (i, &len) in SIZES.iter().enumerate() {
        let what = format!("one-way frame {i} ({len} bytes) written {how}");
        loop {
            match recv_within(events, TIMEOUT * 2, &what) {
                Event::Active(_) => {}
                Event::OneWay(_, got) => {
                    if let Some(d) = first_difference(&got, &body(i, len)) {
                        panic!("{what}: wrong body ({d}): a byte was lost, repeated or reordered");
                    }
                    break;
                }
                other => panic!("{what}: got {} instead", other.describe()),
            }
        }
    }
}

/// A raw peer sends 1 MiB frames and tiny ones in turn, empty frames, and
/// frames around 64 KiB and 80 KiB, three times: all at once, in pieces of
/// odd sizes (1, 3, 4,093, 65,537, ... bytes), and slowly (a few bytes at a
/// time at first, then 32 KiB pieces 1 ms apart). The server delivers every
/// frame whole and in order each time.
pub fn mixed_frame_sizes_arrive_whole_and_in_order(factory: &TransportFactory) {
    let t = factory(test_conf());
    let (probe, events) = Probe::silent();
    let server = serve(&t, probe);
    let bytes = stream(false);

    let mut raw = raw_connect(server.local_addr());
    raw.write_all(&bytes).expect("raw peer: write all frames at once");
    expect_all_frames(&events, "all at once");

    write_in_pieces(
        &mut raw,
        &bytes,
        &[1, 3, 4093, 65_537, 13, 1_048_583, 2, 16_381],
        None,
    );
    expect_all_frames(&events, "in pieces of odd sizes");

    // Slowly: the first 600 bytes (the 1 MiB frame's header and the start
    // of its body) 3 bytes at a time, then 32 KiB pieces 1 ms apart.
    let (head, rest) = bytes.split_at(600);
    write_in_pieces(&mut raw, head, &[3], Some(Duration::from_micros(200)));
    write_in_pieces(&mut raw, rest, &[32 << 10], Some(Duration::from_millis(1)));
    expect_all_frames(&events, "slowly");

    drop(raw);
    drop(server);
    shutdown(&t);
}

/// The same frames as requests, with `max_in_flight_requests_per_connection`
/// at 1 and answers sent from the case's thread as each request arrives:
/// reading pauses after nearly every request (often with a read in flight,
/// whose bytes the backend must hold) and resumes with each answer. Every
/// request arrives whole and in order, written at once and in odd pieces,
/// and the peer gets every answer.
pub fn mixed_frame_sizes_arrive_in_order_with_reading_paused(factory: &TransportFactory) {
    let t = factory(TransportConf {
        max_in_flight_requests_per_connection: 1,
        ..test_conf()
    });
    let (probe, events) = Probe::silent();
    let server = serve(&t, probe);
    let bytes = stream(true);
    let raw = raw_connect(server.local_addr());
    let mut reader = raw.try_clone().expect("clone the raw socket");
    for (round, steps) in [&[usize::MAX][..], &[1, 3, 4093, 65_537, 13, 1_048_583, 2, 16_381]]
        .into_iter()
        .enumerate()
    {
        let writer = {
            let (mut raw, bytes) = (raw.try_clone().expect("clone the raw socket"), bytes.clone());
            thread::spawn(move || write_in_pieces(&mut raw, &bytes, steps, None))
        };
        for (i, &len) in SIZES.iter().enumerate() {
            let what = format!("request {i} ({len} bytes), round {round}");
            let (client, id, got) = loop {
                match recv_within(&events, TIMEOUT * 2, &what) {
                    Event::Active(_) => {}
                    Event::Rpc(client, id, got) => break (client, id, got),
                    other => panic!("{what}: got {} instead", other.describe()),
                }
            };
            assert_eq!(id, i as i64, "{what}: requests delivered out of order");
            if let Some(d) = first_difference(&got, &body(i, len)) {
                panic!("{what}: wrong body ({d}): a byte was lost, repeated or reordered");
            }
            client
                .send_response(id, Bytes::from(format!("ok {i}")))
                .unwrap_or_else(|e| panic!("{what}: answer: {e}"));
        }
        writer.join().expect("the raw peer's writer");
        for i in 0..SIZES.len() {
            let want =
                wire(&EncodedFrame::rpc_response(i as i64, Bytes::from(format!("ok {i}"))).expect("encode"));
            let mut got = vec![0u8; want.len()];
            std::io::Read::read_exact(&mut reader, &mut got)
                .unwrap_or_else(|e| panic!("round {round}: reading answer {i}: {e}"));
            assert_eq!(got, want, "round {round}: answer {i}");
        }
    }
    drop(raw);
    drop(server);
    shutdown(&t);
}

/// The server sends 1,200 frames of 0 to 20,000 bytes (empty bodies among
/// them) through 4 KiB socket buffers to a raw peer that reads nothing until
/// all are queued, then reads in 1,000-byte pieces: the writer sees more
/// frames than one vectored write takes (512 or 1,024 slices), and short
/// writes ending in headers and bodies alike. The peer gets every byte, in
/// order.
pub fn many_mixed_frames_go_out_whole_through_small_socket_buffers(factory: &TransportFactory) {
    const FRAMES: usize = 1200;
    const SIZES: &[usize] = &[0, 1, 13, 100, 4096, 20_000, 3];
    let t = factory(TransportConf {
        send_buffer_bytes: 4 << 10,
        receive_buffer_bytes: 4 << 10,
        ..test_conf()
    });
    let (probe, events) = Probe::silent();
    let server = serve(&t, probe);
    let mut raw = raw_connect(server.local_addr());
    let server_side = accepted(&events, raw.local_addr().expect("raw local address"));
    let mut want = Vec::new();
    for i in 0..FRAMES {
        let body = Bytes::from(body(i, SIZES[i % SIZES.len()]));
        want.extend_from_slice(&wire(&EncodedFrame::one_way(body.clone()).expect("encode")));
        server_side
            .send_one_way(body)
            .unwrap_or_else(|e| panic!("queue frame {i}: {e}"));
    }
    let mut got = vec![0u8; want.len()];
    for piece in got.chunks_mut(1000) {
        std::io::Read::read_exact(&mut raw, piece)
            .unwrap_or_else(|e| panic!("raw peer: reading {} bytes: {e}", want.len()));
    }
    if let Some(d) = first_difference(&got, &want) {
        panic!("the {FRAMES} frames arrived damaged: {d}");
    }
    drop(raw);
    drop(server);
    shutdown(&t);
}

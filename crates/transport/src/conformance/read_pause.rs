//! The external read pause: [`TransportClient::pause_reading`](crate::TransportClient::pause_reading),
//! which the layer above takes when it cannot hold more (the RPC layer, for an
//! endpoint whose full inbox waits).

use std::io::Write;

use bytes::Bytes;

use super::TransportFactory;
use super::support::{
    Event, Probe, accepted, assert_echo_works, connect, expect_no_event, pattern, raw_connect, serve,
    shutdown, test_conf, wait_event, wire,
};
use crate::EncodedFrame;

/// While a `ReadPause` is held on a connection (taken here from another
/// thread, as an RPC inbox does), the frames its peer sends are not delivered;
/// other connections are served meanwhile. Dropping one of two pauses is not
/// enough; dropping the last wakes the backend, and every frame then arrives,
/// in order.
pub fn read_pause_holds_frames_until_the_last_is_dropped(factory: &TransportFactory) {
    const FRAMES: u64 = 5;
    let t = factory(test_conf());
    let (probe, events) = Probe::echo();
    let server = serve(&t, probe);
    let addr = server.local_addr();
    let mut raw = raw_connect(addr);
    let peer = raw.local_addr().expect("raw local address");
    let server_side = accepted(&events, peer);
    let from_peer = move |e: &Event| matches!(e, Event::OneWay(..)) && e.peer() == peer;

    let first = server_side.pause_reading();
    let second = server_side.pause_reading();
    assert!(server_side.should_pause_reading());
    let frames: Vec<u8> = (0..FRAMES)
        .flat_map(|i| wire(&EncodedFrame::one_way(Bytes::from(pattern(i, 100))).expect("encode")))
        .collect();
    raw.write_all(&frames).expect("write one-way frames");
    expect_no_event(&events, "a frame delivered while reading is paused", from_peer);

    let (client_probe, _client_events) = Probe::echo();
    let other = connect(&t, addr, client_probe);
    assert_echo_works(&other, "another connection while one is paused");

    drop(first);
    expect_no_event(
        &events,
        "a frame delivered while one pause is still held",
        from_peer,
    );
    drop(second);
    for i in 0..FRAMES {
        match wait_event(&events, &format!("one-way frame {i} after the pause"), from_peer) {
            Event::OneWay(_, body) => assert_eq!(body, pattern(i, 100), "frame {i} (out of order?)"),
            _ => unreachable!("matched OneWay"),
        }
    }
    assert_eq!(server_side.read_pauses(), 0);
    shutdown(&t);
}

/// A pause taken while the backend reads a large frame straight into its own
/// buffer (the frame's header and first 4 KiB arrived, the rest is on its
/// way) holds that frame too: it is delivered when the pause is dropped, not
/// when its last byte arrives. (The io_uring backend delivered it while
/// paused: a direct read that completed during a pause fed the decoder at
/// once; the epoll backend checks the limits between a read and decoding.)
pub fn read_pause_taken_during_a_large_frame_holds_it(factory: &TransportFactory) {
    let t = factory(test_conf());
    let (probe, events) = Probe::echo();
    let server = serve(&t, probe);
    let mut raw = raw_connect(server.local_addr());
    let peer = raw.local_addr().expect("raw local address");
    let server_side = accepted(&events, peer);
    let from_peer = move |e: &Event| matches!(e, Event::OneWay(..)) && e.peer() == peer;

    let body = pattern(7, 1 << 20);
    let frame = wire(&EncodedFrame::one_way(Bytes::from(body.clone())).expect("encode"));
    raw.write_all(&frame[..4096]).expect("write the frame's start");
    // Let the backend get to reading the rest directly. (If it has not by
    // then, the case still holds; it only checks less.)
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pause = server_side.pause_reading();
    raw.write_all(&frame[4096..]).expect("write the frame's rest");
    expect_no_event(
        &events,
        "a large frame delivered while reading is paused",
        from_peer,
    );
    drop(pause);
    match wait_event(&events, "the large frame after the pause", from_peer) {
        Event::OneWay(_, got) => assert!(got == body, "the large frame arrived changed"),
        _ => unreachable!("matched OneWay"),
    }
    shutdown(&t);
}

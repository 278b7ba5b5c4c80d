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

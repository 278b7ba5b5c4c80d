//! Cases about the per-connection limits: `max_connections`,
//! `max_queued_bytes_per_connection` (a peer that never reads its answers)
//! `max_in_flight_requests_per_connection` (requests received) and
//! `max_outstanding_rpcs_per_connection` (RPCs sent).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::TransportFactory;
use super::support::{
    Event, Probe, QUIET, TIMEOUT, accepted, assert_echo_works, connect, echo_reply, echoed,
    expect_closed_by_peer, expect_no_event, first_difference, pattern, raw_connect, recv_within, rpc, serve,
    shutdown, test_conf, wait_event, wait_until, wire,
};
use crate::{BufferPool, EncodedFrame, Frame, FrameDecoder, TransportClient, TransportConf, TransportError};

/// The first `limit` connections to a server with `max_connections = limit`
/// are served; the next ones are closed at once by the server without a
/// `channel_active`, and the first ones keep working. Once one of them
/// closes, a new connection is served again.
pub fn max_connections_closes_the_extra_ones(factory: &TransportFactory) {
    const LIMIT: usize = 3;
    let t = factory(TransportConf {
        max_connections: LIMIT,
        ..test_conf()
    });
    let (probe, events) = Probe::echo();
    let server = serve(&t, probe);
    let addr = server.local_addr();
    let clients: Vec<TransportClient> = (0..LIMIT).map(|_| connect(&t, addr, Probe::echo().0)).collect();
    // Accepted on several loops at once: their `channel_active`s come in any order.
    let mut waiting: Vec<SocketAddr> = clients.iter().map(TransportClient::local_addr).collect();
    while !waiting.is_empty() {
        let e = wait_event(
            &events,
            "channel_active for each connection within max_connections",
            |e| matches!(e, Event::Active(_)) && waiting.contains(&e.peer()),
        );
        waiting.retain(|p| *p != e.peer());
    }
    for c in &clients {
        assert_echo_works(c, "a connection within max_connections");
    }

    let mut extras: Vec<TcpStream> = (0..2).map(|_| raw_connect(addr)).collect();
    let extra_peers: Vec<SocketAddr> = extras
        .iter()
        .map(|s| s.local_addr().expect("local address"))
        .collect();
    for (i, extra) in extras.iter_mut().enumerate() {
        expect_closed_by_peer(
            extra,
            &format!("connection {} past max_connections = {LIMIT}", LIMIT + i + 1),
        );
    }
    expect_no_event(
        &events,
        "channel_active for a connection past max_connections",
        |e| matches!(e, Event::Active(_)) && extra_peers.contains(&e.peer()),
    );
    for c in &clients {
        assert_echo_works(
            c,
            "a connection within max_connections, after extra ones were closed",
        );
    }

    // One place frees up: a new connection is served (once the server has
    // seen the old one end; the retries cover the moments before that).
    let closed_peer = clients[0].local_addr();
    clients[0].close();
    wait_event(
        &events,
        "channel_inactive of the connection closed by its client",
        |e| matches!(e, Event::Inactive { .. }) && e.peer() == closed_peer,
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let fresh = connect(&t, addr, Probe::echo().0);
        match try_echo(&fresh) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "a new connection was still refused {TIMEOUT:?} after one of the {LIMIT} closed: {e}"
            ),
        }
        thread::sleep(Duration::from_millis(20));
    }
    for c in &clients[1..] {
        assert_echo_works(c, "a connection within max_connections, at the end");
    }
    shutdown(&t);
}

/// One echo RPC, with the error instead of a panic.
fn try_echo(client: &TransportClient) -> Result<(), TransportError> {
    let (tx, rx) = mpsc::channel();
    client.send_rpc(Bytes::from_static(b"anyone?"), move |r| {
        let _ = tx.send(r);
    })?;
    let answer = recv_within(&rx, TIMEOUT, "an answer on a fresh connection")?;
    assert_eq!(answer, echoed(b"anyone?"), "wrong echo on a fresh connection");
    Ok(())
}

/// Bytes of each request body the flooding peer sends.
const FLOOD_BODY: usize = 64 << 10;

/// A raw peer that writes 64 KiB RpcRequests (ids 0, 1, ...) to an echo
/// server until told to stop and never reads: the server stops reading from
/// it once its answers queue past `max_queued_bytes_per_connection`, so the
/// peer's writes stall, the queue stays within the bound plus what one batch
/// of reads delivered, the pool holds no more idle bytes than its bound, and
/// another client gets correct answers meanwhile. Then the peer reads: every
/// answer arrives, in order, and the queue empties.
pub fn peer_that_never_reads_is_paused_not_buffered(factory: &TransportFactory) {
    const BOUND: usize = 1 << 20;
    // What can be answered past the bound, with room to spare: the frames of
    // the read that passed it (one epoll read, at most 64 KiB, or a 64 KiB
    // frame read into its own buffer; one io_uring provided buffer, 16 KiB
    // by default), each answered with as many bytes plus 24.
    const SLACK: usize = 1 << 20;
    const POOL_MAX: usize = 8 << 20;
    let t = factory(TransportConf {
        max_queued_bytes_per_connection: BOUND,
        pool_max_bytes: POOL_MAX,
        // Small socket buffers on the server's side, so that little hides in the kernel.
        send_buffer_bytes: 64 << 10,
        receive_buffer_bytes: 64 << 10,
        ..test_conf()
    });
    let (probe, events) = Probe::echo();
    let server = serve(&t, probe);
    let addr = server.local_addr();
    let raw = raw_connect(addr);
    let peer = raw.local_addr().expect("raw local address");
    let server_side = accepted(&events, peer);

    let flood = Arc::new(Flood::default());
    let writer = {
        let (flood, raw) = (flood.clone(), raw.try_clone().expect("clone the raw socket"));
        thread::Builder::new()
            .name("conformance: flooding peer".into())
            .spawn(move || flood.run(raw))
            .expect("spawn the flooding peer")
    };
    wait_until(
        &format!("the server queued more than {BOUND} bytes of answers to the peer"),
        || server_side.queued_bytes() > BOUND || writer.is_finished(),
    );
    // The server has stopped reading: the peer's writes stall once the socket
    // buffers are full, instead of going on for ever.
    let stalled_at = wait_until_stable("the flooding peer's writes stall", || {
        flood.sent.load(Ordering::SeqCst)
    });
    let mut most_queued = 0;
    let mut check = |when: &str| {
        let queued = server_side.queued_bytes();
        most_queued = most_queued.max(queued);
        assert!(
            queued <= BOUND + SLACK,
            "{when}: {queued} bytes queued for a peer that does not read, over \
             max_queued_bytes_per_connection = {BOUND} plus {SLACK} bytes of reads already made"
        );
        let pool = t.pool().stats();
        assert!(
            pool.bytes_held <= POOL_MAX as u64,
            "{when}: the pool holds {} idle bytes, over its bound of {POOL_MAX}",
            pool.bytes_held
        );
    };
    check("once the peer's writes stalled");

    let (client_probe, _client_events) = Probe::echo();
    let other = connect(&t, addr, client_probe);
    for i in 0..4u64 {
        let body = pattern(1000 + i, FLOOD_BODY);
        let answer = rpc(&other, body.clone())
            .unwrap_or_else(|e| panic!("another client's RPC failed while a peer was paused: {e}"));
        if let Some(diff) = first_difference(&answer, &echoed(&body)) {
            panic!("another client's answer {i} while a peer was paused is wrong: {diff}");
        }
        check("while another client was served");
    }
    thread::sleep(QUIET);
    check("a while later");
    let sent = flood.sent.load(Ordering::SeqCst);
    assert!(
        sent <= stalled_at + 1,
        "the paused peer got {} more requests through (from {stalled_at}): the server read on",
        sent - stalled_at
    );
    // Shown with `--nocapture`: how far past the bound the queue went.
    eprintln!(
        "a peer that never reads: at most {most_queued} bytes queued (bound {BOUND}); \
         it wrote {stalled_at} requests of {FLOOD_BODY} bytes before stalling"
    );

    // The peer reads at last: every answer, in order; its writer finishes the
    // request it was in the middle of and stops.
    flood.stop.store(true, Ordering::SeqCst);
    let mut reader = raw;
    let mut decoder = FrameDecoder::new(TransportConf::default().max_frame_size, BufferPool::new(0));
    let mut next_id: usize = 0;
    let mut buf = vec![0u8; 256 << 10];
    let deadline = Instant::now() + 6 * TIMEOUT;
    while !(writer.is_finished() && next_id == flood.sent.load(Ordering::SeqCst)) {
        assert!(
            Instant::now() < deadline,
            "only {next_id} of {} answers arrived once the peer read",
            flood.sent.load(Ordering::SeqCst)
        );
        let n = match reader.read(&mut buf) {
            Ok(0) => panic!("the server closed the connection after {next_id} answers"),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => panic!("reading answer {next_id}: {e}"),
        };
        decoder
            .decode(Bytes::copy_from_slice(&buf[..n]), &mut |f| {
                check_answer(f, next_id);
                next_id += 1;
            })
            .unwrap_or_else(|e| panic!("the answers do not decode after {next_id}: {e}"));
    }
    let total = writer
        .join()
        .expect("the flooding peer panicked")
        .unwrap_or_else(|e| panic!("the flooding peer: {e}"));
    assert_eq!(next_id, total, "answers received vs requests sent");
    wait_until("the server's queue for the peer is empty", || {
        server_side.queued_bytes() == 0
    });
    assert_eq!(
        server_side.in_flight_requests(),
        0,
        "echo answers every request at once"
    );
    assert_echo_works(&other, "after the paused peer read everything");
    shutdown(&t);
}

/// Checks that `frame` is the echo answer to flood request `id`.
fn check_answer(frame: Frame, id: usize) {
    match frame {
        Frame::RpcResponse { request_id, body } => {
            assert_eq!(request_id, id as i64, "answers out of order");
            if let Some(diff) = first_difference(&body, &echoed(&pattern(id as u64, FLOOD_BODY))) {
                panic!("answer {id} is wrong: {diff}");
            }
        }
        other => panic!("expected the answer to request {id}, got {other:?}"),
    }
}

/// A peer writing requests until stopped.
#[derive(Default)]
struct Flood {
    /// Requests written whole.
    sent: AtomicUsize,
    stop: AtomicBool,
}

impl Flood {
    /// Writes requests 0, 1, ... until `stop` (finishing the one under way);
    /// returns how many were written.
    fn run(&self, mut raw: TcpStream) -> Result<usize, String> {
        raw.set_write_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + 10 * TIMEOUT;
        let mut id = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let frame = EncodedFrame::rpc_request(id as i64, Bytes::from(pattern(id as u64, FLOOD_BODY)))
                .map_err(|e| e.to_string())?;
            let bytes = wire(&frame);
            let mut off = 0;
            while off < bytes.len() {
                if Instant::now() > deadline {
                    return Err(format!("request {id} could not be written in {:?}", 10 * TIMEOUT));
                }
                match raw.write(&bytes[off..]) {
                    Ok(0) => return Err(format!("the server stopped taking bytes in request {id}")),
                    Ok(n) => off += n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(format!("writing request {id}: {e}")),
                }
            }
            id += 1;
            self.sent.store(id, Ordering::SeqCst);
        }
        Ok(id)
    }
}

/// Polls `value` until it has not changed for [`QUIET`]; returns it. Panics if
/// it still changes after [`TIMEOUT`].
fn wait_until_stable(what: &str, mut value: impl FnMut() -> usize) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = value();
    let mut since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(10));
        let now = value();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= QUIET {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting until {what} (still moving, at {now})"
        );
    }
}

/// The server sends a peer that is not reading yet a frame far larger than
/// `max_queued_bytes_per_connection`: a request the peer sends meanwhile is
/// not delivered (whether or not a read was already waiting when the bound
/// was passed), until the peer has read enough for the queue to drain; then
/// it is delivered and answered, after the large frame, intact.
pub fn queued_sends_pause_reading_until_written(factory: &TransportFactory) {
    const BOUND: usize = 64 << 10;
    const LARGE: usize = 4 << 20;
    let t = factory(TransportConf {
        max_queued_bytes_per_connection: BOUND,
        send_buffer_bytes: 64 << 10,
        receive_buffer_bytes: 64 << 10,
        ..test_conf()
    });
    let (probe, events) = Probe::new(true, echo_reply);
    let server = serve(&t, probe);
    let mut raw = raw_connect(server.local_addr());
    let peer = raw.local_addr().expect("raw local address");
    let server_side = accepted(&events, peer);
    let large = Bytes::from(pattern(7, LARGE));
    server_side
        .send_one_way(large.clone())
        .unwrap_or_else(|e| panic!("send {LARGE} bytes to the peer: {e}"));
    wait_until(&format!("more than {BOUND} bytes are queued to the peer"), || {
        server_side.queued_bytes() > BOUND
    });

    let body = Bytes::from(pattern(8, 100));
    let request = EncodedFrame::rpc_request(0, body.clone()).expect("encode");
    raw.write_all(&wire(&request)).expect("write a request");
    expect_no_event(
        &events,
        "a request delivered while the queue is past its bound",
        |e| matches!(e, Event::Rpc(..)) && e.peer() == peer,
    );

    let want = wire(&EncodedFrame::one_way(large).expect("encode"));
    let mut got = vec![0u8; want.len()];
    raw.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("reading the {LARGE}-byte frame: {e}"));
    if let Some(diff) = first_difference(&got, &want) {
        panic!("the {LARGE}-byte frame arrived damaged: {diff}");
    }
    wait_event(&events, "the request, once the queue drained", |e| {
        matches!(e, Event::Rpc(..)) && e.peer() == peer
    });
    let want = wire(&EncodedFrame::rpc_response(0, Bytes::from(echoed(&body))).expect("encode"));
    let mut got = vec![0u8; want.len()];
    raw.read_exact(&mut got).expect("reading the answer");
    assert_eq!(got, want, "the answer to the held-back request");
    shutdown(&t);
}

/// A request body the in-flight case's handler answers at once (others it holds).
const ANSWER_NOW: &[u8] = b"now:";

/// A raw peer sends `max_in_flight_requests_per_connection` requests that the
/// handler holds unanswered: the server stops reading from it, so further
/// requests are not delivered, while another client is still served. Each
/// answer lets reading go on: every request is delivered, in order, and
/// every answer reaches the peer.
pub fn in_flight_limit_pauses_reading_until_answers(factory: &TransportFactory) {
    const LIMIT: usize = 4;
    const EXTRA: usize = 3;
    let t = factory(TransportConf {
        max_in_flight_requests_per_connection: LIMIT,
        ..test_conf()
    });
    let (probe, events) = Probe::new(true, |client, id, body| {
        if body.starts_with(ANSWER_NOW) {
            echo_reply(client, id, body);
        }
    });
    let server = serve(&t, probe);
    let addr = server.local_addr();
    let mut raw = raw_connect(addr);
    let peer = raw.local_addr().expect("raw local address");
    let server_side = accepted(&events, peer);
    let request = |id: usize| {
        wire(&EncodedFrame::rpc_request(id as i64, Bytes::from(pattern(id as u64, 100))).expect("encode"))
    };
    let next_request = |events: &mpsc::Receiver<Event>, want: usize| match wait_event(
        events,
        &format!("request {want} from the peer"),
        |e| matches!(e, Event::Rpc(..)) && e.peer() == peer,
    ) {
        Event::Rpc(_, id, body) => {
            assert_eq!(id, want as i64, "requests delivered out of order");
            assert_eq!(body, pattern(want as u64, 100), "request {want}'s body");
        }
        _ => unreachable!("matched Rpc"),
    };

    let first: Vec<u8> = (0..LIMIT).flat_map(request).collect();
    raw.write_all(&first).expect("write the first requests");
    for id in 0..LIMIT {
        next_request(&events, id);
    }
    assert_eq!(server_side.in_flight_requests(), LIMIT);
    let more: Vec<u8> = (LIMIT..LIMIT + EXTRA).flat_map(request).collect();
    raw.write_all(&more).expect("write requests past the limit");
    expect_no_event(&events, "a request delivered past the in-flight limit", |e| {
        matches!(e, Event::Rpc(..)) && e.peer() == peer
    });

    // Another connection is not held up by this one's limit.
    let (client_probe, _client_events) = Probe::echo();
    let other = connect(&t, addr, client_probe);
    let body = [ANSWER_NOW, b"other"].concat();
    let answer = rpc(&other, body.clone()).unwrap_or_else(|e| panic!("another client's RPC: {e}"));
    assert_eq!(answer, echoed(&body), "another client's answer");

    // Answers go out in request order; each lets a held-back request in.
    let answer = |id: usize| {
        server_side
            .send_response(id as i64, Bytes::from(echoed(&pattern(id as u64, 100))))
            .unwrap_or_else(|e| panic!("answer request {id}: {e}"));
    };
    for id in 0..LIMIT + EXTRA {
        answer(id);
        if id + LIMIT < LIMIT + EXTRA {
            next_request(&events, id + LIMIT);
        }
    }
    for id in 0..LIMIT + EXTRA {
        let want = EncodedFrame::rpc_response(id as i64, Bytes::from(echoed(&pattern(id as u64, 100))))
            .expect("encode");
        let mut got = vec![0u8; want.len()];
        raw.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("reading answer {id}: {e}"));
        assert_eq!(got, wire(&want), "answer {id}");
    }
    assert_eq!(server_side.in_flight_requests(), 0);
    shutdown(&t);
}

/// A client with `max_outstanding_rpcs_per_connection` RPCs awaiting answers
/// refuses the next with `TooManyOutstandingRpcs`, without sending it or
/// closing the connection; an answer makes room again.
pub fn client_refuses_rpcs_past_the_outstanding_limit(factory: &TransportFactory) {
    const LIMIT: usize = 2;
    let t = factory(TransportConf {
        max_outstanding_rpcs_per_connection: LIMIT,
        ..test_conf()
    });
    let (probe, events) = Probe::silent();
    let server = serve(&t, probe);
    let client = connect(&t, server.local_addr(), Probe::echo().0);
    let (tx, rx) = mpsc::channel();
    for i in 0..LIMIT {
        let tx = tx.clone();
        client
            .send_rpc(Bytes::from(vec![i as u8]), move |r| {
                let _ = tx.send(r);
            })
            .unwrap_or_else(|e| panic!("RPC {i} within the limit: {e}"));
    }
    match client.send_rpc(Bytes::from_static(b"one too many"), |_| {
        panic!("the callback of a refused RPC was called")
    }) {
        Err(TransportError::TooManyOutstandingRpcs { limit, .. }) => assert_eq!(limit, LIMIT),
        other => panic!("expected TooManyOutstandingRpcs past {LIMIT} outstanding RPCs, got {other:?}"),
    }
    let (held, first_id) = match wait_event(&events, "the first request", |e| matches!(e, Event::Rpc(..))) {
        Event::Rpc(c, id, _) => (c, id),
        _ => unreachable!("matched Rpc"),
    };
    wait_event(&events, "the second request", |e| matches!(e, Event::Rpc(..)));
    expect_no_event(&events, "the refused request reaching the server", |e| {
        matches!(e, Event::Rpc(..))
    });
    assert!(client.is_active(), "refusing an RPC closed the connection");
    held.send_response(first_id, Bytes::from_static(b"done"))
        .expect("answer the first request");
    let first = recv_within(&rx, TIMEOUT, "the first RPC's answer").expect("the first RPC's answer");
    assert_eq!(&first[..], b"done");
    client
        .send_rpc(Bytes::from_static(b"room again"), |_| {})
        .expect("an answer makes room for one more RPC");
    shutdown(&t);
}

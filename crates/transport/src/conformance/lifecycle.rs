//! Cases about a connection's and a transport's life: channel events, closing
//! from either side, shutdown, refused connections, the IO mode and pooled reads.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::TransportFactory;
use super::support::{
    Event, Probe, TIMEOUT, accepted, any_local_port, assert_echo_works, connect, echoed,
    expect_closed_by_peer, expect_no_event, raw_connect, recv_within, serve, shutdown, test_conf,
    try_connect, wait_event, wait_until, within,
};
use crate::{DecodeError, IoMode, TransportClient, TransportError};

type Outcomes = Receiver<(usize, Result<Bytes, TransportError>)>;

/// Sends `n` RPCs on `client`; their outcomes arrive on the returned channel.
fn send_rpcs(client: &TransportClient, n: usize) -> Outcomes {
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        client
            .send_rpc(Bytes::from(format!("pending {i}")), move |r| {
                let _ = tx.send((i, r));
            })
            .unwrap_or_else(|e| panic!("send_rpc {i}: {e}"));
    }
    rx
}

/// Waits until the server's probe has received `n` requests.
fn wait_requests(events: &Receiver<Event>, n: usize) {
    for i in 0..n {
        wait_event(events, &format!("request {} of {n} at the server", i + 1), |e| {
            matches!(e, Event::Rpc(..))
        });
    }
}

/// Checks that each of `n` outcomes is a failure accepted by `ok` (within
/// `timeout` for all of them), and that no callback runs twice.
fn expect_failures(rx: &Outcomes, n: usize, timeout: Duration, why: &str, ok: fn(&TransportError) -> bool) {
    let deadline = Instant::now() + timeout;
    let mut seen = vec![false; n];
    for _ in 0..n {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let (i, r) = recv_within(rx, left, &format!("outstanding RPCs to fail after {why}"));
        assert!(
            !std::mem::replace(&mut seen[i], true),
            "RPC {i}'s callback was called twice"
        );
        match r {
            Err(e) if ok(&e) => {}
            other => panic!("after {why}, outstanding RPC {i} completed with {other:?}"),
        }
    }
}

fn is_connection_closed(e: &TransportError) -> bool {
    matches!(e, TransportError::ConnectionClosed { .. })
}

fn is_closed_or_shutdown(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::ConnectionClosed { .. } | TransportError::Shutdown
    )
}

/// Waits for `channel_inactive` of the connection to `peer` and checks the
/// contract's order: the sink refuses sends and no RPC is outstanding by then.
fn expect_inactive(events: &Receiver<Event>, peer: SocketAddr, side: &str) {
    let what = format!("{side}: channel_inactive for the connection with {peer}");
    let e = wait_event(events, &what, |e| {
        matches!(e, Event::Inactive { .. }) && e.peer() == peer
    });
    if let Event::Inactive {
        still_active,
        outstanding,
        ..
    } = e
    {
        assert!(
            !still_active,
            "{side}: channel_inactive came while the connection still accepted frames"
        );
        assert_eq!(
            outstanding, 0,
            "{side}: channel_inactive came before the outstanding RPCs were failed"
        );
    }
}

/// `channel_active` fires once per connection on both sides, before any frame;
/// closing the client makes `is_active` false, refuses sends with
/// `ConnectionClosed`, and fires `channel_inactive` once on both sides.
pub fn channel_events_once_per_connection(factory: &TransportFactory) {
    let t = factory(test_conf());
    let (server_probe, server_events) = Probe::new(true, super::support::echo_reply);
    let server = serve(&t, server_probe);
    let (client_probe, client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);
    // A request sent at once must still come after channel_active.
    assert_echo_works(&client, "right after connect");
    let peer = client.local_addr();

    let first = wait_event(
        &server_events,
        "the server's first event for the connection",
        |e| e.peer() == peer,
    );
    assert!(
        matches!(first, Event::Active(_)),
        "the server's first event was {}",
        first.describe()
    );
    let e = wait_event(&client_events, "channel_active on the client side", |_| true);
    assert!(
        matches!(e, Event::Active(_)),
        "the client's first event was {}",
        e.describe()
    );
    assert_eq!(
        e.peer(),
        server.local_addr(),
        "client-side channel_active names the wrong peer"
    );
    assert_eq!(
        e.client().local_addr(),
        peer,
        "client-side channel_active is for another connection"
    );
    assert!(client.is_active(), "a connected client must be active");

    client.close();
    wait_until("a closed client reports is_active() == false", || {
        !client.is_active()
    });
    match client.send_rpc(Bytes::from_static(b"after close"), |_| {}) {
        Err(TransportError::ConnectionClosed { .. }) => {}
        other => panic!("send_rpc on a closed client returned {other:?}, expected ConnectionClosed"),
    }
    expect_inactive(&server_events, peer, "server");
    expect_inactive(&client_events, server.local_addr(), "client");
    let again = |e: &Event| matches!(e, Event::Active(_) | Event::Inactive { .. });
    expect_no_event(&server_events, "second channel event on the server", again);
    expect_no_event(&client_events, "second channel event on the client", again);
    shutdown(&t);
}

/// RPCs outstanding when the server closes the connection fail at once with
/// `ConnectionClosed`; the client sees `channel_inactive` and turns inactive.
pub fn outstanding_rpcs_fail_when_server_closes_connection(factory: &TransportFactory) {
    let t = factory(test_conf());
    let (server_probe, server_events) = Probe::silent();
    let server = serve(&t, server_probe);
    let (client_probe, client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);
    let server_side = accepted(&server_events, client.local_addr());
    let outcomes = send_rpcs(&client, 10);
    wait_requests(&server_events, 10);

    server_side.close();
    expect_failures(
        &outcomes,
        10,
        TIMEOUT,
        "the server closed the connection",
        is_connection_closed,
    );
    wait_until("the client turns inactive after the server closed it", || {
        !client.is_active()
    });
    assert_eq!(client.outstanding_rpcs(), 0);
    expect_inactive(&client_events, server.local_addr(), "client");
    expect_inactive(&server_events, client.local_addr(), "server");
    shutdown(&t);
}

/// RPCs outstanding when the server is closed (`TransportServer::close`) fail
/// with `ConnectionClosed`.
pub fn outstanding_rpcs_fail_when_server_closes(factory: &TransportFactory) {
    let t = factory(test_conf());
    let (server_probe, server_events) = Probe::silent();
    let server = serve(&t, server_probe);
    let (client_probe, client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);
    let outcomes = send_rpcs(&client, 10);
    wait_requests(&server_events, 10);

    server.close();
    expect_failures(
        &outcomes,
        10,
        TIMEOUT,
        "the server was closed",
        is_connection_closed,
    );
    wait_until("the client turns inactive after its server closed", || {
        !client.is_active()
    });
    expect_inactive(&client_events, server.local_addr(), "client");
    shutdown(&t);
}

/// A frame the client cannot decode (unknown type 77 from a raw server):
/// `exception_caught` with `Decode`, then `channel_inactive`, each once; the
/// outstanding RPC fails with `ConnectionClosed`; the connection is closed.
pub fn decode_error_on_client_is_reported(factory: &TransportFactory) {
    let t = factory(test_conf());
    let listener = TcpListener::bind(any_local_port()).expect("bind a raw listener");
    let addr = listener.local_addr().expect("raw listener address");
    let (client_probe, client_events) = Probe::echo();
    let client = connect(&t, addr, client_probe);
    let mut raw = within("accept on the raw listener", TIMEOUT, move || listener.accept())
        .expect("accept the transport's connection")
        .0;
    let outcomes = send_rpcs(&client, 1);
    let mut bad = 21i64.to_be_bytes().to_vec();
    bad.push(77);
    bad.extend_from_slice(&[0; 12]);
    raw.write_all(&bad).expect("write a bad frame to the client");

    let e = wait_event(&client_events, "exception_caught on the client", |e| {
        matches!(e, Event::Exception(..) | Event::Inactive { .. })
    });
    match &e {
        Event::Exception(_, TransportError::Decode { peer, source }) => {
            assert_eq!(*source, DecodeError::UnknownType { id: 77 });
            assert_eq!(*peer, addr, "the Decode error names the wrong peer");
        }
        _ => panic!(
            "expected exception_caught with a Decode error first, got {}",
            e.describe()
        ),
    }
    expect_failures(
        &outcomes,
        1,
        TIMEOUT,
        "a decode error on the client",
        is_connection_closed,
    );
    expect_inactive(&client_events, addr, "client");
    expect_no_event(&client_events, "second exception or inactive", |e| {
        matches!(e, Event::Exception(..) | Event::Inactive { .. })
    });
    expect_closed_by_peer(&mut raw, "the client's connection after a decode error");
    assert!(!client.is_active());
    shutdown(&t);
}

/// Connecting to a port nobody listens on fails promptly (well before the
/// 10 s connect timeout) with `Io` of kind `ConnectionRefused`.
pub fn connect_refused_fails_promptly(factory: &TransportFactory) {
    let t = factory(test_conf());
    let addr = {
        let l = TcpListener::bind(any_local_port()).expect("reserve a port");
        l.local_addr().expect("reserved address")
    }; // dropped: nobody listens there now
    let (probe, _events) = Probe::echo();
    let started = Instant::now();
    let r = try_connect(&t, addr, probe);
    let took = started.elapsed();
    match r {
        Err(TransportError::Io { kind, addr: a, .. }) => {
            assert_eq!(
                kind,
                std::io::ErrorKind::ConnectionRefused,
                "connect to a closed port"
            );
            assert_eq!(a, addr, "the Io error names the wrong address");
        }
        other => panic!("connect to a closed port returned {other:?}, expected Io(ConnectionRefused)"),
    }
    assert!(took < Duration::from_secs(2), "a refused connect took {took:?}");
    shutdown(&t);
}

/// `shutdown` with RPCs outstanding fails them (`ConnectionClosed` or
/// `Shutdown`) by the time it returns, on the client's transport and on the
/// server's; afterwards `connect` and `bind` fail with `Shutdown`, and a
/// second `shutdown` returns at once.
pub fn shutdown_fails_outstanding_rpcs(factory: &TransportFactory) {
    let server_t = factory(test_conf());
    let (server_probe, server_events) = Probe::silent();
    let server = serve(&server_t, server_probe);
    let addr = server.local_addr();

    // The client's transport shuts down.
    let client_t = factory(test_conf());
    let (probe, _events) = Probe::echo();
    let client = connect(&client_t, addr, probe);
    let outcomes = send_rpcs(&client, 10);
    wait_requests(&server_events, 10);
    shutdown(&client_t);
    expect_failures(
        &outcomes,
        10,
        Duration::from_secs(1),
        "client-side shutdown",
        is_closed_or_shutdown,
    );
    assert!(
        !client.is_active(),
        "a connection of a shut-down transport is still active"
    );
    expect_inactive(
        &server_events,
        client.local_addr(),
        "server, after the client's shutdown",
    );
    let (probe, _events) = Probe::echo();
    match try_connect(&client_t, addr, probe.clone()) {
        Err(TransportError::Shutdown) => {}
        other => panic!("connect after shutdown returned {other:?}, expected Shutdown"),
    }
    match client_t.bind(any_local_port(), probe) {
        Err(TransportError::Shutdown) => {}
        Err(e) => panic!("bind after shutdown returned {e:?}, expected Shutdown"),
        Ok(s) => panic!("bind after shutdown succeeded on {}", s.local_addr()),
    }
    shutdown(&client_t);

    // The server's transport shuts down.
    let other_t = factory(test_conf());
    let (probe, _events) = Probe::echo();
    let client = connect(&other_t, addr, probe);
    let outcomes = send_rpcs(&client, 5);
    wait_requests(&server_events, 5);
    shutdown(&server_t);
    expect_failures(
        &outcomes,
        5,
        TIMEOUT,
        "the server's transport shut down",
        is_connection_closed,
    );
    let (probe, _events) = Probe::echo();
    assert!(
        matches!(
            server_t.bind(any_local_port(), probe),
            Err(TransportError::Shutdown)
        ),
        "bind after shutdown must fail with Shutdown"
    );
    assert!(
        TcpStream::connect_timeout(&addr, TIMEOUT).is_err(),
        "the server of a shut-down transport still accepts connections"
    );
    shutdown(&server_t);
    shutdown(&other_t);
}

/// `TransportServer::close` stops accepting (a new connect is refused), closes
/// the connections it accepted, is idempotent, and leaves the transport usable.
pub fn server_close_stops_accepting(factory: &TransportFactory) {
    let t = factory(test_conf());
    let (server_probe, _server_events) = Probe::echo();
    let server = serve(&t, server_probe.clone());
    let addr = server.local_addr();
    let (probe, _events) = Probe::echo();
    let client = connect(&t, addr, probe.clone());
    assert_echo_works(&client, "before closing the server");

    server.close();
    server.close();
    match try_connect(&t, addr, probe.clone()) {
        Err(TransportError::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            ..
        }) => {}
        Err(e) => panic!("connect to a closed server returned {e:?}, expected Io(ConnectionRefused)"),
        Ok(c) => panic!(
            "connect to a closed server succeeded ({c:?}): TransportServer::close returned while the \
             listening socket still accepted connections"
        ),
    }
    wait_until("the closed server's accepted connection turns inactive", || {
        !client.is_active()
    });

    let server2 = serve(&t, server_probe);
    let client2 = connect(&t, server2.local_addr(), probe);
    assert_echo_works(&client2, "a new server after closing another");
    shutdown(&t);
}

/// `io_mode()` is a concrete mode, `conf()` is the configuration given, and
/// after 300 sequential RPCs the transport's pool has served buffers from its
/// free lists (`served_from_pool > 0`): reads go through pooled buffers.
pub fn io_mode_and_pooled_reads(factory: &TransportFactory) {
    let conf = crate::TransportConf {
        max_frame_size: (1 << 20) + 7,
        ..test_conf()
    };
    let t = factory(conf.clone());
    assert_ne!(
        t.io_mode(),
        IoMode::Auto,
        "io_mode() must name the backend that runs, not Auto"
    );
    let got = crate::TransportConf {
        io_mode: conf.io_mode,
        ..t.conf().clone()
    };
    assert_eq!(
        got, conf,
        "conf() differs from the configuration the transport was built with"
    );

    let (server_probe, _server_events) = Probe::echo();
    let server = serve(&t, server_probe);
    let (client_probe, _client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);
    for i in 0..300 {
        let body = format!("pooled read {i}");
        let want = echoed(body.as_bytes());
        // Compare in the callback so the received buffer is freed on the event loop.
        let (tx, rx) = mpsc::channel();
        client
            .send_rpc(Bytes::from(body), move |r| {
                let _ = tx.send(r.map(|got| got[..] == want[..]));
            })
            .unwrap_or_else(|e| panic!("send_rpc {i}: {e}"));
        match recv_within(&rx, TIMEOUT, "an answer") {
            Ok(true) => {}
            Ok(false) => panic!("RPC {i} got a wrong answer"),
            Err(e) => panic!("RPC {i} failed: {e}"),
        }
    }
    let stats = t.pool().stats();
    assert!(
        stats.served_from_pool > 0,
        "after 300 RPCs no buffer was reused from the transport's pool: {stats:?}; \
         reads must use buffers from Transport::pool() and give them back"
    );
    shutdown(&t);
}

/// Frames queued on a connection when its server closes, or its transport
/// shuts down, are written before the connection closes (as Netty writes
/// what was flushed before a `close` queued after it): a raw peer that
/// starts reading only 100 ms after the close began gets every byte of 16
/// one-way frames of 16 KiB queued just before (through a 4 KiB socket send
/// buffer, so most still wait in the queue), then EOF. `server_close` picks
/// `TransportServer::close`, else `Transport::shutdown`.
fn queued_frames_go_out_before_the_close(factory: &TransportFactory, server_close: bool) {
    const FRAMES: usize = 16;
    const BODY: usize = 16 << 10;
    let t = factory(crate::TransportConf {
        send_buffer_bytes: 4 << 10,
        ..test_conf()
    });
    let (probe, events) = Probe::silent();
    let server = serve(&t, probe);
    let mut raw = raw_connect(server.local_addr());
    let server_side = accepted(&events, raw.local_addr().expect("raw local address"));
    let mut want = Vec::with_capacity(FRAMES * (BODY + 32));
    for i in 0..FRAMES {
        let body = Bytes::from(super::support::pattern(i as u64 + 1, BODY));
        want.extend_from_slice(&super::support::wire(
            &crate::EncodedFrame::one_way(body.clone()).expect("encode"),
        ));
        server_side
            .send_one_way(body)
            .unwrap_or_else(|e| panic!("queue frame {i}: {e}"));
    }
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut raw, &mut got);
        got
    });
    if server_close {
        server.close();
    } else {
        shutdown(&t);
    }
    let got = reader.join().expect("the raw reader thread");
    let what = if server_close {
        "TransportServer::close"
    } else {
        "Transport::shutdown"
    };
    if let Some(d) = super::support::first_difference(&got, &want) {
        panic!("{what} with {FRAMES} frames of {BODY} B queued: the peer got {d}");
    }
    drop(server);
    shutdown(&t);
}

/// [`queued_frames_go_out_before_the_close`] through `TransportServer::close`.
pub fn server_close_writes_queued_frames_first(factory: &TransportFactory) {
    queued_frames_go_out_before_the_close(factory, true);
}

/// [`queued_frames_go_out_before_the_close`] through `Transport::shutdown`.
pub fn shutdown_writes_queued_frames_first(factory: &TransportFactory) {
    queued_frames_go_out_before_the_close(factory, false);
}

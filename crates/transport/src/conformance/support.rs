//! Helpers shared by the cases: a recording handler, bounded waits, raw
//! sockets, and checkable payloads.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{
    EncodedFrame, Transport, TransportClient, TransportConf, TransportError, TransportHandler,
    TransportServer,
};

/// The bound on any single wait: long enough for a loaded CI machine, short
/// enough that a hung backend fails fast.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// How long to watch for an event that must not happen.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// What [`Probe::echo`] puts in front of a request body to answer it.
pub(crate) const ECHO_PREFIX: &[u8] = b"re:";

/// The configuration every case starts from: few threads, a connect timeout
/// well below the default.
pub(crate) fn test_conf() -> TransportConf {
    TransportConf {
        server_threads: 2,
        client_threads: 2,
        connect_timeout_ms: 10_000,
        ..TransportConf::default()
    }
}

/// `127.0.0.1:0`.
pub(crate) fn any_local_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Something a [`Probe`] saw, in the order its handler calls came.
pub(crate) enum Event {
    /// `channel_active`.
    Active(TransportClient),
    /// `channel_inactive`, with what the connection looked like at that moment.
    Inactive {
        client: TransportClient,
        /// `is_active()` during the call (the contract wants false).
        still_active: bool,
        /// `outstanding_rpcs()` during the call (the contract wants 0).
        outstanding: usize,
    },
    /// `exception_caught`.
    Exception(TransportClient, TransportError),
    /// `receive_rpc`, recorded only by probes built to record requests.
    Rpc(TransportClient, i64, Bytes),
    /// `receive_one_way`.
    OneWay(TransportClient, Bytes),
}

impl Event {
    pub(crate) fn client(&self) -> &TransportClient {
        match self {
            Self::Active(c) | Self::Exception(c, _) | Self::Rpc(c, _, _) | Self::OneWay(c, _) => c,
            Self::Inactive { client, .. } => client,
        }
    }

    /// The remote address of the connection the event is about.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.client().peer_addr()
    }

    pub(crate) fn describe(&self) -> String {
        let peer = self.peer();
        match self {
            Self::Active(_) => format!("channel_active({peer})"),
            Self::Inactive { .. } => format!("channel_inactive({peer})"),
            Self::Exception(_, e) => format!("exception_caught({peer}, {e:?})"),
            Self::Rpc(_, id, body) => format!("receive_rpc({peer}, id {id}, {} bytes)", body.len()),
            Self::OneWay(_, body) => format!("receive_one_way({peer}, {} bytes)", body.len()),
        }
    }
}

type RpcFn = dyn Fn(&TransportClient, i64, Bytes) + Send + Sync;

/// A [`TransportHandler`] that reports every call on a channel and answers
/// requests with a closure.
pub(crate) struct Probe {
    events: Sender<Event>,
    record_rpcs: bool,
    on_rpc: Box<RpcFn>,
}

impl Probe {
    /// A probe answering requests with `on_rpc`; requests are also reported
    /// as [`Event::Rpc`] when `record_rpcs` (their bodies then stay alive until
    /// the event is read).
    pub(crate) fn new(
        record_rpcs: bool,
        on_rpc: impl Fn(&TransportClient, i64, Bytes) + Send + Sync + 'static,
    ) -> (Arc<Self>, Receiver<Event>) {
        let (events, rx) = mpsc::channel();
        let probe = Self {
            events,
            record_rpcs,
            on_rpc: Box::new(on_rpc),
        };
        (Arc::new(probe), rx)
    }

    /// Answers every request with [`ECHO_PREFIX`] + its body; requests are not recorded.
    pub(crate) fn echo() -> (Arc<Self>, Receiver<Event>) {
        Self::new(false, echo_reply)
    }

    /// Records requests and never answers them.
    pub(crate) fn silent() -> (Arc<Self>, Receiver<Event>) {
        Self::new(true, |_, _, _| {})
    }

    fn report(&self, event: Event) {
        // The receiver may be gone when a case has finished; that is fine.
        let _ = self.events.send(event);
    }
}

impl TransportHandler for Probe {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        if self.record_rpcs {
            self.report(Event::Rpc(client.clone(), request_id, body.clone()));
        }
        (self.on_rpc)(client, request_id, body);
    }

    fn receive_one_way(&self, client: &TransportClient, body: Bytes) {
        self.report(Event::OneWay(client.clone(), body));
    }

    fn channel_active(&self, client: &TransportClient) {
        self.report(Event::Active(client.clone()));
    }

    fn channel_inactive(&self, client: &TransportClient) {
        self.report(Event::Inactive {
            client: client.clone(),
            still_active: client.is_active(),
            outstanding: client.outstanding_rpcs(),
        });
    }

    fn exception_caught(&self, client: &TransportClient, error: &TransportError) {
        tracing::debug!(peer = %client.peer_addr(), %error, "conformance probe: exception_caught");
        self.report(Event::Exception(client.clone(), error.clone()));
    }
}

/// Answers request `request_id` with [`ECHO_PREFIX`] + `body`.
pub(crate) fn echo_reply(client: &TransportClient, request_id: i64, body: Bytes) {
    let mut answer = Vec::with_capacity(ECHO_PREFIX.len() + body.len());
    answer.extend_from_slice(ECHO_PREFIX);
    answer.extend_from_slice(&body);
    if let Err(e) = client.send_response(request_id, Bytes::from(answer)) {
        tracing::debug!(request_id, %e, "conformance probe: could not answer");
    }
}

/// What [`echo_reply`] answers to `body`.
pub(crate) fn echoed(body: &[u8]) -> Vec<u8> {
    [ECHO_PREFIX, body].concat()
}

/// Receives one value within `timeout`, or panics naming `what` was awaited.
pub(crate) fn recv_within<T>(rx: &Receiver<T>, timeout: Duration, what: &str) -> T {
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("timed out after {timeout:?} waiting for {what}"),
        Err(RecvTimeoutError::Disconnected) => {
            panic!("waiting for {what}: every sender was dropped (a callback dropped without being called?)")
        }
    }
}

/// Waits for the first event matching `pred`, discarding the others, or
/// panics after [`TIMEOUT`] listing what was seen instead.
pub(crate) fn wait_event(rx: &Receiver<Event>, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(e) => seen.push(e.describe()),
            Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}; saw instead: {seen:?}"),
        }
    }
}

/// Panics if an event matching `pred` arrives within [`QUIET`]; others are discarded.
pub(crate) fn expect_no_event(rx: &Receiver<Event>, what: &str, mut pred: impl FnMut(&Event) -> bool) {
    let deadline = Instant::now() + QUIET;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => panic!("unexpected {what}: {}", e.describe()),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Polls `cond` until it holds, or panics after [`TIMEOUT`].
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f` on a helper thread and returns its result, or panics if it takes
/// longer than `timeout` (for blocking calls such as `connect` and `shutdown`).
pub(crate) fn within<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name(format!("conformance: {what}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a helper thread");
    recv_within(&rx, timeout, what)
}

/// Binds a server on a free loopback port.
pub(crate) fn serve(transport: &Arc<dyn Transport>, handler: Arc<Probe>) -> Box<dyn TransportServer> {
    transport
        .bind(any_local_port(), handler)
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"))
}

/// Connects with a bounded wait, panicking on failure.
pub(crate) fn connect(
    transport: &Arc<dyn Transport>,
    addr: SocketAddr,
    handler: Arc<Probe>,
) -> TransportClient {
    try_connect(transport, addr, handler).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// Connects with a bounded wait ([`TIMEOUT`]), returning the backend's result.
pub(crate) fn try_connect(
    transport: &Arc<dyn Transport>,
    addr: SocketAddr,
    handler: Arc<Probe>,
) -> Result<TransportClient, TransportError> {
    let t = transport.clone();
    within(&format!("connect to {addr}"), TIMEOUT, move || {
        t.connect(addr, handler)
    })
}

/// Calls `shutdown` and checks that it returns within [`TIMEOUT`].
pub(crate) fn shutdown(transport: &Arc<dyn Transport>) {
    let t = transport.clone();
    within("Transport::shutdown", TIMEOUT, move || t.shutdown());
}

/// Sends one RPC and waits for its outcome.
pub(crate) fn rpc(client: &TransportClient, body: impl Into<Bytes>) -> Result<Bytes, TransportError> {
    let (tx, rx) = mpsc::channel();
    client
        .send_rpc(body.into(), move |r| {
            let _ = tx.send(r);
        })
        .unwrap_or_else(|e| panic!("send_rpc on {client:?}: {e}"));
    recv_within(&rx, TIMEOUT, "an RPC's response")
}

/// Checks that `client` still gets echo answers.
pub(crate) fn assert_echo_works(client: &TransportClient, context: &str) {
    let body = format!("still there? ({context})");
    match rpc(client, body.clone()) {
        Ok(answer) => assert_eq!(answer, echoed(body.as_bytes()), "{context}: wrong echo"),
        Err(e) => panic!("{context}: an RPC on a connection that must still work failed: {e}"),
    }
}

/// Waits for `channel_active` of the connection whose remote end is `peer`
/// and returns that connection's `TransportClient`.
pub(crate) fn accepted(rx: &Receiver<Event>, peer: SocketAddr) -> TransportClient {
    let what = format!("channel_active for the connection from {peer}");
    match wait_event(rx, &what, |e| matches!(e, Event::Active(_)) && e.peer() == peer) {
        Event::Active(c) => c,
        _ => unreachable!("matched Active"),
    }
}

/// A raw socket to `addr` with bounded reads and writes.
pub(crate) fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap_or_else(|e| panic!("raw connect {addr}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).expect("set_read_timeout");
    s.set_write_timeout(Some(TIMEOUT)).expect("set_write_timeout");
    s.set_nodelay(true).expect("set_nodelay");
    s
}

/// Waits until the peer closes `stream` (read returns 0 or a reset), discarding
/// any bytes; panics if it is still open after [`TIMEOUT`].
pub(crate) fn expect_closed_by_peer(stream: &mut TcpStream, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: the connection is still open after {TIMEOUT:?}"
        );
        stream.set_read_timeout(Some(left)).expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the connection is still open after {TIMEOUT:?}")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return, // reset or aborted: closed too
        }
    }
}

/// The bytes of `frame` on the wire.
pub(crate) fn wire(frame: &EncodedFrame) -> Vec<u8> {
    [frame.header(), &frame.body()[..]].concat()
}

/// `len` bytes of a pseudo-random sequence determined by `seed`, so that a
/// lost, repeated or shifted byte shows.
pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Where `got` first differs from `want`, described; `None` when equal.
pub(crate) fn first_difference(got: &[u8], want: &[u8]) -> Option<String> {
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        return Some(format!("byte {i} is {:#04x}, expected {:#04x}", got[i], want[i]));
    }
    (got.len() != want.len()).then(|| format!("{} bytes, expected {}", got.len(), want.len()))
}

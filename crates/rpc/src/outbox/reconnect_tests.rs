//! The Outbox's reconnects on a fake transport: connections that close when
//! the test says, or before `connect` even returns.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use transport::{
    BufferPool, ConnectionId, EncodedFrame, FrameSink, IoMode, Transport, TransportConf, TransportHandler,
    TransportServer,
};

use super::*;

/// A connection's sink: counts frames, refuses them once closed.
#[derive(Default)]
struct SinkState {
    closed: AtomicBool,
    frames: AtomicUsize,
}

struct Sink(Arc<SinkState>);

impl FrameSink for Sink {
    fn send(&self, _frame: EncodedFrame) -> Result<(), TransportError> {
        if self.0.closed.load(Ordering::SeqCst) {
            return Err(TransportError::ConnectionClosed {
                peer: std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
                reason: "closed by the test".into(),
            });
        }
        self.0.frames.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
    }
    fn is_active(&self) -> bool {
        !self.0.closed.load(Ordering::SeqCst)
    }
    fn wake_reader(&self) {}
}

/// Connects at once; with `close_at_once`, the new connection is closed and
/// its `channel_inactive` has run before `connect` returns (an event loop
/// that saw the peer close it first).
struct FakeTransport {
    conf: TransportConf,
    pool: BufferPool,
    close_at_once: AtomicBool,
    conns: Mutex<Vec<(TransportClient, Arc<SinkState>)>>,
}

impl Transport for FakeTransport {
    fn io_mode(&self) -> IoMode {
        IoMode::Epoll
    }
    fn conf(&self) -> &TransportConf {
        &self.conf
    }
    fn pool(&self) -> &BufferPool {
        &self.pool
    }
    fn bind(
        &self,
        _addr: std::net::SocketAddr,
        _handler: Arc<dyn TransportHandler>,
    ) -> Result<Box<dyn TransportServer>, TransportError> {
        Err(TransportError::Shutdown)
    }
    fn connect(
        &self,
        addr: std::net::SocketAddr,
        handler: Arc<dyn TransportHandler>,
    ) -> Result<TransportClient, TransportError> {
        let state = Arc::new(SinkState::default());
        let mut conns = self.conns.lock().unwrap();
        let id = ConnectionId(conns.len() as u64);
        let client = TransportClient::new(id, addr, addr, &self.conf, Box::new(Sink(state.clone())));
        conns.push((client.clone(), state.clone()));
        drop(conns);
        if self.close_at_once.load(Ordering::SeqCst) {
            state.closed.store(true, Ordering::SeqCst);
            handler.channel_inactive(&client);
        }
        Ok(client)
    }
    fn shutdown(&self) {}
}

impl FakeTransport {
    fn connects(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

/// Tells the outbox of a closed connection, as the RpcHandler does.
struct Handler;

impl TransportHandler for Handler {
    fn receive_rpc(&self, _client: &TransportClient, _request_id: i64, _body: Bytes) {}
    fn receive_one_way(&self, _client: &TransportClient, _body: Bytes) {}
    fn channel_inactive(&self, client: &TransportClient) {
        if let Some(outbound) = client.attachment::<OutboundConn>() {
            outbound.closed();
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_connection_that_closed_before_it_was_set_up_is_reconnected() {
    let transport = Arc::new(FakeTransport {
        conf: TransportConf::default(),
        pool: BufferPool::new(1 << 20),
        close_at_once: AtomicBool::new(false),
        conns: Mutex::new(Vec::new()),
    });
    let handler: Arc<dyn TransportHandler> = Arc::new(Handler);
    let factory = Arc::new(TransportClientFactory::new(transport.clone(), handler.clone()));
    let outbox = Outbox::new(RpcAddress::new("127.0.0.1", 9), factory, 1);
    for n in 0..3u64 {
        outbox.send(OutboxMessage::OneWay(envelope::encode(None, "w", &n).unwrap()));
    }
    // The epoch and the three one-ways are written, and not acknowledged.
    wait_until("the first connection has 4 frames", || {
        transport
            .conns
            .lock()
            .unwrap()
            .first()
            .is_some_and(|(_, s)| s.frames.load(Ordering::SeqCst) == 4)
    });
    // The first connection closes; every reconnect closes at once, before the
    // outbox has set it up. Each must still count as a lost connection, so
    // that the outbox tries its PROACTIVE_RECONNECTS reconnects to resend.
    transport.close_at_once.store(true, Ordering::SeqCst);
    let (first, state) = transport.conns.lock().unwrap()[0].clone();
    state.closed.store(true, Ordering::SeqCst);
    handler.channel_inactive(&first);
    let want = 1 + PROACTIVE_RECONNECTS as usize;
    wait_until("the outbox reconnected PROACTIVE_RECONNECTS times", || {
        transport.connects() >= want
    });
    wait_until("the last connect finished", || !outbox.lock().connecting);
    assert_eq!(transport.connects(), want, "and no more");
    assert_eq!(
        outbox.lock().retained.bodies.len(),
        3,
        "still kept for the next message"
    );
}

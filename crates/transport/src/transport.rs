//! The `Transport` trait: the contract every backend keeps.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::client::TransportClient;
use crate::conf::{IoMode, TransportConf};
use crate::error::TransportError;
use crate::pool::BufferPool;

/// Receives what arrives on connections (Spark's `RpcHandler` plus the channel
/// events of `TransportChannelHandler`). Every method runs on the connection's
/// event-loop thread and must not block.
pub trait TransportHandler: Send + Sync + 'static {
    /// An RpcRequest arrived; answer it with [`TransportClient::send_response`]
    /// or [`TransportClient::send_failure`] (now, or later from any thread).
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes);

    /// A OneWayMessage arrived.
    fn receive_one_way(&self, client: &TransportClient, body: Bytes);

    /// Every frame of one read from the socket has been delivered (Netty's
    /// `channelReadComplete`): a point to flush what the frames of that read
    /// called for, once per read rather than once per frame. Called on the
    /// connection's event-loop thread. The default does nothing.
    fn read_complete(&self, client: &TransportClient) {
        let _ = client;
    }

    /// The connection is established. The default does nothing.
    fn channel_active(&self, client: &TransportClient) {
        let _ = client;
    }

    /// The connection has ended. The default does nothing.
    fn channel_inactive(&self, client: &TransportClient) {
        let _ = client;
    }

    /// A read, write or decode error ended the connection; `channel_inactive`
    /// follows. The default logs it at `warn`.
    fn exception_caught(&self, client: &TransportClient, error: &TransportError) {
        tracing::warn!(peer = %client.peer_addr(), %error, "connection failed");
    }
}

/// A listening server (Spark's `TransportServer`).
pub trait TransportServer: Send + Sync {
    /// The address it listens on (with the real port when bound to port 0).
    fn local_addr(&self) -> SocketAddr;
    /// Stops accepting and closes the connections it accepted. Idempotent.
    fn close(&self);
}

/// A transport backend: servers, outgoing connections and their event loops
/// (Spark's `TransportContext` with its `TransportServer`s and
/// `TransportClientFactory`).
///
/// # What a backend must guarantee
///
/// A backend (`transport-epoll`, `transport-uring`) moves Spark network-common
/// frames over TCP. Whatever its IO model, it must:
///
/// 1. **Frames.** Decode every connection's byte stream with
///    [`FrameDecoder`](crate::FrameDecoder) and pass each frame, in arrival
///    order, to [`TransportClient::handle_frame`] on the connection's
///    event-loop thread. Write frames with [`WriteQueue`](crate::WriteQueue) in
///    the order [`FrameSink::send`](crate::FrameSink::send) queued them, never
///    interleaving two frames' bytes.
/// 2. **Events.** Call [`TransportHandler::channel_active`] once when a
///    connection is established (before any of its frames), and
///    [`TransportHandler::channel_inactive`] once when it ends, for any reason,
///    after the sink refuses sends and after [`TransportClient::connection_closed`]
///    has failed the outstanding RPCs. A read or write error, or a decode
///    error, is first reported with [`TransportHandler::exception_caught`], and
///    closes that connection only.
/// 3. **Threads.** Run every handler call and response callback of one
///    connection on one event-loop thread, one at a time. Never block in
///    [`FrameSink::send`](crate::FrameSink::send); it may be called from any
///    thread, including from inside a handler.
/// 4. **Buffers.** Read into buffers from [`Transport::pool`]; hand bodies to
///    the handler as slices of those buffers, not copies.
/// 5. **Limits.** Refuse a frame whose length exceeds `max_frame_size` before
///    buffering its body (the decoder does this) and close the connection.
///    So the bytes a connection buffers before handing them to the handler
///    are at most `max_frame_size` (one frame in progress) plus what one read
///    returned (on io_uring, the completions of a multishot recv before a
///    pause cancelled it); bodies the handler keeps stay alive as long as it holds them,
///    and [`max_in_flight_requests_per_connection`](TransportConf::max_in_flight_requests_per_connection)
///    bounds how many requests it can be holding.
///    Before reading, and before decoding what a read got, ask
///    [`TransportClient::should_pause_reading`]; while it says so, read and
///    deliver nothing more from that connection (bytes already read wait, in
///    order; the frames of a read being decoded are all delivered) until
///    [`TransportClient::may_resume_reading`] holds again, re-checking after
///    every write and every frame queued; other connections go on being served. Report written bytes with
///    [`TransportClient::frames_written`]. Never refuse or drop a send because
///    of these limits. Close a connection accepted while its server already
///    has [`max_connections`](TransportConf::max_connections) open at once,
///    logging the peer at `warn`, without touching the others.
/// 6. **Shutdown.** [`Transport::shutdown`] closes every server and
///    connection, fails outstanding RPCs, and joins the event-loop threads; no
///    file descriptor stays open.
///
/// `transport::conformance` (feature `conformance`) tests these points over
/// real loopback sockets; every backend runs it from its `tests/`.
pub trait Transport: Send + Sync + 'static {
    /// The IO mode that runs: never [`IoMode::Auto`].
    fn io_mode(&self) -> IoMode;

    /// The configuration it was built with.
    fn conf(&self) -> &TransportConf;

    /// The buffer pool its reads use.
    fn pool(&self) -> &BufferPool;

    /// Listens on `addr` (port 0 picks a free port); every accepted connection
    /// is served by `handler`.
    ///
    /// # Errors
    /// [`TransportError::Io`] when binding fails; [`TransportError::Shutdown`] after `shutdown`.
    fn bind(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn TransportHandler>,
    ) -> Result<Box<dyn TransportServer>, TransportError>;

    /// Connects to `addr`, blocking the calling thread until connected or the
    /// connect timeout passes; requests the server sends back on this connection
    /// go to `handler`. Do not call from an event-loop thread.
    ///
    /// # Errors
    /// [`TransportError::Io`] when the connection is refused,
    /// [`TransportError::ConnectTimeout`], or [`TransportError::Shutdown`].
    fn connect(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn TransportHandler>,
    ) -> Result<TransportClient, TransportError>;

    /// Closes every server and connection and stops the event loops. Idempotent.
    fn shutdown(&self);
}

//! `TransportClient`: one connection, as both ends see it (Spark's `TransportClient`
//! plus the request matching of its `TransportResponseHandler`).
//!
//! A client sends RpcRequests and matches each RpcResponse or RpcFailure to
//! its callback by request id; it also answers requests that arrived on it
//! ([`send_response`](TransportClient::send_response)), which is how a server
//! replies, and how it sends to a connected client at any time (Spark's
//! reverse client): the server side holds a `TransportClient` for every
//! accepted connection too. The bytes go through the backend's [`FrameSink`].
//!
//! It also keeps the two counts a backend needs to apply the per-connection
//! limits of [`TransportConf`] (see [`should_pause_reading`](TransportClient::should_pause_reading)):
//! bytes queued and not yet written ([`queued_bytes`](TransportClient::queued_bytes)),
//! and requests received and not yet answered
//! ([`in_flight_requests`](TransportClient::in_flight_requests)). Each costs
//! one atomic add when a frame is queued or delivered and one when it is
//! written or answered: no lock, no allocation.
//!
//! A layer above can pause reading too, for its own bound:
//! [`pause_reading`](TransportClient::pause_reading) returns a [`ReadPause`];
//! the backend stops reading from the connection while any is held, and the
//! last one dropped wakes it ([`FrameSink::wake_reader`]). The RPC layer does
//! this when an endpoint's inbox is full and its policy is to wait.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use crate::conf::TransportConf;
use crate::error::TransportError;
use crate::frame::{EncodedFrame, Frame};
use crate::id_hash::RequestIdMap;
use crate::transport::TransportHandler;

mod response;

pub use response::{ResponseHandler, RpcResponseCallback, RpcResponseListener};

/// Identifies a connection within one transport (like mio's `Token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// What a backend provides to move a connection's frames. Implemented by each backend.
pub trait FrameSink: Send + Sync + 'static {
    /// Queues `frame` to be written after every frame queued before it; never blocks.
    ///
    /// # Errors
    /// [`TransportError::ConnectionClosed`] once the connection is closing or closed:
    /// from then on every call must fail.
    fn send(&self, frame: EncodedFrame) -> Result<(), TransportError>;
    /// Starts closing the connection: queued frames may be dropped, reads stop,
    /// and the backend then calls [`TransportClient::connection_closed`].
    fn close(&self);
    /// Closes the connection once the frames queued so far are written (used to
    /// deliver a last RpcFailure, such as an authentication refusal, before
    /// closing). The default closes at once, dropping them.
    fn close_after_flush(&self) {
        self.close();
    }
    /// Whether the connection still accepts frames.
    fn is_active(&self) -> bool;
    /// The last [`ReadPause`] of the connection was dropped: if the backend
    /// paused reading, it must check [`TransportClient::may_resume_reading`]
    /// again and read once it holds. Called on any thread; must not block.
    fn wake_reader(&self);
}

struct Inner {
    id: ConnectionId,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    max_frame_size: u64,
    sink: Box<dyn FrameSink>,
    outstanding: Mutex<RequestIdMap<ResponseHandler>>,
    next_request_id: AtomicI64,
    /// `max_queued_bytes_per_connection`, bytes, `usize::MAX` for none.
    max_queued_bytes: usize,
    /// `max_in_flight_requests_per_connection`, a count, `usize::MAX` for none.
    max_in_flight: usize,
    /// `max_outstanding_rpcs_per_connection`, a count, `usize::MAX` for none.
    max_outstanding: usize,
    /// Bytes of frames handed to the sink and not yet reported written.
    queued_bytes: AtomicUsize,
    /// RpcRequests delivered to the handler and not yet answered.
    in_flight_requests: AtomicUsize,
    /// [`ReadPause`]s held by the layer above.
    read_pauses: AtomicUsize,
    /// State the layer above keeps with this connection.
    attachment: OnceLock<Arc<dyn Any + Send + Sync>>,
}

/// A handle to one connection. Cheap to clone; all clones are the same connection.
#[derive(Clone)]
pub struct TransportClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for TransportClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportClient")
            .field("id", &self.inner.id)
            .field("peer", &self.inner.peer_addr)
            .field("active", &self.is_active())
            .finish()
    }
}

impl TransportClient {
    /// Wraps a backend connection, applying `conf`'s `max_frame_size` and
    /// per-connection limits (`max_queued_bytes_per_connection`,
    /// `max_in_flight_requests_per_connection`, `max_outstanding_rpcs_per_connection`).
    /// For backends; users get clients from
    /// [`Transport::connect`](crate::Transport::connect) and handler callbacks.
    pub fn new(
        id: ConnectionId,
        local_addr: SocketAddr,
        peer_addr: SocketAddr,
        conf: &TransportConf,
        sink: Box<dyn FrameSink>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                local_addr,
                peer_addr,
                max_frame_size: conf.max_frame_size,
                sink,
                outstanding: Mutex::new(RequestIdMap::default()),
                next_request_id: AtomicI64::new(0),
                max_queued_bytes: conf.queued_bytes_limit(),
                max_in_flight: conf.in_flight_requests_limit(),
                max_outstanding: conf.outstanding_rpcs_limit(),
                queued_bytes: AtomicUsize::new(0),
                in_flight_requests: AtomicUsize::new(0),
                read_pauses: AtomicUsize::new(0),
                attachment: OnceLock::new(),
            }),
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    /// The local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Whether the connection still accepts frames.
    pub fn is_active(&self) -> bool {
        self.inner.sink.is_active()
    }

    /// RPCs sent on this connection and not yet answered.
    pub fn outstanding_rpcs(&self) -> usize {
        self.outstanding().len()
    }

    /// Bytes of frames (headers and bodies) queued on this connection and not
    /// yet written to its socket, as far as the backend has reported
    /// ([`frames_written`](Self::frames_written)). 0 once the connection has closed.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued_bytes.load(Ordering::SeqCst)
    }

    /// RpcRequests that arrived on this connection, were handed to the handler
    /// and have not been answered yet with [`send_response`](Self::send_response)
    /// or [`send_failure`](Self::send_failure). 0 once the connection has closed.
    pub fn in_flight_requests(&self) -> usize {
        self.inner.in_flight_requests.load(Ordering::SeqCst)
    }

    /// Whether the backend should stop reading from this connection: more than
    /// `max_queued_bytes_per_connection` bytes are queued to write,
    /// `max_in_flight_requests_per_connection` requests are unanswered, or a
    /// [`ReadPause`] is held. For backends: check before reading and before
    /// decoding what a read got (the frames of one read being decoded are all
    /// delivered). Three integer compares.
    pub fn should_pause_reading(&self) -> bool {
        self.queued_bytes() > self.inner.max_queued_bytes
            || self.in_flight_requests() >= self.inner.max_in_flight
            || self.read_pauses() > 0
    }

    /// Whether a connection whose reading was paused may read again: at most
    /// half of `max_queued_bytes_per_connection` is queued (a low watermark, so
    /// a connection does not flap around the bound), fewer than
    /// `max_in_flight_requests_per_connection` requests are unanswered, and no
    /// [`ReadPause`] is held. For backends: check after a write, a queued
    /// answer, and [`FrameSink::wake_reader`].
    pub fn may_resume_reading(&self) -> bool {
        self.queued_bytes() <= self.inner.max_queued_bytes / 2
            && self.in_flight_requests() < self.inner.max_in_flight
            && self.read_pauses() == 0
    }

    /// Stops reading from this connection until the returned guard, and every
    /// other one taken, is dropped: the peer's further frames wait in TCP
    /// (backpressure), none is refused or lost, and the connection's order is
    /// kept. Frames of the read being decoded when it is taken are still
    /// delivered. Writes go on. For a layer above the transport that bounds
    /// what it holds (the RPC layer's inboxes); Netty's `setAutoRead(false)`.
    /// One atomic add; never blocks; any thread.
    pub fn pause_reading(&self) -> ReadPause {
        self.inner.read_pauses.fetch_add(1, Ordering::SeqCst);
        ReadPause { client: self.clone() }
    }

    /// [`ReadPause`]s now held on this connection (a count).
    pub fn read_pauses(&self) -> usize {
        self.inner.read_pauses.load(Ordering::SeqCst)
    }

    /// Attaches `value` to this connection, for the layer above to find again
    /// from any handle of it (Netty's `Channel.attr`). Set once: returns
    /// `false`, and drops `value`, if the connection already has one.
    pub fn set_attachment(&self, value: Arc<dyn Any + Send + Sync>) -> bool {
        self.inner.attachment.set(value).is_ok()
    }

    /// The value attached with [`set_attachment`](Self::set_attachment), if
    /// it is a `T`. One atomic load and a type-id compare.
    pub fn attachment<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner.attachment.get()?.downcast_ref::<T>()
    }

    /// Reports that `bytes` bytes of queued frames were written to the socket
    /// (or given to the kernel), lowering [`queued_bytes`](Self::queued_bytes).
    /// For backends, after every write.
    pub fn frames_written(&self, bytes: usize) {
        saturating_sub(&self.inner.queued_bytes, bytes);
    }

    /// Hands `frame` to the sink, counting its bytes as queued until written.
    fn queue(&self, frame: EncodedFrame) -> Result<(), TransportError> {
        let len = frame.len();
        // Counted before the sink has it, so a writer can never report it written first.
        self.inner.queued_bytes.fetch_add(len, Ordering::SeqCst);
        let sent = self.inner.sink.send(frame);
        if sent.is_err() {
            saturating_sub(&self.inner.queued_bytes, len);
        }
        sent
    }

    /// An answer to a received request is about to be queued. Counted down
    /// before the answer reaches the sink, so that the backend, woken by that
    /// answer, sees the new count when it decides whether to read again.
    fn answering(&self) {
        saturating_sub(&self.inner.in_flight_requests, 1);
    }

    fn outstanding(&self) -> std::sync::MutexGuard<'_, RequestIdMap<ResponseHandler>> {
        self.inner.outstanding.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_size(&self, frame: &EncodedFrame) -> Result<(), TransportError> {
        if frame.len() as u64 > self.inner.max_frame_size {
            return Err(TransportError::FrameTooLarge {
                length: frame.len() as u64,
                max: self.inner.max_frame_size,
            });
        }
        Ok(())
    }

    fn encode(
        &self,
        f: impl FnOnce() -> Result<EncodedFrame, crate::frame::FrameSizeError>,
    ) -> Result<EncodedFrame, TransportError> {
        let frame = f().map_err(|e| TransportError::FrameTooLarge {
            length: e.length as u64,
            max: self.inner.max_frame_size,
        })?;
        self.check_size(&frame)?;
        Ok(frame)
    }

    /// Sends an RpcRequest carrying `body`; `callback` gets the response body,
    /// the peer's RpcFailure as [`TransportError::RemoteFailure`], or
    /// [`TransportError::ConnectionClosed`] if the connection is lost first.
    /// Returns the request id. Mirrors Spark's `TransportClient.sendRpc`.
    ///
    /// # Errors
    /// [`TransportError::FrameTooLarge`] when the frame would exceed the maximum
    /// frame size; [`TransportError::TooManyOutstandingRpcs`] when
    /// `max_outstanding_rpcs_per_connection` RPCs already await their answer
    /// on this connection; [`TransportError::ConnectionClosed`] when the
    /// connection is closed. In each case `callback` is dropped without being called.
    pub fn send_rpc(
        &self,
        body: Bytes,
        callback: impl FnOnce(Result<Bytes, TransportError>) + Send + 'static,
    ) -> Result<i64, TransportError> {
        self.send_rpc_boxed(body, Box::new(callback)).map_err(|(e, _)| e)
    }

    /// [`send_rpc`](Self::send_rpc) with a boxed callback, handed back with the
    /// error when the request cannot be sent (so the caller can still complete it).
    ///
    /// # Errors
    /// As [`send_rpc`](Self::send_rpc), together with the unused callback.
    #[allow(clippy::result_large_err)]
    pub fn send_rpc_boxed(
        &self,
        body: Bytes,
        callback: RpcResponseCallback,
    ) -> Result<i64, (TransportError, RpcResponseCallback)> {
        self.send_rpc_with(body, ResponseHandler::Callback(callback))
            .map_err(|(e, handler)| match handler {
                ResponseHandler::Callback(cb) => (e, cb),
                ResponseHandler::Listener(_) => unreachable!("the handler given back is the one passed in"),
            })
    }

    /// [`send_rpc`](Self::send_rpc) with any [`ResponseHandler`]: with a
    /// [`ResponseHandler::Listener`], sending a request allocates nothing per
    /// request beyond the frame. The handler is handed back with the error when
    /// the request cannot be sent. A listener is first told its request id
    /// ([`RpcResponseListener::on_registered`]), and is not registered if it
    /// answers `false` (the frame is sent all the same).
    ///
    /// # Errors
    /// As [`send_rpc`](Self::send_rpc), together with the unused handler.
    #[allow(clippy::result_large_err)]
    pub fn send_rpc_with(
        &self,
        body: Bytes,
        handler: ResponseHandler,
    ) -> Result<i64, (TransportError, ResponseHandler)> {
        let request_id = self.inner.next_request_id.fetch_add(1, Ordering::Relaxed);
        let frame = match self.encode(|| EncodedFrame::rpc_request(request_id, body)) {
            Ok(f) => f,
            Err(e) => return Err((e, handler)),
        };
        // Register before sending: the response may arrive before `send` returns.
        let unwanted = {
            let mut outstanding = self.outstanding();
            if outstanding.len() >= self.inner.max_outstanding {
                let e = TransportError::TooManyOutstandingRpcs {
                    peer: self.inner.peer_addr,
                    limit: self.inner.max_outstanding,
                };
                return Err((e, handler));
            }
            // Under the lock: a `remove_rpc_request` for this id comes after both.
            let wanted = match &handler {
                ResponseHandler::Listener(listener) => listener.on_registered(self, request_id),
                ResponseHandler::Callback(_) => true,
            };
            if wanted {
                outstanding.insert(request_id, handler);
                None
            } else {
                Some(handler)
            }
        };
        // Nobody waits for this one's answer (dropped with the table unlocked).
        drop(unwanted);
        if let Err(e) = self.queue(frame) {
            return match self.outstanding().remove(&request_id) {
                Some(handler) => Err((e, handler)),
                // Already failed by `connection_closed`, which called it.
                None => Ok(request_id),
            };
        }
        Ok(request_id)
    }

    /// Forgets an outstanding RPC (its answer, if it comes, is ignored): for a
    /// caller that gave up waiting, such as an ask that timed out (Spark's
    /// `TransportClient.removeRpcRequest`). `request_id` is the id
    /// [`send_rpc_with`](Self::send_rpc_with) returned or
    /// [`RpcResponseListener::on_registered`] was given. Returns whether it was
    /// outstanding; its handler is dropped without being called, after the
    /// table is unlocked.
    pub fn remove_rpc_request(&self, request_id: i64) -> bool {
        let removed = self.outstanding().remove(&request_id);
        removed.is_some()
    }

    /// Sends a OneWayMessage (Spark's `TransportClient.send`): no answer expected.
    ///
    /// # Errors
    /// As [`send_rpc`](Self::send_rpc).
    pub fn send_one_way(&self, body: Bytes) -> Result<(), TransportError> {
        let frame = self.encode(|| EncodedFrame::one_way(body))?;
        self.queue(frame)
    }

    /// Answers request `request_id` that arrived on this connection with an
    /// RpcResponse; once encoded, the request no longer counts as in flight
    /// ([`in_flight_requests`](Self::in_flight_requests)). Answer each request
    /// once: a second answer is sent too, but would count another request as answered.
    ///
    /// # Errors
    /// [`TransportError::FrameTooLarge`] (the request stays in flight: answer
    /// it with [`send_failure`](Self::send_failure)) and
    /// [`TransportError::ConnectionClosed`].
    pub fn send_response(&self, request_id: i64, body: Bytes) -> Result<(), TransportError> {
        let frame = self.encode(|| EncodedFrame::rpc_response(request_id, body))?;
        self.answering();
        self.queue(frame)
    }

    /// Answers request `request_id` with an RpcFailure carrying `error`; as
    /// [`send_response`](Self::send_response), it stops counting as in flight.
    ///
    /// # Errors
    /// As [`send_response`](Self::send_response).
    pub fn send_failure(&self, request_id: i64, error: &str) -> Result<(), TransportError> {
        let frame = self.encode(|| EncodedFrame::rpc_failure(request_id, error))?;
        self.answering();
        self.queue(frame)
    }

    /// Closes the connection. Outstanding RPCs fail with
    /// [`TransportError::ConnectionClosed`] once the backend has closed it.
    pub fn close(&self) {
        self.inner.sink.close();
    }

    /// Closes the connection once the frames already queued on it are written,
    /// so that a last answer (an RpcFailure, say) reaches the peer first.
    pub fn close_after_flush(&self) {
        self.inner.sink.close_after_flush();
    }

    /// Routes one decoded frame: requests and one-way messages to `handler`,
    /// responses and failures to the callback registered under their request
    /// id. For backends; call on the connection's event-loop thread.
    pub fn handle_frame(&self, frame: Frame, handler: &dyn TransportHandler) {
        match frame {
            Frame::RpcRequest { request_id, body } => {
                self.inner.in_flight_requests.fetch_add(1, Ordering::SeqCst);
                handler.receive_rpc(self, request_id, body)
            }
            Frame::OneWayMessage { body } => handler.receive_one_way(self, body),
            Frame::RpcResponse { request_id, body } => self.complete(request_id, Ok(body)),
            Frame::RpcFailure { request_id, error } => {
                self.complete(request_id, Err(TransportError::RemoteFailure { message: error }))
            }
        }
    }

    fn complete(&self, request_id: i64, result: Result<Bytes, TransportError>) {
        let handler = self.outstanding().remove(&request_id);
        match handler {
            Some(handler) => handler.call(request_id, result),
            None => tracing::warn!(
                request_id,
                peer = %self.inner.peer_addr,
                "ignoring a response to an RPC that is not outstanding"
            ),
        }
    }

    /// Fails every outstanding RPC with `ConnectionClosed { reason }`, and
    /// zeroes the queued-bytes and in-flight counts (the backend drops what was
    /// queued). For backends: call once the sink refuses new frames, so no RPC
    /// can be registered after this and never answered. A callback that
    /// panics is logged (`error`) and the others are still failed, so the
    /// backend goes on to close the connection as it would have.
    pub fn connection_closed(&self, reason: &str) {
        self.inner.queued_bytes.store(0, Ordering::SeqCst);
        self.inner.in_flight_requests.store(0, Ordering::SeqCst);
        let pending: Vec<_> = self.outstanding().drain().collect();
        for (request_id, handler) in pending {
            let error = TransportError::ConnectionClosed {
                peer: self.inner.peer_addr,
                reason: reason.to_string(),
            };
            crate::contain_panic(
                "a response callback (its RPC failed: the connection closed)",
                self.inner.peer_addr,
                || handler.call(request_id, Err(error)),
            );
        }
    }
}

/// A pause of a connection's reading, taken with
/// [`TransportClient::pause_reading`]; dropping the last one of a connection
/// lets its backend read again (and wakes it). Holds the connection's handle,
/// not the connection open: a closed connection's pauses simply end with their guards.
#[must_use = "reading resumes as soon as the pause is dropped"]
pub struct ReadPause {
    client: TransportClient,
}

impl ReadPause {
    /// The connection whose reading this pause holds.
    pub fn client(&self) -> &TransportClient {
        &self.client
    }
}

impl fmt::Debug for ReadPause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadPause")
            .field("connection", &self.client.id())
            .finish()
    }
}

impl Drop for ReadPause {
    fn drop(&mut self) {
        let inner = &self.client.inner;
        // SeqCst, like the backends' paused flags: either a paused reader sees
        // the count at 0 when it re-checks, or `wake_reader` sees it paused.
        if inner.read_pauses.fetch_sub(1, Ordering::SeqCst) == 1 {
            inner.sink.wake_reader();
        }
    }
}

/// `counter -= n`, stopping at 0 (a late report after a reset, or a request
/// answered twice, must not wrap the count around).
fn saturating_sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(v.saturating_sub(n)));
}

#[cfg(test)]
mod tests;

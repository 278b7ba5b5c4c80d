//! What answers an RPC: a boxed callback or a shared listener (Spark's
//! `RpcResponseCallback`), and the [`ResponseHandler`] that holds either in
//! a connection's table of outstanding RPCs.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::TransportClient;
use crate::error::TransportError;

/// Called once with the response body, or the error, of one RPC
/// (Spark's `RpcResponseCallback`). Runs on the backend's event-loop thread of
/// the connection: it must not block.
pub type RpcResponseCallback = Box<dyn FnOnce(Result<Bytes, TransportError>) + Send>;

/// Receives the answer to one RPC, like [`RpcResponseCallback`], but as a
/// shared object rather than a boxed closure: an object that is already behind
/// an `Arc` (an ask's promise, say) answers its RPC without a heap allocation
/// per request. Called once, on the connection's event-loop thread: it must not block.
pub trait RpcResponseListener: Send + Sync + 'static {
    /// The answer to request `request_id` (as [`TransportClient::send_rpc_with`]
    /// returned it): the response body, the peer's RpcFailure as
    /// [`TransportError::RemoteFailure`], or [`TransportError::ConnectionClosed`].
    /// One listener may serve many requests; the id tells them apart. A caller
    /// that fails a request it could not send passes -1.
    fn on_response(self: Arc<Self>, request_id: i64, result: Result<Bytes, TransportError>);

    /// Told by [`TransportClient::send_rpc_with`] that the request is now
    /// outstanding on `client` under `request_id`, before its frame is
    /// queued (so before any answer can come). A listener that may give up
    /// waiting (an ask that times out) keeps the two and calls
    /// [`TransportClient::remove_rpc_request`] then, as Spark's
    /// `RpcOutboxMessage` keeps its client and request id for `onTimeout`.
    /// Called with the connection's table of outstanding RPCs locked: it must
    /// not call back into `client`.
    ///
    /// Returns whether the listener still waits for the answer. `false` (an
    /// ask that timed out while the request was queued before its connection
    /// was ready, so had nothing to remove then) leaves the request out of
    /// the table: the frame is still sent, as Spark's `Outbox` sends a
    /// timed-out message it still holds, but its answer, if one comes, is
    /// ignored, and it neither stays until the connection closes nor counts
    /// against `max_outstanding_rpcs_per_connection`. The listener is then
    /// dropped without being called. Returns `true` by default.
    fn on_registered(&self, client: &TransportClient, request_id: i64) -> bool {
        let _ = (client, request_id);
        true
    }
}

/// What answers one outstanding RPC: a boxed closure or a shared listener.
pub enum ResponseHandler {
    /// A closure, called once.
    Callback(RpcResponseCallback),
    /// A listener, told once.
    Listener(Arc<dyn RpcResponseListener>),
}

impl ResponseHandler {
    /// Delivers `result`, the answer to `request_id`, consuming the handler.
    pub fn call(self, request_id: i64, result: Result<Bytes, TransportError>) {
        match self {
            Self::Callback(cb) => cb(result),
            Self::Listener(l) => l.on_response(request_id, result),
        }
    }
}

impl From<RpcResponseCallback> for ResponseHandler {
    fn from(cb: RpcResponseCallback) -> Self {
        Self::Callback(cb)
    }
}

impl fmt::Debug for ResponseHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Callback(_) => "ResponseHandler::Callback",
            Self::Listener(_) => "ResponseHandler::Listener",
        })
    }
}

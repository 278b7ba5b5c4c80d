//! `RpcEndpoint`: what an endpoint implements (Spark's `RpcEndpoint` /
//! `ThreadSafeRpcEndpoint` / `IsolatedRpcEndpoint`).

use crate::address::RpcAddress;
use crate::context::{RpcCallContext, RpcSender};
use crate::error::RpcError;
use crate::message::{Msg, RpcMessage};

/// An endpoint: a named receiver of typed messages, driven by the Dispatcher.
///
/// Its life (Spark's contract, kept by the `Inbox`): `on_start` runs before
/// any message; then `receive` / `receive_and_reply` and the network events,
/// in the order they were posted; `on_stop` runs last. How many threads may
/// call it at once depends on how it was set up:
///
/// - [`RpcEnv::setup_endpoint`](crate::RpcEnv::setup_endpoint): one message
///   at a time, on the shared `MessageLoop` pool (`ThreadSafeRpcEndpoint`);
/// - [`RpcEnv::setup_concurrent_endpoint`](crate::RpcEnv::setup_concurrent_endpoint):
///   several messages at once, each thread on its own clone of the endpoint
///   (Spark's plain `RpcEndpoint`; share state through `Arc`s in it);
/// - [`RpcEnv::setup_isolated_endpoint`](crate::RpcEnv::setup_isolated_endpoint):
///   one message at a time on a dedicated thread of its own
///   (`IsolatedRpcEndpoint`), so a slow endpoint cannot hold up others.
///
/// A panic in a handler is caught: an ask being processed fails with
/// [`RpcError::EndpointPanicked`], `on_error` runs, and the endpoint keeps serving.
pub trait RpcEndpoint: Send + 'static {
    /// The messages it receives.
    type Message: RpcMessage;
    /// The replies it gives to asks.
    type Reply: RpcMessage;

    /// Runs once, before any message. If it panics, the endpoint stops: the
    /// messages queued for it are refused (asks fail with
    /// [`RpcError::EndpointStopped`](crate::RpcError::EndpointStopped)), and
    /// [`on_stop`](Self::on_stop) runs; other endpoints are not affected.
    fn on_start(&mut self) {}

    /// A one-way message (`RpcEndpointRef::send`). The default reports it to
    /// `on_error` as unexpected.
    fn receive(&mut self, msg: Msg<'_, Self::Message>, sender: &RpcSender) {
        let _ = msg;
        self.on_error(&RpcError::RemoteFailure {
            message: format!("this endpoint does not take one-way messages (sent from {sender})"),
        });
    }

    /// An ask (`RpcEndpointRef::ask`); answer through `ctx` now or later, from
    /// any thread. The default fails the ask.
    fn receive_and_reply(&mut self, msg: Msg<'_, Self::Message>, ctx: RpcCallContext<Self::Reply>) {
        let _ = msg;
        ctx.send_failure("this endpoint does not answer asks");
    }

    /// Runs once, last; no message follows.
    fn on_stop(&mut self) {}

    /// A remote process connected (Spark's `onConnected`): an RpcEnv's address,
    /// or a client's socket address.
    fn on_connected(&mut self, remote: &RpcAddress) {
        let _ = remote;
    }

    /// A remote process disconnected (Spark's `onDisconnected`).
    fn on_disconnected(&mut self, remote: &RpcAddress) {
        let _ = remote;
    }

    /// A connection to a remote process failed (Spark's `onNetworkError`).
    fn on_network_error(&mut self, error: &RpcError, remote: &RpcAddress) {
        let _ = (error, remote);
    }

    /// A message could not be handled: it was invalid, unexpected, or the
    /// handler panicked (Spark's `onError`). The default logs it.
    fn on_error(&mut self, error: &RpcError) {
        tracing::error!(%error, endpoint = std::any::type_name::<Self>(), "endpoint error");
    }
}

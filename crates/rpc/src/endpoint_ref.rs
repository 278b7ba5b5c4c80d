//! `RpcEndpointRef`: a typed handle to send to, or ask, an endpoint
//! (Spark's `RpcEndpointRef` / `NettyRpcEndpointRef`).
//!
//! A reference is one of three routes, fixed when it is made:
//! - **local**: the endpoint lives in this RpcEnv; messages are moved into its
//!   inbox as values, never serialized, never near a socket;
//! - **remote**: the endpoint lives in the RpcEnv at an address; messages are
//!   encoded (envelope + rkyv archive) and go through that address's `Outbox`;
//! - **connection**: the endpoint lives in the process at the other end of a
//!   connection that reached us (possibly a client-mode RpcEnv with no address).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::{ResponseHandler, RpcResponseListener, TransportClient, TransportError};

use crate::address::RpcAddress;
use crate::callback_ask::CallbackAsk;
use crate::context::{ReplyTo, RpcCallContext, RpcSender};
use crate::env::EnvInner;
use crate::envelope;
use crate::error::RpcError;
use crate::inbox::{Content, InboxMessage, LocalTarget};
use crate::message::Msg;
use crate::message::RpcMessage;
use crate::outbox::{Outbox, OutboxMessage, connect_error};
use crate::promise::{AskErrors, AskFuture, AskOrigin, Complete, pending_ask};

enum Route<M, R: RpcMessage> {
    Local(Arc<dyn LocalTarget<M, R>>),
    Remote(Arc<Outbox>),
    Connection(TransportClient),
}

struct Inner<M, R: RpcMessage> {
    name: Arc<str>,
    address: Option<RpcAddress>,
    route: Route<M, R>,
    env: Arc<EnvInner>,
}

/// A reference to endpoint `name`, taking messages `M` and answering asks with `R`.
/// Cheap to clone; `Send + Sync`.
pub struct RpcEndpointRef<M: RpcMessage, R: RpcMessage> {
    inner: Arc<Inner<M, R>>,
    _types: PhantomData<fn(M) -> R>,
}

impl<M: RpcMessage, R: RpcMessage> Clone for RpcEndpointRef<M, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _types: PhantomData,
        }
    }
}

impl<M: RpcMessage, R: RpcMessage> std::fmt::Debug for RpcEndpointRef<M, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let route = match &self.inner.route {
            Route::Local(_) => "local",
            Route::Remote(_) => "remote",
            Route::Connection(_) => "connection",
        };
        f.debug_struct("RpcEndpointRef")
            .field("name", &self.inner.name)
            .field("address", &self.inner.address)
            .field("route", &route)
            .finish()
    }
}

impl<M: RpcMessage, R: RpcMessage> RpcEndpointRef<M, R> {
    fn make(env: &Arc<EnvInner>, name: &str, address: Option<RpcAddress>, route: Route<M, R>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                address,
                route,
                env: env.clone(),
            }),
            _types: PhantomData,
        }
    }

    pub(crate) fn local(env: &Arc<EnvInner>, name: &str, target: Arc<dyn LocalTarget<M, R>>) -> Self {
        Self::make(env, name, env.address.clone(), Route::Local(target))
    }

    pub(crate) fn remote(env: &Arc<EnvInner>, name: &str, outbox: Arc<Outbox>) -> Self {
        let address = Some(outbox.address().clone());
        Self::make(env, name, address, Route::Remote(outbox))
    }

    pub(crate) fn over_connection(
        env: &Arc<EnvInner>,
        name: &str,
        conn: TransportClient,
        address: Option<RpcAddress>,
    ) -> Self {
        Self::make(env, name, address, Route::Connection(conn))
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address of the RpcEnv the endpoint lives in; `None` for a
    /// client-mode RpcEnv reached over its connection, or a local endpoint of a client-mode env.
    pub fn address(&self) -> Option<&RpcAddress> {
        self.inner.address.as_ref()
    }

    /// Whether the endpoint lives in this process's RpcEnv (messages are not serialized).
    pub fn is_local(&self) -> bool {
        matches!(self.inner.route, Route::Local(_))
    }

    fn sender(&self) -> RpcSender {
        RpcSender {
            address: self.inner.env.address.clone(),
            connection: None,
            env: Arc::downgrade(&self.inner.env),
        }
    }

    fn encode(&self, msg: &M) -> Result<Bytes, RpcError> {
        envelope::encode(self.inner.env.address.as_ref(), &self.inner.name, msg)
    }

    /// Sends a one-way message (Spark's `send`): handled by the endpoint's
    /// `receive`. Returns once the message is queued.
    ///
    /// # Errors
    /// [`RpcError::EnvStopped`]; [`RpcError::EndpointStopped`] for a stopped
    /// local endpoint; [`RpcError::Serialize`]; a transport error when the
    /// connection of a connection route is closed. A remote message whose
    /// destination turns out unreachable is logged, as Spark does.
    ///
    /// # Delivery
    /// Once, and in the order this RpcEnv sent them, across connection drops
    /// too, while the receiving RpcEnv lives (Spark's `send` is at most once,
    /// in order per connection). The outbox keeps each message until the
    /// receiver acknowledges it ([`ConnectionAck`](crate::ConnectionAck)) and
    /// resends the unacknowledged ones first on its next connection; the
    /// receiver drops the ones it had handled, and does not read the new
    /// connection until the old one has closed and all it delivered was
    /// dispatched ([`ConnectionEpoch`](crate::ConnectionEpoch)). If
    /// reconnecting fails, the unacknowledged messages are dropped with a
    /// `warn` naming how many; the caller is not told. A receiver that
    /// restarted handles resent messages again. Use [`ask`](Self::ask) where
    /// the caller must know.
    pub fn send(&self, msg: M) -> Result<(), RpcError> {
        self.inner.env.check_running()?;
        match &self.inner.route {
            Route::Local(target) => target.post(InboxMessage::OneWay {
                content: Content::Local(msg),
                sender: self.sender(),
            }),
            Route::Remote(outbox) => {
                outbox.send(OutboxMessage::OneWay(self.encode(&msg)?));
                Ok(())
            }
            Route::Connection(conn) => conn
                .send_one_way(self.encode(&msg)?)
                .map_err(RpcError::from_transport),
        }
    }

    /// Asks with the RpcEnv's default timeout (`ask_timeout_ms`); see [`ask_with_timeout`](Self::ask_with_timeout).
    pub fn ask(&self, msg: M) -> AskFuture<R> {
        self.ask_with_timeout(msg, self.inner.env.ask_timeout())
    }

    /// Asks: the endpoint's `receive_and_reply` answers (Spark's `ask`). The
    /// future resolves to the reply, or fails with [`RpcError::AskTimeout`]
    /// after `timeout`, [`RpcError::EndpointNotFound`] when the RpcEnv asked
    /// has no endpoint of this name (as for a local reference),
    /// [`RpcError::TypeMismatch`] when its endpoint takes messages of another type than `M`,
    /// [`RpcError::EndpointStopped`] when the endpoint stops (or its RpcEnv
    /// shuts down) before answering, [`RpcError::NoReply`] when it drops the
    /// call without answering, [`RpcError::RemoteFailure`], [`RpcError::ConnectionLost`]
    /// at once when the connection drops, or the errors of [`send`](Self::send).
    ///
    /// The future's state comes from the calling thread's recycler, as
    /// [`ask_with`](Self::ask_with)'s does: once an answered ask's future is
    /// dropped, the next ask for an `R` from this thread reuses it, so an
    /// `ask_sync` of a reply type without heap data allocates nothing once warm.
    pub fn ask_with_timeout(&self, msg: M, timeout: Duration) -> AskFuture<R> {
        if let Err(e) = self.inner.env.check_running() {
            return AskFuture::failed(e);
        }
        let (completer, future) = pending_ask::<R>(AskOrigin {
            endpoint: self.inner.name.clone(),
            timeout,
            errors: self.inner.clone(),
        });
        completer.arm_timeout(&self.inner.env.timeouts, Instant::now() + timeout);
        self.route_ask(msg, completer.as_local(), completer.listener());
        future
    }

    /// Asks and blocks the calling thread for the answer (Spark's `askSync`).
    /// Do not call from an endpoint's handler for an endpoint of the same
    /// thread-safe loop, nor from a transport event-loop thread.
    ///
    /// # Errors
    /// As [`ask_with_timeout`](Self::ask_with_timeout).
    pub fn ask_sync(&self, msg: M) -> Result<R, RpcError> {
        self.ask(msg).wait()
    }

    /// Asks, and calls `on_reply` once with the answer: a remote reply as
    /// [`Msg::Remote`], validated and read in place in the receive buffer
    /// (never deserialized), a local one as [`Msg::Local`]; or the error, as
    /// for [`ask`](Self::ask), after the env's ask timeout at the latest.
    ///
    /// The cheapest ask there is: no heap allocation once warm. The callback
    /// and the ask's state share one `Arc`, taken from the calling thread's
    /// recycler (Netty's `Recycler`): an answered ask's allocation is reused
    /// by the next ask from the same thread and call site (the closure's
    /// type), with up to 256 per thread and call site in flight before more
    /// are allocated. The recycler keeps them, answered and holding nothing
    /// of the asker's, until the thread exits: per thread and call site, as
    /// many as were ever in flight at once from it (256 at most), each the
    /// size of the closure (what it captures) plus at most 128 bytes. The
    /// message is serialized into a shared per-thread buffer. `ask` and
    /// `ask_sync` recycle their promise the same way (per thread and reply
    /// type), but deserialize the reply into an owned `R` (which allocates if
    /// `R` holds heap data), and `ask(..).on_complete(..)` boxes its callback.
    /// `on_reply` runs on the thread that answers: the connection's event-loop
    /// thread for a remote reply, the endpoint's MessageLoop thread for a local
    /// one, the timer thread on a timeout, or the calling thread if the ask
    /// fails at once. It must not block. An ask that times out first removes
    /// its request from the connection's outstanding RPCs (Spark's
    /// `removeRpcRequest` on timeout), so a late answer is dropped and the
    /// request no longer counts against `max_outstanding_rpcs_per_connection`;
    /// `ask` and `ask_sync` do the same.
    ///
    /// # Errors
    /// Given to `on_reply`: as [`ask_with_timeout`](Self::ask_with_timeout).
    pub fn ask_with<F>(&self, msg: M, on_reply: F)
    where
        F: FnOnce(Result<Msg<'_, R>, RpcError>) + Send + 'static,
    {
        if let Err(e) = self.inner.env.check_running() {
            on_reply(Err(e));
            return;
        }
        let timeout = self.inner.env.ask_timeout();
        let ask = CallbackAsk::new(
            AskOrigin {
                endpoint: self.inner.name.clone(),
                timeout,
                errors: self.inner.clone(),
            },
            on_reply,
        );
        ask.arm_timeout(&self.inner.env.timeouts, Instant::now() + timeout);
        self.route_ask(msg, ask.clone(), ask);
    }

    /// Sends an ask by this reference's route; `local` takes a local endpoint's
    /// reply, `listener` a remote one, and either the error if it cannot be sent.
    fn route_ask(&self, msg: M, local: Arc<dyn Complete<R>>, listener: Arc<dyn RpcResponseListener>) {
        match &self.inner.route {
            Route::Local(target) => {
                let ctx = RpcCallContext::new(
                    ReplyTo::Local(local.clone()),
                    self.sender(),
                    self.inner.name.clone(),
                );
                if let Err(e) = target.post(InboxMessage::Rpc {
                    content: Content::Local(msg),
                    ctx,
                }) {
                    local.complete(Err(e));
                }
            }
            Route::Remote(outbox) => match self.encode(&msg) {
                Ok(body) => outbox.send(OutboxMessage::Rpc(body, ResponseHandler::Listener(listener))),
                Err(e) => drop(local.complete(Err(e))),
            },
            Route::Connection(conn) => match self.encode(&msg) {
                Ok(body) => {
                    if let Err((e, handler)) = conn.send_rpc_with(body, ResponseHandler::Listener(listener)) {
                        handler.call(-1, Err(e));
                    }
                }
                Err(e) => drop(local.complete(Err(e))),
            },
        }
    }
}

impl<M: RpcMessage, R: RpcMessage> AskErrors for Inner<M, R> {
    fn transport_error(&self, error: TransportError) -> RpcError {
        if self.env.is_stopped() {
            return RpcError::EnvStopped;
        }
        let error = match &self.route {
            Route::Remote(outbox) => connect_error(outbox.address(), error),
            _ => RpcError::from_transport(error),
        };
        match error {
            // The remote inbox refused a message of another type than its endpoint's
            // (`InboxHandle::post_remote`): the variant a local reference gets.
            RpcError::RemoteFailure { message } if is_other_type_refusal(&message, &self.name) => {
                RpcError::TypeMismatch {
                    name: self.name.to_string(),
                    type_name: std::any::type_name::<M>(),
                }
            }
            other => other,
        }
    }
}

/// How a remote RpcEnv's refusal of a message of another type ends.
pub(crate) const OTHER_TYPE_SUFFIX: &str = "and the message is of another type";

/// Whether `message` is exactly the RpcFailure text with which a remote
/// RpcEnv refuses a message of another type than endpoint `name`'s
/// (`InboxHandle::post_remote`: "invalid message for T: endpoint `name`
/// takes T and the message is of another type"), rather than an endpoint's
/// own failure text that merely ends alike. Type names hold no backtick, so
/// the endpoint's part is found unambiguously.
fn is_other_type_refusal(message: &str, name: &str) -> bool {
    let Some(types) = message
        .strip_prefix("invalid message for ")
        .and_then(|rest| rest.strip_suffix(OTHER_TYPE_SUFFIX))
        .and_then(|rest| rest.strip_suffix(' '))
    else {
        return false;
    };
    types
        .split_once(&format!(": endpoint `{name}` takes "))
        .is_some_and(|(expected, named)| expected == named)
}

//! `RpcCallContext` (how an endpoint answers an ask) and `RpcSender` (who sent a message).

use std::cell::Cell;
use std::fmt;
use std::sync::{Arc, Weak};

use transport::TransportClient;

use crate::address::RpcAddress;
use crate::encode_buf;
use crate::endpoint_ref::RpcEndpointRef;
use crate::env::EnvInner;
use crate::error::RpcError;
use crate::message::RpcMessage;
use crate::promise::Complete;

/// Who sent a message: the sender RpcEnv's address (if it listens) and the
/// connection the message came on (if remote).
#[derive(Clone)]
pub struct RpcSender {
    pub(crate) address: Option<RpcAddress>,
    pub(crate) connection: Option<TransportClient>,
    pub(crate) env: Weak<EnvInner>,
}

impl RpcSender {
    /// The sender RpcEnv's address; `None` for a client-mode RpcEnv.
    pub fn address(&self) -> Option<&RpcAddress> {
        self.address.as_ref()
    }

    /// Whether the message came from another process.
    pub fn is_remote(&self) -> bool {
        self.connection.is_some()
    }

    /// A reference to endpoint `name` in the sender's RpcEnv. For a remote
    /// sender it goes over the very connection the message came on, so it
    /// reaches even a client-mode RpcEnv that has no address of its own
    /// (Spark's reverse `TransportClient`). Its existence is not checked.
    ///
    /// # Errors
    /// [`RpcError::EnvStopped`] if this RpcEnv is gone; [`RpcError::EndpointNotFound`]
    /// or [`RpcError::TypeMismatch`] for a local sender's missing or differently typed endpoint.
    pub fn endpoint_ref<M: RpcMessage, R: RpcMessage>(
        &self,
        name: &str,
    ) -> Result<RpcEndpointRef<M, R>, RpcError> {
        let env = self.env.upgrade().ok_or(RpcError::EnvStopped)?;
        match &self.connection {
            Some(conn) => Ok(RpcEndpointRef::over_connection(
                &env,
                name,
                conn.clone(),
                self.address.clone(),
            )),
            None => env.local_ref(name),
        }
    }
}

impl fmt::Display for RpcSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.address, &self.connection) {
            (Some(a), _) => write!(f, "{a}"),
            (None, Some(c)) => write!(f, "client {}", c.peer_addr()),
            (None, None) => f.write_str("a local client"),
        }
    }
}

impl fmt::Debug for RpcSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RpcSender({self})")
    }
}

thread_local! {
    /// Set while this thread drops a stopped endpoint ([`drop_stopped_endpoint`]).
    static DROPPING_STOPPED_ENDPOINT: Cell<bool> = const { Cell::new(false) };
}

/// Drops `endpoint` (named `name`), whose `on_stop` has run: the contexts of
/// the asks it still held fail with [`RpcError::EndpointStopped`] rather than
/// [`RpcError::NoReply`], since it was stopped, not careless. A panic while it
/// drops (its own `Drop`, or a local asker's `ask_with` callback that its
/// failing asks run) is logged at `error` and goes no further: the thread is
/// a MessageLoop thread that other endpoints share, and it is no longer
/// taken to be dropping a stopped endpoint afterwards.
pub(crate) fn drop_stopped_endpoint<E>(endpoint: E, name: &str) {
    /// Clears the flag however the drop ends.
    struct Dropped;
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = DROPPING_STOPPED_ENDPOINT.try_with(|f| f.set(false));
        }
    }
    DROPPING_STOPPED_ENDPOINT.with(|f| f.set(true));
    let _dropped = Dropped;
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(endpoint)));
    if dropped.is_err() {
        tracing::error!(
            endpoint = name,
            "a stopped endpoint panicked as it was dropped (its Drop, or an asker's callback \
             failing a held ask); the MessageLoop goes on (the panic is a bug in that code)"
        );
    }
}

/// Where an ask's answer goes.
pub(crate) enum ReplyTo<R> {
    /// A local asker: the value itself, never serialized.
    Local(Arc<dyn Complete<R>>),
    /// A remote asker: an RpcResponse or RpcFailure on its connection.
    Remote {
        client: TransportClient,
        request_id: i64,
    },
}

/// The handle to answer one ask (Spark's `RpcCallContext`). Answer once, with
/// [`reply`](Self::reply) or [`send_failure`](Self::send_failure), from any
/// thread; dropping it unanswered fails the ask with [`RpcError::NoReply`], or
/// with [`RpcError::EndpointStopped`] when it goes because the endpoint holding
/// it was stopped (`RpcEnv::stop`) or its RpcEnv shut down. A remote asker
/// gets the same variants.
pub struct RpcCallContext<R: RpcMessage> {
    reply_to: Option<ReplyTo<R>>,
    sender: RpcSender,
    endpoint: Arc<str>,
}

impl<R: RpcMessage> fmt::Debug for RpcCallContext<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcCallContext")
            .field("endpoint", &self.endpoint)
            .field("sender", &self.sender)
            .finish()
    }
}

impl<R: RpcMessage> RpcCallContext<R> {
    pub(crate) fn new(reply_to: ReplyTo<R>, sender: RpcSender, endpoint: Arc<str>) -> Self {
        Self {
            reply_to: Some(reply_to),
            sender,
            endpoint,
        }
    }

    /// Who asked.
    pub fn sender(&self) -> &RpcSender {
        &self.sender
    }

    /// The sender RpcEnv's address (Spark's `senderAddress`); `None` for a client-mode sender.
    pub fn sender_address(&self) -> Option<&RpcAddress> {
        self.sender.address()
    }

    /// Answers with `reply`: handed over as is to a local asker, serialized
    /// into an RpcResponse for a remote one. Delivery failures (the asker's
    /// connection is gone) are logged; the asker sees them as a lost connection.
    pub fn reply(mut self, reply: R) {
        match self.reply_to.take() {
            Some(ReplyTo::Local(c)) => {
                c.complete(Ok(reply));
            }
            Some(ReplyTo::Remote { client, request_id }) => {
                let size_hint = std::mem::size_of::<R::Archived>() + 64;
                let sent = match encode_buf::encode_with(size_hint, |out| reply.encode(out)) {
                    Ok(bytes) => client.send_response(request_id, bytes),
                    Err(e) => client.send_failure(request_id, &e.to_string()),
                };
                if let Err(e) = sent {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "could not deliver a reply");
                }
            }
            None => {}
        }
    }

    /// Fails the ask: the asker gets [`RpcError::RemoteFailure`] carrying `error`.
    pub fn send_failure(mut self, error: impl fmt::Display) {
        self.fail(error.to_string());
    }

    fn fail(&mut self, message: String) {
        match self.reply_to.take() {
            Some(ReplyTo::Local(c)) => {
                c.complete(Err(RpcError::RemoteFailure { message }));
            }
            Some(ReplyTo::Remote { client, request_id }) => {
                if let Err(e) = client.send_failure(request_id, &message) {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "could not deliver a failure");
                }
            }
            None => {}
        }
    }

    /// Drops the context without answering: for an ask the caller answers
    /// itself because the inbox refused it.
    pub(crate) fn disarm(mut self) {
        self.reply_to = None;
    }

    /// Fails the ask with a typed error (used by the Inbox for invalid messages and panics).
    pub(crate) fn fail_with(mut self, error: RpcError) {
        match self.reply_to.take() {
            Some(ReplyTo::Local(c)) => {
                c.complete(Err(error));
            }
            Some(other) => {
                self.reply_to = Some(other);
                self.fail(error.to_string());
            }
            None => {}
        }
    }
}

impl<R: RpcMessage> Drop for RpcCallContext<R> {
    fn drop(&mut self) {
        if self.reply_to.is_some() {
            let error = if std::thread::panicking() {
                RpcError::EndpointPanicked {
                    name: self.endpoint.to_string(),
                    message: "the handler panicked while processing this ask".into(),
                }
            } else if DROPPING_STOPPED_ENDPOINT.with(Cell::get)
                || self.sender.env.upgrade().is_none_or(|env| env.is_stopped())
            {
                RpcError::EndpointStopped {
                    name: self.endpoint.to_string(),
                }
            } else {
                RpcError::NoReply {
                    name: self.endpoint.to_string(),
                }
            };
            match self.reply_to.take() {
                Some(ReplyTo::Local(c)) => {
                    c.complete(Err(error));
                }
                Some(other) => {
                    self.reply_to = Some(other);
                    self.fail(error.to_string());
                }
                None => {}
            }
        }
    }
}

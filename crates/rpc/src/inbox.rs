//! `Inbox`: the queue of one endpoint and the rules for processing it
//! (Spark's `Inbox`): `OnStart` first, `OnStop` last, one message at a time
//! for a thread-safe endpoint (so messages from one sender are handled in the
//! order sent), several at once for a concurrent one.
//!
//! A remote message stays as the `Bytes` slice of the receive buffer until the
//! `MessageLoop` thread processes it: there it is validated with bytecheck and
//! handed to the endpoint as [`Msg::Remote`], a reference into that buffer.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

pub mod state;

use bytes::Bytes;
use transport::TransportClient;

use crate::address::RpcAddress;
use crate::context::{ReplyTo, RpcCallContext, RpcSender};
use crate::endpoint::RpcEndpoint;
use crate::envelope::Envelope;
use crate::error::RpcError;
use crate::message::{Msg, RpcMessage, type_fingerprint};
use crate::message_loop::{LoopItem, LoopSender};
use state::{MessageKind, Queued, Refused, State};

/// A message's content: the value (local) or its archive in the receive buffer (remote).
pub(crate) enum Content<M> {
    Local(M),
    Remote(Bytes),
}

/// Network events posted to every endpoint (Spark's `RemoteProcessConnected` & co).
#[derive(Debug, Clone)]
pub(crate) enum SystemEvent {
    Connected(RpcAddress),
    Disconnected(RpcAddress),
    NetworkError(RpcError, RpcAddress),
}

/// What an inbox holds (Spark's `InboxMessage`).
pub(crate) enum InboxMessage<M, R: RpcMessage> {
    OnStart,
    OnStop,
    OneWay {
        content: Content<M>,
        sender: RpcSender,
    },
    Rpc {
        content: Content<M>,
        ctx: RpcCallContext<R>,
    },
    Event(SystemEvent),
}

impl<M, R: RpcMessage> Queued for InboxMessage<M, R> {
    fn kind(&self) -> MessageKind {
        match self {
            Self::OnStart => MessageKind::Start,
            Self::OnStop => MessageKind::Stop,
            Self::OneWay { .. } | Self::Rpc { .. } => MessageKind::Message,
            Self::Event(_) => MessageKind::Event,
        }
    }
}

/// Typed posting into an endpoint's inbox, used by local references.
pub(crate) trait LocalTarget<M, R: RpcMessage>: Send + Sync {
    /// Posts a message; fails once the endpoint is stopped.
    fn post(&self, msg: InboxMessage<M, R>) -> Result<(), RpcError>;
    /// The endpoint's name.
    fn name(&self) -> &str;
}

/// The type-erased side of an inbox the Dispatcher and MessageLoops use.
pub(crate) trait InboxHandle: Send + Sync {
    /// Posts a remote message (an ask when `reply` is given).
    fn post_remote(
        &self,
        envelope: Envelope,
        reply: Option<(TransportClient, i64)>,
        sender: RpcSender,
    ) -> Result<(), RpcError>;
    fn post_event(&self, event: SystemEvent);
    /// Processes queued messages (Spark's `Inbox.process`).
    fn process(&self);
    /// Queues `OnStop`; false if already stopped.
    fn stop(&self) -> bool;
}

/// One endpoint's inbox.
pub(crate) struct Inbox<E: RpcEndpoint> {
    name: Arc<str>,
    state: Mutex<State<InboxMessage<E::Message, E::Reply>>>,
    endpoint: Mutex<E>,
    /// `Some` for a concurrent endpoint: how each processing thread gets its own copy.
    cloner: Option<fn(&E) -> E>,
    scheduler: LoopSender,
    /// A dedicated loop is told to stop once `OnStop` has run.
    dedicated: bool,
    /// Messages the queue may hold before a send or ask is refused.
    capacity: usize,
    me: Weak<Inbox<E>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<E: RpcEndpoint> Inbox<E> {
    /// A new inbox with `OnStart` queued and scheduled on `scheduler`.
    pub(crate) fn start(
        name: Arc<str>,
        endpoint: E,
        cloner: Option<fn(&E) -> E>,
        scheduler: LoopSender,
        dedicated: bool,
        capacity: usize,
    ) -> Arc<Self> {
        let inbox = Arc::new_cyclic(|me| Self {
            name,
            state: Mutex::new(State::new(InboxMessage::OnStart)),
            endpoint: Mutex::new(endpoint),
            cloner,
            scheduler,
            dedicated,
            capacity,
            me: me.clone(),
        });
        inbox.schedule();
        inbox
    }

    fn schedule(&self) {
        if let Some(me) = self.me.upgrade() {
            // The loop is gone only after shutdown, when nothing is processed any more.
            let _ = self.scheduler.send(LoopItem::Inbox(me));
        }
    }

    fn enqueue(&self, msg: InboxMessage<E::Message, E::Reply>) -> Result<(), RpcError> {
        let (refused, msg) = match state::enqueue(&self.state, msg, self.capacity, || self.schedule()) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        // The caller answers the ask with the error; the context must not answer it first.
        if let InboxMessage::Rpc { ctx, .. } = msg {
            ctx.disarm();
        }
        Err(match refused {
            Refused::Stopped => RpcError::EndpointStopped {
                name: self.name.to_string(),
            },
            Refused::Full => RpcError::InboxFull {
                endpoint: self.name.to_string(),
                capacity: self.capacity,
            },
        })
    }

    fn handle(&self, msg: InboxMessage<E::Message, E::Reply>, own: &mut Option<E>) {
        let mut guard;
        let endpoint: &mut E = match own {
            Some(e) => e,
            None => {
                guard = lock(&self.endpoint);
                &mut guard
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| deliver(endpoint, msg)));
        match result {
            Ok(Some(error)) => endpoint.on_error(&error),
            Ok(None) => {}
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::error!(endpoint = %self.name, %message, "endpoint panicked; it keeps serving");
                let error = RpcError::EndpointPanicked {
                    name: self.name.to_string(),
                    message,
                };
                let _ = catch_unwind(AssertUnwindSafe(|| endpoint.on_error(&error)));
            }
        }
    }
}

/// Calls the endpoint method for `msg`; returns an error for `on_error`, if any.
fn deliver<E: RpcEndpoint>(e: &mut E, msg: InboxMessage<E::Message, E::Reply>) -> Option<RpcError> {
    match msg {
        InboxMessage::OnStart => e.on_start(),
        InboxMessage::OnStop => e.on_stop(),
        InboxMessage::OneWay { content, sender } => match content {
            Content::Local(m) => e.receive(Msg::Local(m), &sender),
            Content::Remote(bytes) => match E::Message::access(&bytes) {
                Ok(archived) => e.receive(Msg::Remote(archived), &sender),
                Err(error) => return Some(error),
            },
        },
        InboxMessage::Rpc { content, ctx } => match content {
            Content::Local(m) => e.receive_and_reply(Msg::Local(m), ctx),
            Content::Remote(bytes) => match E::Message::access(&bytes) {
                Ok(archived) => e.receive_and_reply(Msg::Remote(archived), ctx),
                Err(error) => {
                    ctx.fail_with(error.clone());
                    return Some(error);
                }
            },
        },
        InboxMessage::Event(SystemEvent::Connected(a)) => e.on_connected(&a),
        InboxMessage::Event(SystemEvent::Disconnected(a)) => e.on_disconnected(&a),
        InboxMessage::Event(SystemEvent::NetworkError(err, a)) => e.on_network_error(&err, &a),
    }
    None
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into())
}

impl<E: RpcEndpoint> LocalTarget<E::Message, E::Reply> for Inbox<E> {
    fn post(&self, msg: InboxMessage<E::Message, E::Reply>) -> Result<(), RpcError> {
        self.enqueue(msg)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl<E: RpcEndpoint> InboxHandle for Inbox<E> {
    fn post_remote(
        &self,
        envelope: Envelope,
        reply: Option<(TransportClient, i64)>,
        sender: RpcSender,
    ) -> Result<(), RpcError> {
        if envelope.fingerprint != type_fingerprint::<E::Message>() {
            return Err(RpcError::InvalidMessage {
                type_name: std::any::type_name::<E::Message>(),
                reason: format!(
                    "endpoint `{}` takes {} and the message is of another type",
                    self.name,
                    std::any::type_name::<E::Message>()
                ),
            });
        }
        let content = Content::Remote(envelope.payload);
        self.enqueue(match reply {
            Some((client, request_id)) => InboxMessage::Rpc {
                content,
                ctx: RpcCallContext::new(ReplyTo::Remote { client, request_id }, sender, self.name.clone()),
            },
            None => InboxMessage::OneWay { content, sender },
        })
    }

    fn post_event(&self, event: SystemEvent) {
        // A stopped endpoint takes no more events; nothing is lost that anyone waits for.
        let _ = self.enqueue(InboxMessage::Event(event));
    }

    fn process(&self) {
        let own = |concurrent| match (concurrent, self.cloner) {
            (true, Some(clone)) => Some(clone(&lock(&self.endpoint))),
            _ => None,
        };
        let stopped = state::process(&self.state, self.cloner.is_some(), own, |own, msg| {
            self.handle(msg, own)
        });
        if stopped && self.dedicated {
            let _ = self.scheduler.send(LoopItem::PoisonPill);
        }
    }

    fn stop(&self) -> bool {
        state::stop(&self.state, InboxMessage::OnStop, || self.schedule())
    }
}

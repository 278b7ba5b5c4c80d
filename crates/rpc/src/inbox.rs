//! `Inbox`: the queue of one endpoint and the rules for processing it
//! (Spark's `Inbox`): `OnStart` first, `OnStop` last, one message at a time
//! for a thread-safe endpoint (so messages from one sender are handled in the
//! order sent), several at once for a concurrent one.
//!
//! A remote message stays as the `Bytes` slice of the receive buffer until the
//! `MessageLoop` thread processes it: there it is validated with bytecheck and
//! handed to the endpoint as [`Msg::Remote`], a reference into that buffer.
//!
//! A full inbox (see [`InboxQueue`]) refuses a message or holds its sender
//! back, as its [`InboxFullPolicy`] says: a local sender waits on the inbox's
//! condvar, a connection stops being read.
//!
//! The scheduling rules themselves (when to queue the inbox on its loop, who
//! processes what, stop) live in [`state`], generic over the lock, so that
//! the loom model check (`tests/loom_inbox.rs`) checks the code that runs here.

pub mod state;

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use bytes::Bytes;
use transport::TransportClient;

use crate::address::RpcAddress;
use crate::context::{ReplyTo, RpcCallContext, RpcSender};
use crate::endpoint::RpcEndpoint;
use crate::envelope::Envelope;
use crate::error::RpcError;
use crate::inbox_limits::{InboxFullPolicy, InboxLimits, InboxStats};
use crate::inbox_queue::{InboxQueue, ProcessingMark, is_processing};
use crate::message::{Msg, RpcMessage, type_fingerprint};
use crate::message_loop::{LoopItem, LoopSender};
use state::{MessageKind, Queue, Queued, Refused};

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
            InboxMessage::OnStart => MessageKind::Start,
            InboxMessage::OnStop => MessageKind::Stop,
            InboxMessage::OneWay { .. } | InboxMessage::Rpc { .. } => MessageKind::Message,
            InboxMessage::Event(_) => MessageKind::Event,
        }
    }
}

impl<T: Queued> Queue for InboxQueue<T> {
    type Item = T;
    fn push_back(&mut self, item: T) {
        InboxQueue::push_back(self, item);
    }
    fn pop_front(&mut self) -> Option<T> {
        InboxQueue::pop_front(self)
    }
    fn is_full(&self) -> bool {
        InboxQueue::is_full(self)
    }
}

/// An inbox's queue and scheduling flags (see [`state`]).
type State<M, R> = state::State<InboxQueue<InboxMessage<M, R>>>;

/// Typed posting into an endpoint's inbox, used by local references.
pub(crate) trait LocalTarget<M, R: RpcMessage>: Send + Sync {
    /// Posts a message; fails once the endpoint is stopped.
    fn post(&self, msg: InboxMessage<M, R>) -> Result<(), RpcError>;
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
    /// A snapshot of the queue and its bounds.
    fn stats(&self) -> InboxStats;
}

/// The locked state of an inbox of endpoint type `E`.
type StateGuard<'a, E> = MutexGuard<'a, State<<E as RpcEndpoint>::Message, <E as RpcEndpoint>::Reply>>;

/// Where a message comes from, which decides how a full inbox holds it back.
#[derive(Clone, Copy)]
enum Origin {
    /// A local reference, on the sender's thread: it may wait.
    Local,
    /// The network, on an event-loop thread that must not block: the
    /// connection it came on stops being read instead.
    Network,
}

/// The connection a remote message came on.
fn connection_of<M, R: RpcMessage>(msg: &InboxMessage<M, R>) -> Option<&TransportClient> {
    match msg {
        InboxMessage::OneWay { sender, .. } => sender.connection.as_ref(),
        InboxMessage::Rpc { ctx, .. } => ctx.sender().connection.as_ref(),
        _ => None,
    }
}

/// Where an inbox is processed.
pub(crate) struct Placement {
    /// The receivers queue of its MessageLoop.
    pub(crate) scheduler: LoopSender,
    /// Threads serving that queue.
    pub(crate) parallelism: usize,
    /// The loop is the endpoint's own (stopped with it).
    pub(crate) dedicated: bool,
    /// Processed by the posting thread instead.
    pub(crate) inline: bool,
}

/// One endpoint's inbox.
pub(crate) struct Inbox<E: RpcEndpoint> {
    name: Arc<str>,
    state: Mutex<State<E::Message, E::Reply>>,
    /// The endpoint; taken out and dropped once `OnStop` has run, so that what
    /// it holds (unanswered asks' contexts among it) goes at once, even while
    /// references to the inbox live on.
    endpoint: Mutex<Option<E>>,
    /// `Some` for a concurrent endpoint: how each processing thread gets its own copy.
    cloner: Option<fn(&E) -> E>,
    scheduler: LoopSender,
    /// Threads serving `scheduler`: a concurrent endpoint is never queued more
    /// often than this minus the threads already processing it, so a burst of
    /// messages wakes at most that many threads instead of one per message.
    parallelism: usize,
    /// A dedicated loop is told to stop once `OnStop` has run.
    dedicated: bool,
    /// Processed by the thread that posts (see `RpcEnv::setup_inline_endpoint`),
    /// never queued on `scheduler`.
    inline: bool,
    /// Messages the queue may hold before a send or ask is refused or held back.
    limits: InboxLimits,
    /// Local senders waiting for room wait on this, with `state`.
    room: Arc<Condvar>,
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
        placement: Placement,
        limits: InboxLimits,
    ) -> Arc<Self> {
        let Placement {
            scheduler,
            parallelism,
            dedicated,
            inline,
        } = placement;
        let room = Arc::new(Condvar::new());
        let inbox = Arc::new_cyclic(|me| Self {
            name,
            state: Mutex::new(State::new(InboxQueue::new(
                VecDeque::from([InboxMessage::OnStart]),
                limits.capacity,
                room.clone(),
            ))),
            endpoint: Mutex::new(Some(endpoint)),
            cloner,
            scheduler,
            parallelism: parallelism.max(1),
            dedicated,
            inline,
            limits,
            room,
            me: me.clone(),
        });
        if !inline {
            // An inline inbox's OnStart is processed by the registering thread
            // once registration is done (`Dispatcher::register`).
            inbox.schedule();
        }
        inbox
    }

    fn schedule(&self) {
        if self.inline {
            // The posting thread processes the queue itself; a thread already
            // processing it (`scheduled`) takes this message after its current one.
            InboxHandle::process(self);
            return;
        }
        if let Some(me) = self.me.upgrade() {
            // The loop is gone only after shutdown, when nothing is processed any more.
            let _ = self.scheduler.send(LoopItem::Inbox(me));
        }
    }

    fn enqueue(&self, msg: InboxMessage<E::Message, E::Reply>, origin: Origin) -> Result<(), RpcError> {
        let when_full = |st, msg: &_| self.when_full(st, msg, origin);
        match state::enqueue(&self.state, msg, self.parallelism, when_full, || self.schedule()) {
            Ok(()) => Ok(()),
            Err((why, msg)) => {
                // The caller answers the ask with the error; the context must not answer it first.
                if let InboxMessage::Rpc { ctx, .. } = msg {
                    ctx.disarm();
                }
                Err(match why {
                    Refused::Full(error) => error,
                    Refused::Stopped => RpcError::EndpointStopped {
                        name: self.name.to_string(),
                    },
                })
            }
        }
    }

    /// The full-queue policy: holds back (pausing the connection, or waiting
    /// for room) or refuses `msg`, which arrived while the queue was full.
    fn when_full<'a>(
        &'a self,
        mut st: StateGuard<'a, E>,
        msg: &InboxMessage<E::Message, E::Reply>,
        origin: Origin,
    ) -> (StateGuard<'a, E>, Option<RpcError>) {
        match (self.limits.when_full, origin, connection_of(msg)) {
            (InboxFullPolicy::Wait, Origin::Network, Some(connection)) => {
                st.queue_mut().hold(connection.pause_reading());
                (st, None)
            }
            (InboxFullPolicy::Wait, Origin::Local, _) => {
                let (st, waited) = self.wait_for_room(st);
                (st, waited.err())
            }
            // Fail; or a network message with no connection to pause (none such today).
            _ => (
                st,
                Some(RpcError::InboxFull {
                    endpoint: self.name.to_string(),
                    capacity: self.limits.capacity,
                }),
            ),
        }
    }

    /// Blocks a local sender until the inbox is below capacity or stopped, for
    /// at most `wait_timeout`; fails at once on a thread running this inbox's
    /// own handler, which is the one that would have to empty it.
    fn wait_for_room<'a>(&'a self, mut st: StateGuard<'a, E>) -> (StateGuard<'a, E>, Result<(), RpcError>) {
        if is_processing(self.key()) {
            let error = RpcError::InboxFullInOwnHandler {
                endpoint: self.name.to_string(),
                capacity: self.limits.capacity,
            };
            return (st, Err(error));
        }
        let started = Instant::now();
        let deadline = started + self.limits.wait_timeout;
        st.queue_mut().waiting += 1;
        let result = loop {
            if st.is_stopped() || !st.queue().is_full() {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(RpcError::InboxFullAfterWaiting {
                    endpoint: self.name.to_string(),
                    capacity: self.limits.capacity,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            st = match self.room.wait_timeout(st, left) {
                Ok((st, _)) => st,
                Err(poisoned) => poisoned.into_inner().0,
            };
        };
        st.queue_mut().waiting -= 1;
        (st, result)
    }

    /// Identifies this inbox for [`ProcessingMark`]: its address, stable in its `Arc`.
    fn key(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// Delivers `msg`; returns whether the endpoint panicked.
    fn handle(&self, msg: InboxMessage<E::Message, E::Reply>, own: &mut Option<E>) -> bool {
        // A send from the handler to this same full inbox must not wait for itself.
        let _processing = ProcessingMark::enter(self.key());
        let mut guard;
        let endpoint: &mut E = match own {
            Some(e) => e,
            None => {
                guard = lock(&self.endpoint);
                match guard.as_mut() {
                    Some(e) => e,
                    // Dropped after `OnStop`, after which nothing is delivered.
                    None => return false,
                }
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| deliver(endpoint, msg)));
        match result {
            Ok(Some(error)) => {
                // Contained as the handler is: a peer's invalid message must
                // not end the (shared) MessageLoop thread through `on_error`.
                if catch_unwind(AssertUnwindSafe(|| endpoint.on_error(&error))).is_err() {
                    tracing::error!(endpoint = %self.name, %error, "on_error panicked; the endpoint keeps serving");
                }
                false
            }
            Ok(None) => false,
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::error!(endpoint = %self.name, %message, "endpoint panicked; it keeps serving");
                let error = RpcError::EndpointPanicked {
                    name: self.name.to_string(),
                    message,
                };
                let _ = catch_unwind(AssertUnwindSafe(|| endpoint.on_error(&error)));
                true
            }
        }
    }

    /// `on_start` panicked: the endpoint never started, so it stops now. Every
    /// message that was queued for it (`queued`, taken out by
    /// [`state::process`], which also refuses later ones at the door) is
    /// refused (an ask fails with [`RpcError::EndpointStopped`]), and
    /// `on_stop` runs; no other endpoint is affected.
    fn fail_start(&self, own: &mut Option<E>, queued: Vec<InboxMessage<E::Message, E::Reply>>) {
        tracing::error!(
            endpoint = %self.name,
            refused = queued.len(),
            "on_start panicked: the endpoint is stopped and the messages queued for it are refused"
        );
        for msg in queued {
            match msg {
                InboxMessage::Rpc { ctx, .. } => {
                    let error = RpcError::EndpointStopped {
                        name: self.name.to_string(),
                    };
                    // A local asker's callback runs here: contained, as the
                    // MessageLoop thread serves other endpoints too.
                    if catch_unwind(AssertUnwindSafe(|| ctx.fail_with(error))).is_err() {
                        tracing::error!(
                            endpoint = %self.name,
                            "an asker's callback panicked as its ask was refused; the MessageLoop goes on"
                        );
                    }
                }
                InboxMessage::OneWay { .. } => tracing::warn!(
                    endpoint = %self.name,
                    "a one-way message was dropped: its endpoint's on_start panicked"
                ),
                InboxMessage::OnStart | InboxMessage::OnStop | InboxMessage::Event(_) => {}
            }
        }
        self.handle(InboxMessage::OnStop, own);
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
        self.enqueue(msg, Origin::Local)
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
                    "endpoint `{}` takes {} {}",
                    self.name,
                    std::any::type_name::<E::Message>(),
                    crate::endpoint_ref::OTHER_TYPE_SUFFIX
                ),
            });
        }
        let content = Content::Remote(envelope.payload);
        let msg = match reply {
            Some((client, request_id)) => InboxMessage::Rpc {
                content,
                ctx: RpcCallContext::new(ReplyTo::Remote { client, request_id }, sender, self.name.clone()),
            },
            None => InboxMessage::OneWay { content, sender },
        };
        self.enqueue(msg, Origin::Network)
    }

    fn post_event(&self, event: SystemEvent) {
        // A stopped endpoint takes no more events; nothing is lost that anyone waits for.
        // Events are never held back, so the origin does not matter.
        let _ = self.enqueue(InboxMessage::Event(event), Origin::Network);
    }

    fn process(&self) {
        let ended = state::process(
            &self.state,
            self.cloner.is_some(),
            |concurrent| match (concurrent, self.cloner) {
                (true, Some(clone)) => lock(&self.endpoint).as_ref().map(clone),
                _ => None,
            },
            |own, msg| self.handle(msg, own),
            |own, queued| self.fail_start(own, queued),
        );
        if ended {
            // Dropped outside the lock: an unanswered ask's context answers
            // as it drops (`EndpointStopped`), and may run an asker's callback.
            let endpoint = lock(&self.endpoint).take();
            crate::context::drop_stopped_endpoint(endpoint, &self.name);
            if self.dedicated {
                let _ = self.scheduler.send(LoopItem::PoisonPill);
            }
        }
    }

    fn stop(&self) -> bool {
        state::stop(&self.state, InboxMessage::OnStop, || self.schedule())
    }

    fn stats(&self) -> InboxStats {
        lock(&self.state).queue().stats(self.limits.when_full)
    }
}

#[cfg(test)]
mod tests;

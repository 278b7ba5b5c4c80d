//! `Dispatcher`: routes messages to endpoint inboxes (Spark's `Dispatcher`).
//!
//! Endpoints live in a concurrent map by name. Posting a message puts it in
//! the endpoint's [`Inbox`](crate::inbox::Inbox); an idle inbox is then put on
//! its `MessageLoop`'s receivers queue, where a loop thread picks it up
//! (`postMessage` → `inbox.post` → `receivers.offer` in Spark).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use transport::TransportClient;

use crate::context::RpcSender;
use crate::endpoint::RpcEndpoint;
use crate::envelope::Envelope;
use crate::error::RpcError;
use crate::inbox::{Inbox, InboxHandle, LocalTarget, Placement, SystemEvent};
use crate::inbox_limits::{InboxLimits, InboxStats};
use crate::message::RpcMessage;
use crate::message_loop::MessageLoop;

/// How an endpoint is scheduled (Spark: `ThreadSafeRpcEndpoint`, `RpcEndpoint`, `IsolatedRpcEndpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheduling {
    ThreadSafe,
    Concurrent,
    Dedicated,
    /// On the posting thread (an event loop's, for a remote message): no MessageLoop hand-off.
    Inline,
}

struct Registered {
    inbox: Arc<dyn InboxHandle>,
    local: Box<dyn Any + Send + Sync>,
    dedicated: Option<Arc<MessageLoop>>,
}

/// The router from endpoint names to inboxes, and the shared MessageLoop.
pub(crate) struct Dispatcher {
    /// By name. Looked up for every remote message, so hashed with FxHash
    /// (about a tenth of SipHash's cost on short names): the keys are this
    /// RpcEnv's own endpoint names, so a peer choosing the names it looks up
    /// cannot make them collide.
    endpoints: RwLock<HashMap<Arc<str>, Registered, rustc_hash::FxBuildHasher>>,
    shared_loop: Arc<MessageLoop>,
    dedicated_loops: Mutex<Vec<Arc<MessageLoop>>>,
    stopped: AtomicBool,
    env_name: String,
}

impl Dispatcher {
    /// A dispatcher with a shared loop of `threads` threads.
    pub(crate) fn new(env_name: &str, threads: usize) -> std::io::Result<Self> {
        Ok(Self {
            endpoints: RwLock::new(HashMap::default()),
            shared_loop: MessageLoop::start(&format!("{env_name}-dispatcher"), threads)?,
            dedicated_loops: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            env_name: env_name.to_string(),
        })
    }

    /// Registers `endpoint` under `name`; its inbox starts with `OnStart` and
    /// is bounded by `limits` (Spark's `registerRpcEndpoint`). Returns the typed local target.
    pub(crate) fn register<E>(
        &self,
        name: &str,
        endpoint: E,
        scheduling: Scheduling,
        cloner: Option<fn(&E) -> E>,
        limits: InboxLimits,
    ) -> Result<Arc<dyn LocalTarget<E::Message, E::Reply>>, RpcError>
    where
        E: RpcEndpoint,
    {
        let mut map = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        if self.stopped.load(Ordering::Acquire) {
            return Err(RpcError::EnvStopped);
        }
        if map.contains_key(name) {
            return Err(RpcError::EndpointAlreadyExists { name: name.into() });
        }
        let (scheduler, parallelism, dedicated) = match scheduling {
            Scheduling::Dedicated => {
                let l = MessageLoop::start(&format!("{}-{name}", self.env_name), 1).map_err(|e| {
                    RpcError::RemoteFailure {
                        message: format!("cannot start a thread for endpoint `{name}`: {e}"),
                    }
                })?;
                self.dedicated_loops
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(l.clone());
                (l.sender(), 1, Some(l))
            }
            _ => (self.shared_loop.sender(), self.shared_loop.parallelism(), None),
        };
        let cloner = if scheduling == Scheduling::Concurrent {
            cloner
        } else {
            None
        };
        let name: Arc<str> = name.into();
        let inline = scheduling == Scheduling::Inline;
        let inbox = Inbox::start(
            name.clone(),
            endpoint,
            cloner,
            Placement {
                scheduler,
                parallelism,
                dedicated: dedicated.is_some(),
                inline,
            },
            limits,
        );
        let target: Arc<dyn LocalTarget<E::Message, E::Reply>> = inbox.clone();
        map.insert(
            name,
            Registered {
                inbox: inbox.clone(),
                local: Box::new(Some(target.clone())),
                dedicated,
            },
        );
        drop(map);
        if inline {
            // OnStart runs now, on the registering thread, with the map's lock
            // released (the endpoint may look up others from `on_start`).
            InboxHandle::process(inbox.as_ref());
        }
        Ok(target)
    }

    /// The typed local target of endpoint `name`, for a local reference.
    pub(crate) fn local_target<M: RpcMessage, R: RpcMessage>(
        &self,
        name: &str,
    ) -> Result<Arc<dyn LocalTarget<M, R>>, RpcError> {
        let map = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        let reg = map.get(name).ok_or_else(|| RpcError::EndpointNotFound {
            name: name.into(),
            address: "this RpcEnv".into(),
        })?;
        reg.local
            .downcast_ref::<Option<Arc<dyn LocalTarget<M, R>>>>()
            .and_then(Clone::clone)
            .ok_or_else(|| RpcError::TypeMismatch {
                name: name.into(),
                type_name: std::any::type_name::<M>(),
            })
    }

    /// A snapshot of endpoint `name`'s inbox; `None` if it is not registered.
    pub(crate) fn inbox_stats(&self, name: &str) -> Option<InboxStats> {
        self.inbox(name).map(|inbox| inbox.stats())
    }

    /// Whether an endpoint of that name is registered.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    fn inbox(&self, name: &str) -> Option<Arc<dyn InboxHandle>> {
        let map = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).map(|r| r.inbox.clone())
    }

    /// Posts a message that arrived from the network; an ask when `reply`
    /// is given (Spark's `postRemoteMessage` / `postOneWayMessage`).
    ///
    /// # Errors
    /// [`RpcError::EndpointNotFound`], [`RpcError::EndpointStopped`],
    /// [`RpcError::InvalidMessage`] for a message of another type.
    pub(crate) fn post_remote_message(
        &self,
        envelope: Envelope,
        reply: Option<(TransportClient, i64)>,
        sender: RpcSender,
        local_address: &str,
    ) -> Result<(), RpcError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(RpcError::EnvStopped);
        }
        let inbox = self
            .inbox(envelope.receiver())
            .ok_or_else(|| RpcError::EndpointNotFound {
                name: envelope.receiver().into(),
                address: local_address.into(),
            })?;
        inbox.post_remote(envelope, reply, sender)
    }

    /// Posts a network event to every endpoint (Spark's `postToAll`).
    pub(crate) fn post_to_all(&self, event: SystemEvent) {
        let inboxes: Vec<_> = {
            let map = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
            map.values().map(|r| r.inbox.clone()).collect()
        };
        for inbox in inboxes {
            inbox.post_event(event.clone());
        }
    }

    /// Unregisters endpoint `name` and queues its `OnStop`; false if it was not registered.
    pub(crate) fn stop_endpoint(&self, name: &str) -> bool {
        let reg = self
            .endpoints
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        match reg {
            Some(reg) => {
                reg.inbox.stop();
                drop(reg.dedicated);
                true
            }
            None => false,
        }
    }

    /// Stops every endpoint (each gets `OnStop` after what is queued before
    /// it), then the loops; returns once they have all run. Idempotent.
    pub(crate) fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let names: Vec<Arc<str>> = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            self.stop_endpoint(&name);
        }
        let dedicated = std::mem::take(&mut *self.dedicated_loops.lock().unwrap_or_else(|e| e.into_inner()));
        for l in dedicated {
            l.join();
        }
        self.shared_loop.stop();
    }
}

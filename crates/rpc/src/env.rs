//! `RpcEnv`: the RPC environment of one process (Spark's `RpcEnv` / `NettyRpcEnv`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use transport::{IoMode, Transport, TransportClientFactory, TransportServer};

use crate::address::RpcAddress;
use crate::backend::create_transport;
use crate::config::RpcEnvConfig;
use crate::dispatcher::{Dispatcher, Scheduling};
use crate::endpoint::RpcEndpoint;
use crate::endpoint_ref::RpcEndpointRef;
use crate::error::RpcError;
use crate::handler::RpcHandler;
use crate::handover::{CONNECTION_ACK_NAME, CONNECTION_EPOCH_NAME};
use crate::inbox_limits::{EndpointOptions, InboxFullPolicy, InboxLimits, InboxStats};
use crate::message::RpcMessage;
use crate::outbox::Outbox;
use crate::timeout::TimeoutScheduler;
use crate::verifier::{CheckExistence, RpcEndpointVerifier, VERIFIER_NAME};

/// State shared by an RpcEnv and every reference made from it.
pub(crate) struct EnvInner {
    pub(crate) config: RpcEnvConfig,
    pub(crate) address: Option<RpcAddress>,
    pub(crate) transport: Arc<dyn Transport>,
    server: Mutex<Option<Box<dyn TransportServer>>>,
    factory: Arc<TransportClientFactory>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    outboxes: Mutex<HashMap<RpcAddress, Arc<Outbox>>>,
    pub(crate) timeouts: Arc<TimeoutScheduler>,
    stopped: AtomicBool,
    terminated: Mutex<bool>,
    terminated_cond: Condvar,
}

impl EnvInner {
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn check_running(&self) -> Result<(), RpcError> {
        if self.is_stopped() {
            Err(RpcError::EnvStopped)
        } else {
            Ok(())
        }
    }

    pub(crate) fn ask_timeout(&self) -> Duration {
        self.config.ask_timeout()
    }

    /// The outbox of `address`, made on first use.
    fn outbox(&self, address: &RpcAddress) -> Arc<Outbox> {
        let mut map = self.outboxes.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(address.clone())
            // Each Outbox numbers its one-ways and counts its connections on
            // its own, so each is a sender of its own to the receiver: two
            // spellings of one server's address must not share an id.
            .or_insert_with(|| {
                Outbox::new(
                    address.clone(),
                    self.factory.clone(),
                    crate::handover::new_instance_id(),
                )
            })
            .clone()
    }

    /// A reference to local endpoint `name`.
    pub(crate) fn local_ref<M: RpcMessage, R: RpcMessage>(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<RpcEndpointRef<M, R>, RpcError> {
        let target = self.dispatcher.local_target::<M, R>(name).map_err(|e| match e {
            RpcError::EndpointNotFound { name, .. } => RpcError::EndpointNotFound {
                name,
                address: self.address_text(),
            },
            other => other,
        })?;
        Ok(RpcEndpointRef::local(self, name, target))
    }

    /// See [`RpcEnv::shutdown`].
    pub(crate) fn shutdown(&self) {
        let inner = self;
        if inner.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let outboxes: Vec<_> = inner
            .outboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, o)| o)
            .collect();
        for o in outboxes {
            o.stop();
        }
        inner.dispatcher.stop();
        if let Some(server) = inner.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
            server.close();
        }
        inner.factory.close();
        inner.transport.shutdown();
        inner.timeouts.stop();
        *inner.terminated.lock().unwrap_or_else(|e| e.into_inner()) = true;
        inner.terminated_cond.notify_all();
    }

    pub(crate) fn await_termination(&self) {
        let mut done = self.terminated.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self.terminated_cond.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn address_text(&self) -> String {
        self.address.as_ref().map_or_else(
            || format!("client-mode RpcEnv `{}`", self.config.name),
            |a| a.to_string(),
        )
    }
}

/// The RPC environment of a process: endpoints, their dispatcher, the
/// transport under them (chosen by `io_mode`), and references to remote endpoints.
///
/// Dropping it shuts it down.
pub struct RpcEnv {
    inner: Arc<EnvInner>,
}

impl std::fmt::Debug for RpcEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcEnv")
            .field("name", &self.inner.config.name)
            .field("address", &self.inner.address)
            .field("io_mode", &self.inner.transport.io_mode())
            .finish()
    }
}

impl RpcEnv {
    /// Creates an RpcEnv (Spark's `RpcEnv.create`): starts the transport of
    /// `config.transport.io_mode`, the dispatcher's MessageLoop threads, and,
    /// in server mode, listens on `config.bind_address` and registers the
    /// endpoint verifier.
    ///
    /// # Errors
    /// [`RpcError::Config`] for an invalid config ([`RpcEnvConfig::validate`]); [`RpcError::Transport`] when
    /// the IO mode is unavailable or binding fails.
    pub fn create(config: RpcEnvConfig) -> Result<Self, RpcError> {
        config.validate()?;
        let transport = create_transport(&config.transport)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let dispatcher = Arc::new(
            Dispatcher::new(&config.name, config.resolved_dispatcher_threads(cores)).map_err(|e| {
                RpcError::RemoteFailure {
                    message: format!("cannot start the dispatcher's threads: {e}"),
                }
            })?,
        );
        let handler = Arc::new(RpcHandler::new(
            dispatcher.clone(),
            Duration::from_millis(config.handover_timeout_ms),
        ));
        let (server, address) = match config.bind_address {
            Some(bind) => {
                let server = transport.bind(bind, handler.clone())?;
                let port = server.local_addr().port();
                let host = config
                    .advertise_host
                    .clone()
                    .unwrap_or_else(|| server.local_addr().ip().to_string());
                (Some(server), Some(RpcAddress::new(host, port)))
            }
            None => (None, None),
        };
        let factory = Arc::new(TransportClientFactory::new(transport.clone(), handler.clone()));
        let inner = Arc::new(EnvInner {
            config,
            address,
            transport,
            server: Mutex::new(server),
            factory,
            dispatcher: dispatcher.clone(),
            outboxes: Mutex::new(HashMap::new()),
            timeouts: TimeoutScheduler::start(),
            stopped: AtomicBool::new(false),
            terminated: Mutex::new(false),
            terminated_cond: Condvar::new(),
        });
        let _ = handler.env.set(Arc::downgrade(&inner));
        let _ = handler.local_address.set(inner.address_text());
        let env = Self { inner };
        if env.inner.address.is_some() {
            let verifier = RpcEndpointVerifier {
                dispatcher: Arc::downgrade(&dispatcher),
            };
            // Refused rather than held back when full: a verifier's asker waits on its answer anyway.
            let limits = env.limits(EndpointOptions::new().when_full(InboxFullPolicy::Fail))?;
            env.inner
                .dispatcher
                .register(VERIFIER_NAME, verifier, Scheduling::Concurrent, None, limits)?;
        }
        Ok(env)
    }

    /// Where this RpcEnv listens; `None` in client mode.
    pub fn address(&self) -> Option<&RpcAddress> {
        self.inner.address.as_ref()
    }

    /// The IO mode that runs (never `auto`).
    pub fn io_mode(&self) -> IoMode {
        self.inner.transport.io_mode()
    }

    /// Statistics of the transport's buffer pool: how many buffers were
    /// served and returned, and the idle bytes it holds against its bound
    /// (`pool_max_bytes`).
    pub fn pool_stats(&self) -> transport::PoolStats {
        self.inner.transport.pool().stats()
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &RpcEnvConfig {
        &self.inner.config
    }

    /// An endpoint's inbox bounds: `options` over the config's defaults.
    fn limits(&self, options: EndpointOptions) -> Result<InboxLimits, RpcError> {
        let config = &self.inner.config;
        let capacity = options.inbox_capacity.unwrap_or(config.inbox_capacity);
        if capacity == 0 {
            return Err(RpcError::Config(transport::ConfError::InvalidValue {
                key: "EndpointOptions::inbox_capacity".into(),
                value: "0".into(),
                allowed: "a whole number >= 1, or None for the RpcEnv's inbox_capacity".into(),
            }));
        }
        Ok(InboxLimits {
            capacity,
            when_full: options.when_full.unwrap_or(config.inbox_full_policy),
            wait_timeout: config.ask_timeout(),
        })
    }

    fn register<E: RpcEndpoint>(
        &self,
        name: &str,
        endpoint: E,
        scheduling: Scheduling,
        cloner: Option<fn(&E) -> E>,
        options: EndpointOptions,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.inner.check_running()?;
        if name == CONNECTION_EPOCH_NAME || name == CONNECTION_ACK_NAME {
            // Reserved: the RpcHandler takes every message sent to this name.
            return Err(RpcError::EndpointAlreadyExists { name: name.into() });
        }
        let limits = self.limits(options)?;
        let target = self
            .inner
            .dispatcher
            .register(name, endpoint, scheduling, cloner, limits)?;
        Ok(RpcEndpointRef::local(&self.inner, name, target))
    }

    /// Registers a thread-safe endpoint (one message at a time, on the shared
    /// MessageLoop) under `name` (Spark's `setupEndpoint`), with the config's
    /// inbox bounds (`inbox_capacity`, `inbox_full_policy`).
    ///
    /// # Errors
    /// [`RpcError::EndpointAlreadyExists`], [`RpcError::EnvStopped`].
    pub fn setup_endpoint<E: RpcEndpoint>(
        &self,
        name: &str,
        endpoint: E,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.setup_endpoint_with(name, endpoint, EndpointOptions::default())
    }

    /// [`setup_endpoint`](Self::setup_endpoint) with the endpoint's own
    /// inbox capacity and policy when full, where `options` sets them (the
    /// config's otherwise). For instance a slow consumer that remote senders
    /// should wait for rather than fail on:
    /// `EndpointOptions::new().inbox_capacity(64).when_full(InboxFullPolicy::Wait)`.
    ///
    /// # Errors
    /// As [`setup_endpoint`](Self::setup_endpoint); [`RpcError::Config`] for
    /// an `inbox_capacity` of 0.
    pub fn setup_endpoint_with<E: RpcEndpoint>(
        &self,
        name: &str,
        endpoint: E,
        options: EndpointOptions,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.register(name, endpoint, Scheduling::ThreadSafe, None, options)
    }

    /// Registers an endpoint that may process several messages at once, each
    /// MessageLoop thread on its own clone (`OnStart` and `OnStop` still run alone).
    ///
    /// # Errors
    /// As [`setup_endpoint`](Self::setup_endpoint).
    pub fn setup_concurrent_endpoint<E: RpcEndpoint + Clone>(
        &self,
        name: &str,
        endpoint: E,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.setup_concurrent_endpoint_with(name, endpoint, EndpointOptions::default())
    }

    /// [`setup_concurrent_endpoint`](Self::setup_concurrent_endpoint) with
    /// the endpoint's own inbox bounds; see [`setup_endpoint_with`](Self::setup_endpoint_with).
    ///
    /// # Errors
    /// As [`setup_endpoint_with`](Self::setup_endpoint_with).
    pub fn setup_concurrent_endpoint_with<E: RpcEndpoint + Clone>(
        &self,
        name: &str,
        endpoint: E,
        options: EndpointOptions,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.register(name, endpoint, Scheduling::Concurrent, Some(E::clone), options)
    }

    /// Registers a thread-safe endpoint on a dedicated thread of its own
    /// (Spark's `IsolatedRpcEndpoint`): a slow or blocking endpoint then holds
    /// up no other.
    ///
    /// # Errors
    /// As [`setup_endpoint`](Self::setup_endpoint).
    pub fn setup_isolated_endpoint<E: RpcEndpoint>(
        &self,
        name: &str,
        endpoint: E,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.setup_isolated_endpoint_with(name, endpoint, EndpointOptions::default())
    }

    /// [`setup_isolated_endpoint`](Self::setup_isolated_endpoint) with the
    /// endpoint's own inbox bounds; see [`setup_endpoint_with`](Self::setup_endpoint_with).
    ///
    /// # Errors
    /// As [`setup_endpoint_with`](Self::setup_endpoint_with).
    pub fn setup_isolated_endpoint_with<E: RpcEndpoint>(
        &self,
        name: &str,
        endpoint: E,
        options: EndpointOptions,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.register(name, endpoint, Scheduling::Dedicated, None, options)
    }

    /// A snapshot of local endpoint `name`'s inbox: messages queued now and
    /// at most so far, its capacity and policy, read pauses and blocked
    /// senders (see [`InboxStats`]); `None` if no endpoint of that name is
    /// registered. Takes the inbox's lock briefly.
    pub fn inbox_stats(&self, name: &str) -> Option<InboxStats> {
        self.inner.dispatcher.inbox_stats(name)
    }

    /// Registers a thread-safe endpoint that runs on the thread that delivers
    /// each message, with no MessageLoop: for a remote message, the event-loop
    /// thread of the connection it arrived on, so the reply is written by the
    /// thread that owns that connection, with no hand-off to a MessageLoop thread
    /// and back (two cross-thread wake-ups saved per ask). Spark runs its
    /// transport-level `RpcHandler`s (`NettyBlockRpcServer`, say) on Netty's
    /// event loops the same way. Messages are still processed one at a time, in
    /// order per sender: when another thread is processing, a message waits in
    /// the inbox and that thread takes it next. `on_start` runs on the calling
    /// thread before this returns; `on_stop` on the thread that stops the endpoint.
    ///
    /// The handler must not block: while it runs, every other connection of
    /// its event loop waits. No [`ask_sync`](RpcEndpointRef::ask_sync) or
    /// [`wait`](crate::AskFuture::wait), no blocking IO, no long computation:
    /// use [`ask_with`](RpcEndpointRef::ask_with) or
    /// [`AskFuture::on_complete`](crate::AskFuture::on_complete) to ask others.
    ///
    /// # Errors
    /// As [`setup_endpoint`](Self::setup_endpoint).
    pub fn setup_inline_endpoint<E: RpcEndpoint>(
        &self,
        name: &str,
        endpoint: E,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.setup_inline_endpoint_with(name, endpoint, EndpointOptions::default())
    }

    /// [`setup_inline_endpoint`](Self::setup_inline_endpoint) with the
    /// endpoint's own inbox capacity and policy when full (see
    /// [`setup_endpoint_with`](Self::setup_endpoint_with)). Messages wait in an
    /// inline endpoint's inbox only while another thread is processing it.
    ///
    /// # Errors
    /// As [`setup_endpoint_with`](Self::setup_endpoint_with).
    pub fn setup_inline_endpoint_with<E: RpcEndpoint>(
        &self,
        name: &str,
        endpoint: E,
        options: EndpointOptions,
    ) -> Result<RpcEndpointRef<E::Message, E::Reply>, RpcError> {
        self.register(name, endpoint, Scheduling::Inline, None, options)
    }

    /// A reference to endpoint `name` of the RpcEnv at `address`, after asking
    /// that RpcEnv's verifier that it exists (Spark's `setupEndpointRef`).
    /// Blocks up to the ask timeout. For this RpcEnv's own address, the
    /// reference is local.
    ///
    /// Only the name is checked, not the types: a remote endpoint that takes
    /// messages of another type than `M` refuses each one (an ask fails with
    /// [`RpcError::TypeMismatch`]); a reply type `R` other than the
    /// endpoint's is not detected: replies are read as `R` wherever their
    /// bytes validate as one, so `R` must be the endpoint's `Reply`.
    ///
    /// # Errors
    /// [`RpcError::EndpointNotFound`] naming the endpoint and address;
    /// [`RpcError::ConnectFailed`], [`RpcError::AskTimeout`], [`RpcError::EnvStopped`].
    pub fn setup_endpoint_ref<M: RpcMessage, R: RpcMessage>(
        &self,
        address: &RpcAddress,
        name: &str,
    ) -> Result<RpcEndpointRef<M, R>, RpcError> {
        self.inner.check_running()?;
        if self.inner.address.as_ref() == Some(address) {
            return self.inner.local_ref(name);
        }
        let verifier = self.endpoint_ref::<CheckExistence, bool>(address, VERIFIER_NAME);
        if verifier.ask_sync(CheckExistence { name: name.into() })? {
            Ok(self.endpoint_ref(address, name))
        } else {
            Err(RpcError::EndpointNotFound {
                name: name.into(),
                address: address.to_string(),
            })
        }
    }

    /// A reference to endpoint `name` at `address` without checking that it
    /// exists (no network traffic until the first message).
    pub fn endpoint_ref<M: RpcMessage, R: RpcMessage>(
        &self,
        address: &RpcAddress,
        name: &str,
    ) -> RpcEndpointRef<M, R> {
        RpcEndpointRef::remote(&self.inner, name, self.inner.outbox(address))
    }

    /// A reference to this RpcEnv's endpoint `name`.
    ///
    /// # Errors
    /// [`RpcError::EndpointNotFound`]; [`RpcError::TypeMismatch`] when its types differ from `M`, `R`.
    pub fn local_endpoint_ref<M: RpcMessage, R: RpcMessage>(
        &self,
        name: &str,
    ) -> Result<RpcEndpointRef<M, R>, RpcError> {
        self.inner.local_ref(name)
    }

    /// Stops a local endpoint: it is unregistered, gets `OnStop` after the
    /// messages already queued, and takes no more (Spark's `RpcEnv.stop(ref)`).
    /// Returns false if no such endpoint was registered here.
    pub fn stop<M: RpcMessage, R: RpcMessage>(&self, endpoint: &RpcEndpointRef<M, R>) -> bool {
        endpoint.is_local() && self.inner.dispatcher.stop_endpoint(endpoint.name())
    }

    /// Shuts down (Spark's `RpcEnv.shutdown`): every endpoint gets `OnStop`,
    /// this RpcEnv's own pending asks fail with [`RpcError::EnvStopped`],
    /// connections close, and every thread is joined. Asks its endpoints
    /// hold unanswered fail with [`RpcError::EndpointStopped`] for their
    /// askers, remote ones included: each connection writes what is queued
    /// on it before it closes (for up to `transport::CLOSE_GRACE`, 500 ms, as
    /// Spark's `TransportServer.close` lets Netty finish its writes).
    /// Idempotent. Do not call from an endpoint's handler.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Blocks until [`shutdown`](Self::shutdown) has finished (Spark's `awaitTermination`).
    pub fn await_termination(&self) {
        self.inner.await_termination();
    }

    /// A handle that can shut this RpcEnv down or wait for it from another thread.
    pub fn handle(&self) -> RpcEnvHandle {
        RpcEnvHandle {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for RpcEnv {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

/// A clonable handle on an RpcEnv for other threads (a signal handler, a
/// supervisor). Dropping it leaves the RpcEnv running.
#[derive(Clone)]
pub struct RpcEnvHandle {
    inner: Arc<EnvInner>,
}

impl std::fmt::Debug for RpcEnvHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcEnvHandle")
            .field("address", &self.inner.address)
            .finish()
    }
}

impl RpcEnvHandle {
    /// See [`RpcEnv::shutdown`].
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// See [`RpcEnv::await_termination`].
    pub fn await_termination(&self) {
        self.inner.await_termination();
    }
}

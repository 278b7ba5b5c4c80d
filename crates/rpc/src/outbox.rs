//! `Outbox`: the messages bound for one remote RpcEnv (Spark's `Outbox`).
//!
//! It connects lazily, on the first message; messages sent meanwhile queue in
//! order and go out once connected. If connecting fails, every queued message
//! fails with that error (asks complete with [`RpcError::ConnectFailed`]), and
//! the next message tries again. Once connected, a message goes straight to
//! the connection's send queue. Connecting blocks, so it runs on a thread of
//! its own (Spark's `clientConnectionExecutor`), never on a caller's thread.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use transport::{RpcResponseCallback, TransportClient, TransportClientFactory, TransportError};

use crate::address::RpcAddress;
use crate::error::RpcError;

/// One message waiting for the connection.
pub(crate) enum OutboxMessage {
    /// A OneWayMessage body.
    OneWay(Bytes),
    /// An RpcRequest body and the callback that takes its answer.
    Rpc(Bytes, RpcResponseCallback),
}

/// A message the connection refused, to fail once the outbox's lock is released
/// (its callback may send again through this outbox).
pub(crate) struct Refused(OutboxMessage, TransportError);

impl Refused {
    fn fail(self, address: &RpcAddress) {
        self.0.fail(address, &self.1);
    }
}

impl OutboxMessage {
    /// Hands the message to `client`'s send queue; on refusal gives it back.
    fn send_with(self, client: &TransportClient) -> Result<(), Box<Refused>> {
        match self {
            Self::OneWay(body) => client
                .send_one_way(body.clone())
                .map_err(|e| Box::new(Refused(Self::OneWay(body), e))),
            Self::Rpc(body, callback) => client
                .send_rpc_boxed(body.clone(), callback)
                .map(drop)
                .map_err(|(e, callback)| Box::new(Refused(Self::Rpc(body, callback), e))),
        }
    }

    fn fail(self, address: &RpcAddress, error: &TransportError) {
        match self {
            Self::OneWay(_) => {
                tracing::warn!(%address, %error, "a one-way message was dropped: its destination is unreachable")
            }
            Self::Rpc(_, callback) => callback(Err(error.clone())),
        }
    }
}

#[derive(Default)]
struct State {
    client: Option<TransportClient>,
    queue: VecDeque<OutboxMessage>,
    connecting: bool,
    stopped: bool,
}

/// The outbox of one remote address.
pub(crate) struct Outbox {
    address: RpcAddress,
    factory: Arc<TransportClientFactory>,
    state: Mutex<State>,
}

impl Outbox {
    pub(crate) fn new(address: RpcAddress, factory: Arc<TransportClientFactory>) -> Arc<Self> {
        Arc::new(Self {
            address,
            factory,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remote address.
    pub(crate) fn address(&self) -> &RpcAddress {
        &self.address
    }

    /// Sends `msg` now if connected, or queues it and connects.
    pub(crate) fn send(self: &Arc<Self>, msg: OutboxMessage) {
        let mut st = self.lock();
        if st.stopped {
            drop(st);
            msg.fail(&self.address, &TransportError::Shutdown);
            return;
        }
        if let Some(client) = st.client.as_ref().filter(|c| c.is_active())
            && st.queue.is_empty()
        {
            // Sent under the lock so that a message never overtakes one queued before it;
            // a refusal is reported after the lock is released.
            let sent = msg.send_with(client);
            drop(st);
            if let Err(refused) = sent {
                refused.fail(&self.address);
            }
            return;
        }
        st.client = None;
        st.queue.push_back(msg);
        if !st.connecting {
            st.connecting = true;
            drop(st);
            self.launch_connect();
        }
    }

    fn launch_connect(self: &Arc<Self>) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("rpc-connect-{}", self.address))
            .spawn(move || me.connect());
        if let Err(e) = spawned {
            let err = TransportError::Io {
                op: "start a connect thread for",
                addr: std::net::SocketAddr::from(([0, 0, 0, 0], self.address.port)),
                kind: e.kind(),
                message: e.to_string(),
            };
            self.fail_queued(&err);
        }
    }

    fn connect(self: Arc<Self>) {
        let result = self
            .address
            .to_socket_addr()
            .map_err(|e| TransportError::Io {
                op: "resolve",
                addr: std::net::SocketAddr::from(([0, 0, 0, 0], self.address.port)),
                kind: std::io::ErrorKind::NotFound,
                message: e.to_string(),
            })
            .and_then(|addr| self.factory.create_client(addr));
        match result {
            Ok(client) => {
                let mut st = self.lock();
                st.connecting = false;
                if st.stopped {
                    drop(st);
                    client.close();
                    self.fail_queued(&TransportError::Shutdown);
                    return;
                }
                let refused: Vec<Box<Refused>> = st
                    .queue
                    .drain(..)
                    .filter_map(|msg| msg.send_with(&client).err())
                    .collect();
                st.client = Some(client);
                drop(st);
                for r in refused {
                    r.fail(&self.address);
                }
            }
            Err(e) => {
                tracing::warn!(address = %self.address, error = %e, "connecting failed; queued messages fail");
                self.lock().connecting = false;
                self.fail_queued(&e);
            }
        }
    }

    fn fail_queued(&self, error: &TransportError) {
        let queued: Vec<_> = self.lock().queue.drain(..).collect();
        for msg in queued {
            msg.fail(&self.address, error);
        }
    }

    /// Fails what is queued and refuses further messages (Spark's `Outbox.stop`).
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.fail_queued(&TransportError::Shutdown);
    }
}

/// Maps a connect failure seen by an ask to the error the user sees.
pub(crate) fn connect_error(address: &RpcAddress, e: TransportError) -> RpcError {
    match e {
        TransportError::Io { op: "connect to", .. }
        | TransportError::Io { op: "resolve", .. }
        | TransportError::ConnectTimeout { .. } => RpcError::ConnectFailed {
            address: address.to_string(),
            source: e,
        },
        other => RpcError::from_transport(other),
    }
}

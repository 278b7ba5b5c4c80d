//! `RpcHandler`: the transport handler of an RpcEnv (Spark's `NettyRpcHandler`):
//! parses each request's envelope in place and posts it to the Dispatcher;
//! turns connection events into `on_connected` / `on_disconnected` /
//! `on_network_error` for every endpoint; keeps a reconnected sender's
//! messages in order (`handover`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use transport::{ConnectionId, TransportClient, TransportError, TransportHandler, is_power_of_ten};

use crate::address::RpcAddress;
use crate::context::RpcSender;
use crate::dispatcher::Dispatcher;
use crate::env::EnvInner;
use crate::envelope;
use crate::error::RpcError;
use crate::handover::{
    Admit, CONNECTION_ACK_NAME, CONNECTION_EPOCH_NAME, ConnectionAck, ConnectionEpoch, Handover, InboundConn,
    Release, Resend,
};
use crate::inbox::SystemEvent;
use crate::message::{RpcMessage, type_fingerprint};
use crate::outbox::OutboundConn;

pub(crate) struct RpcHandler {
    pub(crate) env: OnceLock<Weak<EnvInner>>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) local_address: OnceLock<String>,
    /// The advertised RpcEnv address of each connection's peer, once a message told us.
    remote_addresses: Mutex<HashMap<ConnectionId, RpcAddress>>,
    /// One-way messages dropped per connection, so that a flood of bad ones
    /// logs the 1st, 10th, 100th, ... rather than every one.
    dropped: Mutex<HashMap<ConnectionId, u64>>,
    /// Per-sender order across reconnects.
    handover: Arc<Handover>,
}

impl RpcHandler {
    /// A handler posting to `dispatcher`; a reconnected sender's new
    /// connection waits at most `handover_timeout` for its previous one.
    pub(crate) fn new(dispatcher: Arc<Dispatcher>, handover_timeout: Duration) -> Self {
        Self {
            env: OnceLock::new(),
            dispatcher,
            local_address: OnceLock::new(),
            remote_addresses: Mutex::new(HashMap::new()),
            dropped: Mutex::new(HashMap::new()),
            handover: Handover::new(handover_timeout),
        }
    }

    fn sender(&self, client: &TransportClient, address: Option<RpcAddress>) -> RpcSender {
        RpcSender {
            address,
            connection: Some(client.clone()),
            env: self.env.get().cloned().unwrap_or_default(),
        }
    }

    /// Records the peer's RpcEnv address the first time a message carries it,
    /// and tells every endpoint (Spark posts `RemoteProcessConnected` then too).
    fn track(&self, client: &TransportClient, sender: Option<&RpcAddress>) {
        let Some(addr) = sender else { return };
        let mut map = self.remote_addresses.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(&client.id()) {
            return;
        }
        map.insert(client.id(), addr.clone());
        drop(map);
        self.dispatcher.post_to_all(SystemEvent::Connected(addr.clone()));
    }

    fn post(&self, client: &TransportClient, body: Bytes, reply: Option<i64>) -> Result<(), RpcError> {
        let env = envelope::parse(body)?;
        if env.receiver() == CONNECTION_EPOCH_NAME {
            return self.connection_epoch(client, &env, reply);
        }
        if env.receiver() == CONNECTION_ACK_NAME {
            return self.connection_ack(client, &env, reply);
        }
        self.track(client, env.sender.as_ref());
        let sender = self.sender(client, env.sender.clone());
        let local = self.local_address.get().map_or("this RpcEnv", String::as_str);
        self.dispatcher
            .post_remote_message(env, reply.map(|id| (client.clone(), id)), sender, local)
    }

    /// Handles the [`ConnectionEpoch`] an Outbox sends first on a connection.
    fn connection_epoch(
        &self,
        client: &TransportClient,
        env: &envelope::Envelope,
        reply: Option<i64>,
    ) -> Result<(), RpcError> {
        let m = control_message::<ConnectionEpoch>(env, "ConnectionEpoch", reply.is_some(), true)?;
        let request_id = reply.unwrap_or_default();
        let (instance, epoch) = (m.instance.to_native(), m.epoch.to_native());
        let resend = Resend {
            first_seq: m.first_seq.to_native(),
            count: m.resend_count.to_native(),
        };
        let timer = self.env.get().and_then(Weak::upgrade).map(|e| e.timeouts.clone());
        let taken = if client.attachment::<OutboundConn>().is_some() {
            // Only the side that opened a connection says its epoch; taken
            // for a sender's, this connection's reading could be held.
            Err("a connection epoch on a connection this RpcEnv opened".to_string())
        } else {
            self.handover
                .on_epoch(client, request_id, instance, epoch, resend, timer.as_ref())
        };
        match taken {
            Ok(true) => {
                let _ = client.send_response(request_id, Bytes::new());
            }
            Ok(false) => {}
            Err(reason) => {
                tracing::warn!(peer = %client.peer_addr(), %reason, "closing the connection: protocol error");
                client.close();
            }
        }
        Ok(())
    }

    /// Handles a [`ConnectionAck`] that arrived on a connection an Outbox opened.
    fn connection_ack(
        &self,
        client: &TransportClient,
        env: &envelope::Envelope,
        reply: Option<i64>,
    ) -> Result<(), RpcError> {
        let m = control_message::<ConnectionAck>(env, "ConnectionAck", reply.is_some(), false)?;
        let Some(outbound) = client.attachment::<OutboundConn>() else {
            return Err(RpcError::InvalidMessage {
                type_name: "ConnectionAck",
                reason: "an ack on a connection this RpcEnv did not open".into(),
            });
        };
        outbound.acknowledged(m.epoch.to_native(), m.one_ways.to_native());
        Ok(())
    }

    /// Acknowledges the one-ways of an inbound connection handled since its
    /// last ack, if any.
    fn ack_handled(&self, client: &TransportClient) {
        let Some(conn) = client.attachment::<InboundConn>() else {
            return;
        };
        let Some(one_ways) = conn.ack_due() else { return };
        let ack = ConnectionAck {
            epoch: conn.epoch,
            one_ways,
        };
        if let Ok(body) = envelope::encode(None, CONNECTION_ACK_NAME, &ack) {
            // A closed connection needs no ack: its sender resends what is unacknowledged.
            let _ = client.send_one_way(body);
        }
    }

    /// Posts one frame's message, answering a failed RPC with an RpcFailure
    /// and logging a dropped one-way.
    fn deliver(&self, client: &TransportClient, body: Bytes, reply: Option<i64>) {
        if let Some(request_id) = reply {
            if let Err(e) = self.post(client, body, reply) {
                let _ = client.send_failure(request_id, &failure_text(&e));
            }
            return;
        }
        if let Err(e) = self.post(client, body, None) {
            let dropped = {
                let mut map = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
                let n = map.entry(client.id()).or_insert(0);
                *n += 1;
                *n
            };
            // 1, 10, 100, ...: a flood of bad messages cannot flood the log.
            if is_power_of_ten(dropped) {
                tracing::warn!(
                    peer = %client.peer_addr(), error = %e, dropped_on_this_connection = dropped,
                    "dropping a one-way message"
                );
            }
        }
    }

    /// Dispatches the frames a held connection kept, in order, then lets it
    /// read again; acknowledges the one-ways among them; a closed one's end
    /// follows its last frame.
    fn release(&self, mut turn: Release) {
        loop {
            if let Some(request_id) = turn.answer.take() {
                let _ = turn.client.send_response(request_id, Bytes::new());
            }
            let counted = turn.client.attachment::<InboundConn>();
            for (body, reply) in std::mem::take(&mut turn.frames) {
                self.deliver(&turn.client, body, reply);
                if let (Some(c), None) = (counted, reply) {
                    c.handled.fetch_add(1, Ordering::AcqRel);
                }
            }
            self.ack_handled(&turn.client);
            let step = self.handover.release_step(turn);
            if let Some(client) = step.ended {
                self.ended(&client);
            }
            match step.next {
                Some(next) => turn = next,
                None => return,
            }
        }
    }

    /// A connection closed and everything it delivered was dispatched: its
    /// disconnect events, after its last message.
    fn ended(&self, client: &TransportClient) {
        self.dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&client.id());
        self.dispatcher
            .post_to_all(SystemEvent::Disconnected(client.peer_addr().into()));
        let known = self
            .remote_addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&client.id());
        if let Some(addr) = known {
            self.dispatcher.post_to_all(SystemEvent::Disconnected(addr));
        }
    }
}

/// The payload of one of the handler's own messages ([`ConnectionEpoch`],
/// [`ConnectionAck`]), checked: sent as an RPC exactly when `want_rpc`, of
/// type `M` by its fingerprint, and a valid archive.
///
/// # Errors
/// [`RpcError::InvalidMessage`] naming `name` and what is wrong.
fn control_message<'a, M: RpcMessage>(
    env: &'a envelope::Envelope,
    name: &'static str,
    is_rpc: bool,
    want_rpc: bool,
) -> Result<&'a rkyv::Archived<M>, RpcError> {
    let invalid = |reason: String| RpcError::InvalidMessage {
        type_name: name,
        reason,
    };
    match (is_rpc, want_rpc) {
        (false, true) => return Err(invalid(format!("a {name} is an RPC, not a one-way message"))),
        (true, false) => return Err(invalid(format!("a {name} is a one-way message, not an RPC"))),
        _ => {}
    }
    if env.fingerprint != type_fingerprint::<M>() {
        return Err(invalid(format!("the message type is not {name}")));
    }
    M::access(&env.payload)
}

impl TransportHandler for RpcHandler {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        if let Admit::Dispatch(body, reply) = self.handover.admit(client, body, Some(request_id)) {
            self.deliver(client, body, reply);
        }
    }

    fn receive_one_way(&self, client: &TransportClient, body: Bytes) {
        let counted = client.attachment::<InboundConn>();
        if let Some(c) = counted {
            c.one_ways.fetch_add(1, Ordering::AcqRel);
        }
        match self.handover.admit(client, body, None) {
            Admit::Dispatch(body, reply) => {
                self.deliver(client, body, reply);
                if let Some(c) = counted {
                    c.handled.fetch_add(1, Ordering::AcqRel);
                }
            }
            Admit::Duplicate => {
                if let Some(c) = counted {
                    c.handled.fetch_add(1, Ordering::AcqRel);
                }
            }
            Admit::Taken => {}
        }
    }

    fn read_complete(&self, client: &TransportClient) {
        self.ack_handled(client);
    }

    fn channel_active(&self, client: &TransportClient) {
        self.dispatcher
            .post_to_all(SystemEvent::Connected(client.peer_addr().into()));
    }

    fn channel_inactive(&self, client: &TransportClient) {
        let closed = self.handover.on_closed(client);
        if let Some(outbound) = client.attachment::<OutboundConn>() {
            outbound.closed();
        }
        // Its disconnect before the next connection's messages; a held
        // connection's after its own kept ones (`release`).
        if !closed.pending {
            self.ended(client);
        }
        if let Some(turn) = closed.turn {
            self.release(turn);
        }
    }

    fn exception_caught(&self, client: &TransportClient, error: &TransportError) {
        tracing::warn!(peer = %client.peer_addr(), %error, "connection failed");
        let error = RpcError::from_transport(error.clone());
        self.dispatcher.post_to_all(SystemEvent::NetworkError(
            error.clone(),
            client.peer_addr().into(),
        ));
        let known = self
            .remote_addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client.id())
            .cloned();
        if let Some(addr) = known {
            self.dispatcher
                .post_to_all(SystemEvent::NetworkError(error, addr));
        }
    }
}

/// The text of the RpcFailure that answers an ask this RpcEnv could not take.
/// `EnvStopped` says which env stopped: read by the asker, "the RpcEnv is
/// stopped" would name its own.
fn failure_text(e: &RpcError) -> String {
    match e {
        RpcError::EnvStopped => {
            "the RpcEnv asked is shutting down and takes no more messages; ask another, or again once it is back"
                .to_string()
        }
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn powers_of_ten() {
        let hits: Vec<u64> = (0..=1000).filter(|n| super::is_power_of_ten(*n)).collect();
        assert_eq!(hits, [1, 10, 100, 1000]);
    }

    #[test]
    fn a_stopped_env_s_failure_names_the_env_asked() {
        use crate::error::RpcError;
        use transport::TransportError;
        let text = super::failure_text(&RpcError::EnvStopped);
        let seen = RpcError::from_transport(TransportError::RemoteFailure { message: text }).to_string();
        assert!(seen.contains("the RpcEnv asked is shutting down"), "{seen}");
        assert!(
            !seen.contains("create a new one"),
            "reads as the asker's own env: {seen}"
        );
        let other = RpcError::NoReply { name: "kv".into() };
        assert_eq!(
            super::failure_text(&other),
            other.to_string(),
            "other errors keep their text"
        );
    }
}

//! `Outbox`: the messages bound for one remote RpcEnv (Spark's `Outbox`).
//!
//! It connects lazily, on the first message; messages sent meanwhile queue in
//! order and go out once connected. If connecting fails, every queued message
//! fails with that error (asks complete with [`RpcError::ConnectFailed`]), and
//! the next message tries again. Once connected, a message goes straight to
//! the connection's send queue. Connecting blocks, so it runs on a thread of
//! its own (Spark's `clientConnectionExecutor`), never on a caller's thread.
//!
//! **Backoff.** After a failed attempt the outbox waits before the next one:
//! [`CONNECT_RETRY_INITIAL`] after the first failure, doubling with each further one
//! up to [`CONNECT_RETRY_MAX`]; a success resets it. A message sent while it waits
//! fails at once with the error of the last attempt (asks complete with
//! [`RpcError::ConnectFailed`]) instead of starting another connect, so a
//! peer that is down costs one connect attempt per backoff period, not one per
//! message. When a connection is lost, the next message reconnects at once.
//!
//! **Order across reconnects.** The first frame on each connection is a
//! [`ConnectionEpoch`]: this outbox's random instance id and the connection's
//! epoch (1, 2, ... per outbox). The receiver holds a newer connection's messages
//! until the older one has closed and all it delivered was dispatched, so a
//! message never overtakes one sent before it on an earlier connection
//! (see `handover`).
//!
//! **One-ways lost with a connection.** The outbox keeps every one-way it
//! wrote until the receiver's [`ConnectionAck`](crate::ConnectionAck) covers
//! it (a reference to the encoded body, no copy). On reconnect it sends the
//! unacknowledged ones first, and the receiver drops those it had already
//! handled. If connecting fails, they are dropped with one `warn` naming
//! how many, as the queued ones fail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::{ResponseHandler, TransportClient, TransportClientFactory, TransportError};

use crate::address::RpcAddress;
use crate::envelope;
use crate::error::RpcError;
use crate::handover::{CONNECTION_EPOCH_NAME, ConnectionEpoch};

/// One message waiting for the connection.
pub(crate) enum OutboxMessage {
    /// A OneWayMessage body.
    OneWay(Bytes),
    /// An RpcRequest body and what takes its answer.
    Rpc(Bytes, ResponseHandler),
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
    /// Hands the message to `client`'s send queue, and a one-way's body to
    /// `retained` (kept until acknowledged); on refusal gives it back.
    fn send_with(self, client: &TransportClient, retained: &mut Retained) -> Result<(), Box<Refused>> {
        match self {
            Self::OneWay(body) => match client.send_one_way(body.clone()) {
                Ok(()) => {
                    retained.bodies.push_back(body);
                    Ok(())
                }
                Err(e) => Err(Box::new(Refused(Self::OneWay(body), e))),
            },
            Self::Rpc(body, callback) => client
                .send_rpc_with(body.clone(), callback)
                .map(drop)
                .map_err(|(e, callback)| Box::new(Refused(Self::Rpc(body, callback), e))),
        }
    }

    fn fail(self, address: &RpcAddress, error: &TransportError) {
        match self {
            Self::OneWay(_) if !connection_gone(error) => {
                tracing::warn!(%address, %error, "a one-way message was dropped: it cannot be sent")
            }
            Self::OneWay(_) => {
                tracing::warn!(%address, %error, "a one-way message was dropped: its destination is unreachable")
            }
            // Never sent, so it has no request id.
            Self::Rpc(_, handler) => handler.call(-1, Err(error.clone())),
        }
    }
}

/// Connections an outbox opens again at once when one is lost before the
/// receiver answered its [`ConnectionEpoch`] (a count), before it treats the
/// loss as a failed connect.
const INTRODUCTION_RETRIES: u32 = 3;

/// Whether a connection refused a message because it is closed (the message
/// may go on the next connection), rather than because of the message itself
/// (too large for a frame: it can never be sent, and the connection is fine).
fn connection_gone(error: &TransportError) -> bool {
    !matches!(error, TransportError::FrameTooLarge { .. })
}

/// Connections in a row that may close with one-ways written and none
/// acknowledged before the outbox gives up the oldest of them (a count): a
/// one-way the receiver refuses would otherwise go first on every new
/// connection and close each one.
const UNACKED_CLOSES_BEFORE_GIVING_UP: u32 = 3;

/// Reconnects in a row that an outbox makes by itself to resend
/// unacknowledged one-ways, with no ack in between (a count).
pub const PROACTIVE_RECONNECTS: u32 = 3;

/// The wait after the first failed connect attempt.
pub const CONNECT_RETRY_INITIAL: Duration = Duration::from_millis(100);
/// The longest wait between connect attempts.
pub const CONNECT_RETRY_MAX: Duration = Duration::from_secs(2);

/// The wait after `failures` failed attempts in a row (at least 1).
fn backoff(failures: u32) -> Duration {
    CONNECT_RETRY_INITIAL
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(CONNECT_RETRY_MAX)
}

/// The one-ways written and not yet acknowledged. One-ways are numbered
/// from 0 across the outbox's connections; these are numbers
/// `first .. first + bodies.len()`, and the next one sent gets the number after.
#[derive(Default)]
struct Retained {
    /// Their encoded bodies, oldest first.
    bodies: VecDeque<Bytes>,
    /// The number of the first.
    first: u64,
}

/// What an outbox attaches to each connection it opens, so that the
/// connection's [`ConnectionAck`](crate::ConnectionAck)s find it.
pub(crate) struct OutboundConn {
    outbox: Weak<Outbox>,
    epoch: u64,
    /// The number of the connection's first one-way.
    first_seq: u64,
}

impl OutboundConn {
    /// The connection closed: see [`Outbox::connection_lost`].
    pub(crate) fn closed(&self) {
        if let Some(outbox) = self.outbox.upgrade() {
            outbox.connection_lost(self.epoch);
        }
    }

    /// The receiver has handled the first `one_ways` one-ways of the
    /// connection of `epoch`: forget them.
    pub(crate) fn acknowledged(&self, epoch: u64, one_ways: u64) {
        let Some(outbox) = self.outbox.upgrade() else {
            return;
        };
        if epoch != self.epoch {
            return;
        }
        let mut st = outbox.lock();
        if st.epoch != epoch {
            return;
        }
        let through = self.first_seq.saturating_add(one_ways);
        st.proactive_reconnects = 0;
        st.acked = true;
        st.unacked_closes = 0;
        let r = &mut st.retained;
        while r.first < through && r.bodies.pop_front().is_some() {
            r.first += 1;
        }
    }
}

#[derive(Default)]
struct State {
    retained: Retained,
    client: Option<TransportClient>,
    queue: VecDeque<OutboxMessage>,
    connecting: bool,
    stopped: bool,
    /// Failed connect attempts in a row.
    failures: u32,
    /// No new attempt before this instant; messages fail with `last_error` until then.
    retry_at: Option<Instant>,
    last_error: Option<TransportError>,
    /// Connections opened so far (the epoch of the newest).
    epoch: u64,
    /// Reconnects made by [`Outbox::connection_lost`] since the last ack.
    proactive_reconnects: u32,
    /// The current connection has had an ack: its peer accepts our messages.
    acked: bool,
    /// Connections in a row that closed with one-ways written to them and
    /// none acknowledged.
    unacked_closes: u32,
}

/// The outbox of one remote address.
pub(crate) struct Outbox {
    address: RpcAddress,
    factory: Arc<TransportClientFactory>,
    /// This outbox's random instance id: what the receiver knows it by.
    instance: u64,
    state: Mutex<State>,
}

impl Outbox {
    /// The outbox of `address`, known to the receiver as instance `instance`
    /// (random, one per outbox: see `handover`).
    pub(crate) fn new(address: RpcAddress, factory: Arc<TransportClientFactory>, instance: u64) -> Arc<Self> {
        Arc::new(Self {
            address,
            factory,
            instance,
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
        let State {
            client,
            queue,
            retained,
            ..
        } = &mut *st;
        let mut msg = msg;
        if let Some(client) = client.as_ref().filter(|c| c.is_active())
            && queue.is_empty()
        {
            // Sent under the lock so that a message never overtakes one queued before it;
            // a refusal is reported after the lock is released.
            match msg.send_with(client, retained) {
                Ok(()) => return,
                // The connection closed just now: a one-way waits for the
                // next one, like a message sent while disconnected. (One
                // refused for itself is failed: it has no number, and the
                // connection stays.)
                Err(refused)
                    if matches!(refused.0, OutboxMessage::OneWay(_)) && connection_gone(&refused.1) =>
                {
                    msg = refused.0
                }
                Err(refused) => {
                    drop(st);
                    refused.fail(&self.address);
                    return;
                }
            }
        }
        st.client = None;
        if !st.connecting
            && let (Some(at), Some(error)) = (st.retry_at, st.last_error.clone())
            && Instant::now() < at
        {
            drop(st);
            msg.fail(&self.address, &error);
            return;
        }
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
        let mut lost = 0;
        let result = loop {
            let attempt = self
                .address
                .to_socket_addr()
                .map_err(|e| TransportError::Io {
                    op: "resolve",
                    addr: std::net::SocketAddr::from(([0, 0, 0, 0], self.address.port)),
                    kind: std::io::ErrorKind::NotFound,
                    message: e.to_string(),
                })
                .and_then(|addr| {
                    let client = self.factory.create_unshared_client(addr)?;
                    self.introduce(&client, addr).inspect_err(|_| client.close())?;
                    Ok(client)
                });
            match attempt {
                // Lost before the receiver answered (a network cut, say): not
                // a refusal, so connect again before failing anything.
                Err(TransportError::ConnectionClosed { .. }) if lost < INTRODUCTION_RETRIES => lost += 1,
                other => break other,
            }
        };
        match result {
            Ok(client) => {
                let mut st = self.lock();
                st.connecting = false;
                st.failures = 0;
                st.retry_at = None;
                st.last_error = None;
                if st.stopped {
                    drop(st);
                    client.close();
                    self.fail_queued(&TransportError::Shutdown);
                    return;
                }
                // The receiver answered the ConnectionEpoch: the unacknowledged
                // one-ways of earlier connections go first, then what queued
                // meanwhile. If the connection refuses them, it is already
                // closed: what was not written stays kept for the next one.
                for body in &st.retained.bodies {
                    if client.send_one_way(body.clone()).is_err() {
                        tracing::debug!(address = %self.address, "the new connection closed while resending");
                        break;
                    }
                }
                let State { queue, retained, .. } = &mut *st;
                let mut refused: Vec<Box<Refused>> = Vec::new();
                for msg in queue.drain(..) {
                    match msg.send_with(&client, retained) {
                        Ok(()) => {}
                        // Closed already: kept, and sent with the unacknowledged
                        // ones on the next connection.
                        Err(r) if matches!(r.0, OutboxMessage::OneWay(_)) && connection_gone(&r.1) => {
                            if let OutboxMessage::OneWay(body) = r.0 {
                                retained.bodies.push_back(body);
                            }
                        }
                        Err(r) => refused.push(r),
                    }
                }
                st.client = Some(client);
                drop(st);
                for r in refused {
                    r.fail(&self.address);
                }
            }
            Err(e) => {
                let mut st = self.lock();
                st.connecting = false;
                st.failures = st.failures.saturating_add(1);
                let wait = backoff(st.failures);
                st.retry_at = Some(Instant::now() + wait);
                st.last_error = Some(e.clone());
                let unacknowledged = st.retained.bodies.len();
                st.retained.bodies.clear();
                st.retained.first += unacknowledged as u64;
                drop(st);
                if unacknowledged > 0 {
                    tracing::warn!(
                        address = %self.address, error = %e, dropped = unacknowledged,
                        "one-way messages sent on a lost connection and not acknowledged were dropped: reconnecting failed"
                    );
                }
                tracing::warn!(
                    address = %self.address, error = %e, retry_in = ?wait,
                    "connecting failed; queued messages fail, and so do new ones until the retry"
                );
                self.fail_queued(&e);
            }
        }
    }

    /// Sends the [`ConnectionEpoch`] on a new connection, as an RPC, and waits
    /// for its answer: the receiver answers once every older connection of
    /// this RpcEnv has closed and all it delivered was dispatched (at most its
    /// `handover_timeout_ms` later), so nothing is sent before that. A
    /// receiver that refuses this RpcEnv (a missing `auth_secret`, say) fails
    /// it, and the error goes to the queued messages as a connect error would.
    ///
    /// # Errors
    /// The failure the receiver answered with, the connection's close, or
    /// [`TransportError::ConnectTimeout`] after `connect_timeout_ms`.
    fn introduce(
        self: &Arc<Self>,
        client: &TransportClient,
        addr: std::net::SocketAddr,
    ) -> Result<(), TransportError> {
        let (hello, given_up) = {
            let mut st = self.lock();
            // The receiver closed this many connections in a row without
            // acknowledging anything: it refuses the oldest one-way (one
            // larger than its max_frame_size, say), which would go first on
            // every new connection and close it again. Give that one up.
            let mut given_up = None;
            if st.unacked_closes >= UNACKED_CLOSES_BEFORE_GIVING_UP {
                st.unacked_closes = 0;
                if let Some(body) = st.retained.bodies.pop_front() {
                    st.retained.first += 1;
                    given_up = Some(body.len());
                }
            }
            st.epoch += 1;
            st.acked = false;
            let hello = ConnectionEpoch {
                instance: self.instance,
                epoch: st.epoch,
                first_seq: st.retained.first,
                resend_count: st.retained.bodies.len() as u64,
            };
            (hello, given_up)
        };
        if let Some(bytes) = given_up {
            tracing::warn!(
                address = %self.address, bytes, connections = UNACKED_CLOSES_BEFORE_GIVING_UP,
                "dropping a one-way message: the receiver closed the connections it went first on, \
                 acknowledging nothing (is it larger than the receiver's max_frame_size?)"
            );
        }
        let attached = client.set_attachment(Arc::new(OutboundConn {
            outbox: Arc::downgrade(self),
            epoch: hello.epoch,
            first_seq: hello.first_seq,
        }));
        if !attached {
            tracing::debug!(address = %self.address, "a connection reused from the factory's pool keeps its first outbox");
        }
        let body = envelope::encode(None, CONNECTION_EPOCH_NAME, &hello).map_err(|e| TransportError::Io {
            op: "encode the connection epoch for",
            addr,
            kind: std::io::ErrorKind::InvalidData,
            message: e.to_string(),
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        client.send_rpc(body, move |result| {
            let _ = tx.send(result);
        })?;
        let timeout = std::time::Duration::from_millis(self.factory.conf().connect_timeout_ms);
        match rx.recv_timeout(timeout) {
            Ok(result) => result.map(drop),
            Err(_) => Err(TransportError::ConnectTimeout { addr, timeout }),
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
        let (unacknowledged, connected) = {
            let mut st = self.lock();
            st.stopped = true;
            let n = st.retained.bodies.len();
            st.retained.bodies.clear();
            (n, st.client.as_ref().is_some_and(TransportClient::is_active))
        };
        if unacknowledged > 0 && connected {
            // Acks trail each read by a round trip: these were very likely handled.
            tracing::debug!(
                address = %self.address, unacknowledged,
                "stopping with one-way messages sent and not yet acknowledged"
            );
        } else if unacknowledged > 0 {
            tracing::warn!(
                address = %self.address, dropped = unacknowledged,
                "stopping with one-way messages sent on a lost connection and not acknowledged: \
                 they may not have been handled"
            );
        }
        self.fail_queued(&TransportError::Shutdown);
    }

    /// The connection of `epoch` closed. If one-ways sent on it are not
    /// acknowledged, and it had an ack before (so its peer accepts this
    /// RpcEnv: a peer that refuses it, for want of the auth secret say, never
    /// acks), reconnects now to send them again rather than at the next
    /// message; after [`PROACTIVE_RECONNECTS`] such reconnects in a row with
    /// no ack in between, waits for the next message.
    pub(crate) fn connection_lost(self: &Arc<Self>, epoch: u64) {
        let mut st = self.lock();
        if st.epoch == epoch && !st.acked && !st.retained.bodies.is_empty() {
            st.unacked_closes += 1;
        }
        if st.stopped
            || st.connecting
            || st.epoch != epoch
            || st.retained.bodies.is_empty()
            || !st.acked
            || st.proactive_reconnects >= PROACTIVE_RECONNECTS
            || st.retry_at.is_some_and(|at| Instant::now() < at)
        {
            return;
        }
        st.proactive_reconnects += 1;
        st.client = None;
        st.connecting = true;
        drop(st);
        self.launch_connect();
    }
}

/// Maps a connect failure seen by an ask to the error the user sees.
pub(crate) fn connect_error(address: &RpcAddress, e: TransportError) -> RpcError {
    match e {
        TransportError::Io { op: "resolve", .. } => RpcError::InvalidAddress {
            address: address.to_string(),
            reason: "the host does not resolve; check the name, or give an IP address".into(),
        },
        TransportError::Io { op: "connect to", .. } | TransportError::ConnectTimeout { .. } => {
            RpcError::ConnectFailed {
                address: address.to_string(),
                source: e,
            }
        }
        TransportError::AuthenticationFailed { .. } => RpcError::AuthenticationFailed {
            address: address.to_string(),
            source: e,
        },
        other => RpcError::from_transport(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), CONNECT_RETRY_INITIAL);
        assert_eq!(backoff(2), CONNECT_RETRY_INITIAL * 2);
        assert_eq!(backoff(3), CONNECT_RETRY_INITIAL * 4);
        assert_eq!(backoff(10), CONNECT_RETRY_MAX);
        assert_eq!(backoff(u32::MAX), CONNECT_RETRY_MAX);
    }
}

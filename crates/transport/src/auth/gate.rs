//! The two gates: the server's handler wrapper and the client's bootstrap.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::handshake::{ClientHandshake, ServerHandshake, fresh_nonce, is_handshake};
use super::{AuthError, FAILURE_PREFIX};
use crate::client::{ConnectionId, TransportClient};
use crate::conf::TransportConf;
use crate::error::TransportError;
use crate::transport::TransportHandler;

/// Where one accepted connection is.
enum ConnState {
    AwaitHello,
    Handshaking(ServerHandshake),
    Authenticated,
    Refused,
}

/// What to do once the state lock is released.
enum Action {
    Forward,
    Reply(Bytes),
    Accept(Bytes),
    Refuse(AuthError),
    /// An RPC on a connection already refused and closing: answered, not logged again.
    Again,
}

/// The server side (Spark's `AuthRpcHandler`): runs the handshake on each
/// accepted connection and lets nothing through to the wrapped handler —
/// neither frames nor `channel_active` — until the peer has proven it knows
/// the secret. A failed handshake is logged at `warn` with the peer's address,
/// answered with an RpcFailure starting [`FAILURE_PREFIX`], and the connection closed.
///
/// A connection that has not authenticated within the handshake timeout is
/// closed too; the check runs whenever a new connection arrives, so idle
/// unauthenticated connections cannot pile up.
pub struct ServerAuthHandler {
    inner: Arc<dyn TransportHandler>,
    secret: Vec<u8>,
    timeout: Duration,
    conns: Mutex<HashMap<ConnectionId, ConnState>>,
    /// Connections in the order they arrived, until their handshake deadline passes.
    arrivals: Mutex<VecDeque<(Instant, TransportClient)>>,
}

impl ServerAuthHandler {
    /// Wraps `inner`, requiring peers to prove they know `secret` within `timeout`.
    pub fn new(inner: Arc<dyn TransportHandler>, secret: &str, timeout: Duration) -> Self {
        Self {
            inner,
            secret: secret.as_bytes().to_vec(),
            timeout,
            conns: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(VecDeque::new()),
        }
    }

    /// Records `client`'s arrival and closes connections that arrived more
    /// than the timeout ago and are still not authenticated.
    fn arrive_and_reap(&self, client: &TransportClient) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
            arrivals.push_back((now, client.clone()));
            while let Some((at, _)) = arrivals.front()
                && now.duration_since(*at) > self.timeout
            {
                expired.extend(arrivals.pop_front().map(|(_, c)| c));
            }
        }
        for c in expired {
            let pending = matches!(
                self.conns().get(&c.id()),
                Some(ConnState::AwaitHello | ConnState::Handshaking(_))
            );
            if pending {
                tracing::warn!(
                    peer = %c.peer_addr(), timeout = ?self.timeout,
                    "authentication failed: no handshake within the timeout; closing the connection"
                );
                self.conns().insert(c.id(), ConnState::Refused);
                c.close();
            }
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, ConnState>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_authenticated(&self, client: &TransportClient) -> bool {
        matches!(self.conns().get(&client.id()), Some(ConnState::Authenticated))
    }

    /// Advances the handshake of `client` with an RpcRequest body.
    fn step(&self, client: &TransportClient, body: &[u8]) -> Action {
        let mut conns = self.conns();
        let state = conns.entry(client.id()).or_insert(ConnState::AwaitHello);
        let (next, action) = match std::mem::replace(state, ConnState::Refused) {
            ConnState::Authenticated => (ConnState::Authenticated, Action::Forward),
            ConnState::Refused => (ConnState::Refused, Action::Again),
            _ if !is_handshake(body) => (
                ConnState::Refused,
                Action::Refuse(AuthError::NotAuthenticated { what: "an RPC" }),
            ),
            ConnState::AwaitHello => {
                let started = fresh_nonce().and_then(|nonce| {
                    let mut hs = ServerHandshake::new(&self.secret, nonce);
                    hs.on_hello(body).map(|challenge| (hs, challenge))
                });
                match started {
                    Ok((hs, challenge)) => (ConnState::Handshaking(hs), Action::Reply(challenge)),
                    Err(e) => (ConnState::Refused, Action::Refuse(e)),
                }
            }
            ConnState::Handshaking(mut hs) => match hs.on_client_proof(body) {
                Ok(proof) => (ConnState::Authenticated, Action::Accept(proof)),
                Err(e) => (ConnState::Refused, Action::Refuse(e)),
            },
        };
        *state = next;
        action
    }

    fn refuse(&self, client: &TransportClient, request_id: Option<i64>, error: &AuthError) {
        tracing::warn!(peer = %client.peer_addr(), %error, "authentication failed; closing the connection");
        self.conns().insert(client.id(), ConnState::Refused);
        if let Some(id) = request_id {
            let text = format!(
                "{FAILURE_PREFIX}: {error}; this server requires `auth_secret` (RPC_AUTH_SECRET), \
                 and the client must use the same secret"
            );
            let _ = client.send_failure(id, &text);
        }
        client.close_after_flush();
    }
}

impl TransportHandler for ServerAuthHandler {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        match self.step(client, &body) {
            Action::Forward => self.inner.receive_rpc(client, request_id, body),
            Action::Reply(challenge) => {
                let _ = client.send_response(request_id, challenge);
            }
            Action::Accept(proof) => {
                tracing::debug!(peer = %client.peer_addr(), "peer authenticated");
                if client.send_response(request_id, proof).is_ok() {
                    self.inner.channel_active(client);
                }
            }
            Action::Refuse(e) => self.refuse(client, Some(request_id), &e),
            Action::Again => {
                let error = AuthError::NotAuthenticated { what: "an RPC" };
                let _ = client.send_failure(request_id, &format!("{FAILURE_PREFIX}: {error}"));
            }
        }
    }

    fn receive_one_way(&self, client: &TransportClient, body: Bytes) {
        if self.is_authenticated(client) {
            self.inner.receive_one_way(client, body);
        } else if !matches!(self.conns().get(&client.id()), Some(ConnState::Refused)) {
            self.refuse(
                client,
                None,
                &AuthError::NotAuthenticated {
                    what: "a one-way message",
                },
            );
        }
    }

    fn read_complete(&self, client: &TransportClient) {
        if self.is_authenticated(client) {
            self.inner.read_complete(client);
        }
    }

    fn channel_active(&self, client: &TransportClient) {
        self.conns().insert(client.id(), ConnState::AwaitHello);
        self.arrive_and_reap(client);
    }

    fn channel_inactive(&self, client: &TransportClient) {
        let state = self.conns().remove(&client.id());
        if matches!(state, Some(ConnState::Authenticated)) {
            self.inner.channel_inactive(client);
        }
    }

    fn exception_caught(&self, client: &TransportClient, error: &TransportError) {
        if self.is_authenticated(client) {
            self.inner.exception_caught(client, error);
        } else {
            tracing::warn!(peer = %client.peer_addr(), %error, "unauthenticated connection failed");
        }
    }
}

/// The client side of one outgoing connection: refuses requests the server
/// sends before it has proven itself, and tells the wrapped handler
/// `channel_active` only then. Made by [`connect`].
pub struct ClientAuthHandler {
    inner: Arc<dyn TransportHandler>,
    authenticated: AtomicBool,
}

impl ClientAuthHandler {
    fn open(&self, client: &TransportClient) {
        self.authenticated.store(true, Ordering::Release);
        self.inner.channel_active(client);
    }

    fn is_open(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    fn refuse(&self, client: &TransportClient, request_id: Option<i64>, what: &'static str) {
        let error = AuthError::NotAuthenticated { what };
        tracing::warn!(peer = %client.peer_addr(), %error, "closing a connection the server has not authenticated");
        if let Some(id) = request_id {
            let _ = client.send_failure(id, &format!("{FAILURE_PREFIX}: {error}"));
        }
        client.close_after_flush();
    }
}

impl TransportHandler for ClientAuthHandler {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        if self.is_open() {
            self.inner.receive_rpc(client, request_id, body);
        } else {
            self.refuse(client, Some(request_id), "an RPC");
        }
    }

    fn receive_one_way(&self, client: &TransportClient, body: Bytes) {
        if self.is_open() {
            self.inner.receive_one_way(client, body);
        } else {
            self.refuse(client, None, "a one-way message");
        }
    }

    fn channel_inactive(&self, client: &TransportClient) {
        if self.is_open() {
            self.inner.channel_inactive(client);
        }
    }

    fn read_complete(&self, client: &TransportClient) {
        if self.is_open() {
            self.inner.read_complete(client);
        }
    }

    fn exception_caught(&self, client: &TransportClient, error: &TransportError) {
        if self.is_open() {
            self.inner.exception_caught(client, error);
        } else {
            tracing::warn!(peer = %client.peer_addr(), %error, "connection failed during authentication");
        }
    }
}

/// The handler to bind a server with: `handler` itself when `conf` has no
/// `auth_secret`, else `handler` behind a [`ServerAuthHandler`] whose
/// handshake timeout is the connect timeout. Backends call this in `Transport::bind`.
pub fn server_handler(conf: &TransportConf, handler: Arc<dyn TransportHandler>) -> Arc<dyn TransportHandler> {
    match conf.auth_secret() {
        Some(secret) => Arc::new(ServerAuthHandler::new(handler, secret, conf.connect_timeout())),
        None => handler,
    }
}

/// Connects with `connect_raw` and, when `conf` has an `auth_secret`, runs the
/// client's side of the handshake before returning (Spark's
/// `TransportClientBootstrap`). Backends call this in `Transport::connect`.
///
/// # Errors
/// The errors of `connect_raw`; [`TransportError::AuthenticationFailed`]
/// (the connection is then closed) when the handshake fails or takes longer
/// than the connect timeout.
pub fn connect(
    conf: &TransportConf,
    handler: Arc<dyn TransportHandler>,
    connect_raw: impl FnOnce(Arc<dyn TransportHandler>) -> Result<TransportClient, TransportError>,
) -> Result<TransportClient, TransportError> {
    let Some(secret) = conf.auth_secret() else {
        return connect_raw(handler);
    };
    let gate = Arc::new(ClientAuthHandler {
        inner: handler,
        authenticated: AtomicBool::new(false),
    });
    let client = connect_raw(gate.clone())?;
    let result = fresh_nonce()
        .map(|nonce| ClientHandshake::new(secret.as_bytes(), nonce))
        .and_then(|hs| handshake(&client, hs, gate, conf.connect_timeout()));
    match result {
        Ok(()) => Ok(client),
        Err(source) => {
            client.close();
            Err(TransportError::AuthenticationFailed {
                peer: client.peer_addr(),
                source,
            })
        }
    }
}

fn as_auth_error(e: TransportError) -> AuthError {
    match e {
        TransportError::RemoteFailure { message } => AuthError::Refused { message },
        TransportError::ConnectionClosed { reason, .. } => AuthError::ConnectionLost { reason },
        other => AuthError::ConnectionLost {
            reason: other.to_string(),
        },
    }
}

/// Runs steps 1–4 over `client`, blocking up to `timeout`. The last step's
/// check runs on the event-loop thread, which opens the gate before the next
/// frame is read.
fn handshake(
    client: &TransportClient,
    mut hs: ClientHandshake,
    gate: Arc<ClientAuthHandler>,
    timeout: Duration,
) -> Result<(), AuthError> {
    let (tx, rx) = mpsc::sync_channel::<Result<(), AuthError>>(2);
    let conn = client.clone();
    let hello = hs.hello();
    let on_challenge = move |res: Result<Bytes, TransportError>| {
        let proof = match res.map_err(as_auth_error).and_then(|b| hs.on_challenge(&b)) {
            Ok(p) => p,
            Err(e) => return drop(tx.try_send(Err(e))),
        };
        let done = tx.clone();
        let opened = conn.clone();
        let on_proof = move |res: Result<Bytes, TransportError>| {
            let checked = res.map_err(as_auth_error).and_then(|b| hs.on_server_proof(&b));
            if checked.is_ok() {
                gate.open(&opened);
            }
            let _ = done.try_send(checked);
        };
        if let Err(e) = conn.send_rpc(proof, on_proof) {
            let _ = tx.try_send(Err(as_auth_error(e)));
        }
    };
    client.send_rpc(hello, on_challenge).map_err(as_auth_error)?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(AuthError::Timeout { timeout }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(AuthError::ConnectionLost {
            reason: "the handshake's callbacks were dropped".into(),
        }),
    }
}

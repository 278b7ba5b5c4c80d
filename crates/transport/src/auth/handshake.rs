//! The handshake itself, sans IO: the four messages and the two state machines.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AuthError;

/// The 8 bytes every handshake message starts with (`"SPRKAUTH"`). The first
/// byte (0x53) can never start an RPC envelope (whose first byte is its
/// version, 1), so a handshake message is never mistaken for an RPC.
pub const MAGIC: [u8; 8] = *b"SPRKAUTH";

/// The handshake version byte that follows [`MAGIC`].
pub const VERSION: u8 = 1;

/// Bytes of a nonce and of an HMAC-SHA256 proof.
pub const NONCE_LEN: usize = 32;

/// Bytes of every handshake message: magic, version, step, 32-byte value.
pub const MESSAGE_LEN: usize = MAGIC.len() + 2 + NONCE_LEN;

const CLIENT_LABEL: &[u8] = b"spark-rpc-auth v1 client proof";
const SERVER_LABEL: &[u8] = b"spark-rpc-auth v1 server proof";

/// The step byte of a handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// 1, client → server (RpcRequest): the client's nonce.
    ClientHello = 1,
    /// 2, server → client (RpcResponse): the server's nonce.
    ServerChallenge = 2,
    /// 3, client → server (RpcRequest): HMAC(secret, client label ‖ client nonce ‖ server nonce).
    ClientProof = 3,
    /// 4, server → client (RpcResponse): HMAC(secret, server label ‖ client nonce ‖ server nonce).
    ServerProof = 4,
}

impl Step {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::ClientHello,
            2 => Self::ServerChallenge,
            3 => Self::ClientProof,
            4 => Self::ServerProof,
            _ => return None,
        })
    }
}

/// Whether `body` starts with the handshake magic: a handshake message, or an
/// attempt at one.
pub fn is_handshake(body: &[u8]) -> bool {
    body.starts_with(&MAGIC)
}

/// Encodes one handshake message.
pub fn encode(step: Step, value: &[u8; NONCE_LEN]) -> Bytes {
    let mut out = Vec::with_capacity(MESSAGE_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(step as u8);
    out.extend_from_slice(value);
    Bytes::from(out)
}

/// Parses a handshake message that must be step `want`; returns its 32-byte value.
///
/// # Errors
/// [`AuthError::Malformed`] for a wrong length, magic, version, or step.
pub fn parse(body: &[u8], want: Step) -> Result<[u8; NONCE_LEN], AuthError> {
    let bad = |reason: String| Err(AuthError::Malformed { reason });
    if !is_handshake(body) {
        return bad(format!(
            "expected handshake step {want:?}, got a message without the magic prefix"
        ));
    }
    if body.len() != MESSAGE_LEN {
        return bad(format!(
            "a handshake message is {MESSAGE_LEN} bytes, got {}",
            body.len()
        ));
    }
    if body[8] != VERSION {
        return bad(format!(
            "handshake version {}, this build speaks {VERSION}",
            body[8]
        ));
    }
    match Step::from_byte(body[9]) {
        Some(step) if step == want => Ok(body[10..].try_into().expect("32 bytes by the length check")),
        other => bad(format!(
            "expected handshake step {want:?}, got {other:?} (byte {})",
            body[9]
        )),
    }
}

/// A fresh random nonce from the operating system.
///
/// # Errors
/// [`AuthError::Random`] when the OS cannot supply random bytes.
pub fn fresh_nonce() -> Result<[u8; NONCE_LEN], AuthError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| AuthError::Random {
        reason: e.to_string(),
    })?;
    Ok(nonce)
}

fn mac(secret: &[u8], label: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac
}

fn proof(secret: &[u8], label: &[u8], cn: &[u8], sn: &[u8]) -> [u8; NONCE_LEN] {
    mac(secret, label, cn, sn).finalize().into_bytes().into()
}

/// Constant-time check of `proof` (`hmac`'s `verify_slice`).
fn verify(secret: &[u8], label: &[u8], cn: &[u8], sn: &[u8], proof: &[u8]) -> Result<(), AuthError> {
    mac(secret, label, cn, sn)
        .verify_slice(proof)
        .map_err(|_| AuthError::WrongSecret)
}

/// Where a [`ClientHandshake`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    HelloSent,
    ProofSent([u8; NONCE_LEN]),
    Done,
    Failed,
}

/// The client side: [`hello`](Self::hello), then
/// [`on_challenge`](Self::on_challenge) gives the proof to send, then
/// [`on_server_proof`](Self::on_server_proof) checks the server's.
pub struct ClientHandshake {
    secret: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    state: ClientState,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("state", &self.state)
            .finish()
    }
}

impl ClientHandshake {
    /// A handshake proving knowledge of `secret`, with the client nonce `nonce`
    /// (use [`fresh_nonce`]).
    pub fn new(secret: &[u8], nonce: [u8; NONCE_LEN]) -> Self {
        Self {
            secret: secret.to_vec(),
            nonce,
            state: ClientState::HelloSent,
        }
    }

    /// Message 1, to send as an RpcRequest.
    pub fn hello(&self) -> Bytes {
        encode(Step::ClientHello, &self.nonce)
    }

    /// Takes message 2 (the server's RpcResponse) and returns message 3, to send as an RpcRequest.
    ///
    /// # Errors
    /// [`AuthError::Malformed`], or [`AuthError::OutOfOrder`] if not awaiting the challenge.
    pub fn on_challenge(&mut self, body: &[u8]) -> Result<Bytes, AuthError> {
        if self.state != ClientState::HelloSent {
            return Err(self.fail(AuthError::OutOfOrder { step: "challenge" }));
        }
        let server_nonce = parse(body, Step::ServerChallenge).map_err(|e| self.fail(e))?;
        if server_nonce == self.nonce {
            // A server reflecting our own nonce back is not choosing a fresh one.
            return Err(self.fail(AuthError::Malformed {
                reason: "the server's nonce equals the client's".into(),
            }));
        }
        self.state = ClientState::ProofSent(server_nonce);
        Ok(encode(
            Step::ClientProof,
            &proof(&self.secret, CLIENT_LABEL, &self.nonce, &server_nonce),
        ))
    }

    /// Takes message 4 (the server's RpcResponse) and checks the server's proof.
    ///
    /// # Errors
    /// [`AuthError::WrongSecret`] when the server does not know the secret;
    /// [`AuthError::Malformed`]; [`AuthError::OutOfOrder`].
    pub fn on_server_proof(&mut self, body: &[u8]) -> Result<(), AuthError> {
        let ClientState::ProofSent(server_nonce) = self.state else {
            return Err(self.fail(AuthError::OutOfOrder { step: "server proof" }));
        };
        let got = parse(body, Step::ServerProof).map_err(|e| self.fail(e))?;
        verify(&self.secret, SERVER_LABEL, &self.nonce, &server_nonce, &got).map_err(|e| self.fail(e))?;
        self.state = ClientState::Done;
        Ok(())
    }

    /// Whether the server has proven it knows the secret.
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    fn fail(&mut self, e: AuthError) -> AuthError {
        self.state = ClientState::Failed;
        e
    }
}

/// Where a [`ServerHandshake`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitHello,
    ChallengeSent([u8; NONCE_LEN]),
    Done,
    Failed,
}

/// The server side: [`on_hello`](Self::on_hello) gives the challenge, then
/// [`on_client_proof`](Self::on_client_proof) checks the client's proof and
/// gives the server's.
pub struct ServerHandshake {
    secret: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    state: ServerState,
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("state", &self.state)
            .finish()
    }
}

impl ServerHandshake {
    /// A handshake checking that the client knows `secret`, challenging it with
    /// `nonce` (use [`fresh_nonce`]; a fresh one per connection defeats replay).
    pub fn new(secret: &[u8], nonce: [u8; NONCE_LEN]) -> Self {
        Self {
            secret: secret.to_vec(),
            nonce,
            state: ServerState::AwaitHello,
        }
    }

    /// Takes message 1 and returns message 2, to send as the RpcResponse.
    ///
    /// # Errors
    /// [`AuthError::Malformed`], or [`AuthError::OutOfOrder`] if not awaiting the hello.
    pub fn on_hello(&mut self, body: &[u8]) -> Result<Bytes, AuthError> {
        if self.state != ServerState::AwaitHello {
            return Err(self.fail(AuthError::OutOfOrder { step: "hello" }));
        }
        let client_nonce = parse(body, Step::ClientHello).map_err(|e| self.fail(e))?;
        if client_nonce == self.nonce {
            return Err(self.fail(AuthError::Malformed {
                reason: "the client's nonce equals the server's".into(),
            }));
        }
        self.state = ServerState::ChallengeSent(client_nonce);
        Ok(encode(Step::ServerChallenge, &self.nonce))
    }

    /// Takes message 3, checks the client's proof in constant time, and
    /// returns message 4, to send as the RpcResponse. The peer is then authenticated.
    ///
    /// # Errors
    /// [`AuthError::WrongSecret`] when the client does not know the secret (or
    /// replays a proof made for another challenge); [`AuthError::Malformed`];
    /// [`AuthError::OutOfOrder`].
    pub fn on_client_proof(&mut self, body: &[u8]) -> Result<Bytes, AuthError> {
        let ServerState::ChallengeSent(client_nonce) = self.state else {
            return Err(self.fail(AuthError::OutOfOrder { step: "client proof" }));
        };
        let got = parse(body, Step::ClientProof).map_err(|e| self.fail(e))?;
        verify(&self.secret, CLIENT_LABEL, &client_nonce, &self.nonce, &got).map_err(|e| self.fail(e))?;
        self.state = ServerState::Done;
        Ok(encode(
            Step::ServerProof,
            &proof(&self.secret, SERVER_LABEL, &client_nonce, &self.nonce),
        ))
    }

    /// Whether the client has proven it knows the secret.
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    fn fail(&mut self, e: AuthError) -> AuthError {
        self.state = ServerState::Failed;
        e
    }
}

#[cfg(test)]
mod tests;

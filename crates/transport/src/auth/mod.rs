//! Shared-secret authentication of connections (Spark's `spark.authenticate`
//! with `AuthRpcHandler` on the server and a `TransportClientBootstrap` on the client).
//!
//! Off by default; on when [`TransportConf::auth_secret`](crate::TransportConf::auth_secret)
//! is set (`auth_secret`, `RPC_AUTH_SECRET`). Then, before any RPC is
//! dispatched on a connection, each end proves to the other that it knows the
//! secret, with HMAC-SHA256 over a fresh 32-byte random nonce from each side,
//! checked in constant time. A replayed handshake fails: the other side's
//! nonce is new every time. The secret itself never crosses the wire.
//!
//! Every backend runs the same code: [`server_handler`] wraps the handler a
//! server is bound with ([`ServerAuthHandler`]: nothing reaches the wrapped
//! handler, not even `channel_active`, before the peer has proven itself), and
//! [`connect`] runs the client's side of the handshake right after the TCP
//! connection is made, before `Transport::connect` returns ([`ClientAuthHandler`]
//! likewise refuses requests the server sends before the server has proven itself).
//!
//! # Wire format
//!
//! The handshake travels in ordinary frames. Each of its four messages is 42 bytes:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | magic `SPRKAUTH` (`53 50 52 4B 41 55 54 48`) |
//! | 8 | version, 1 |
//! | 9 | step: 1, 2, 3 or 4 |
//! | 10..42 | a nonce or an HMAC-SHA256 proof |
//!
//! 1. client → server, RpcRequest id *a*: step 1, the client nonce `cn`;
//! 2. server → client, RpcResponse id *a*: step 2, the server nonce `sn`;
//! 3. client → server, RpcRequest id *b*: step 3,
//!    `HMAC-SHA256(secret, "spark-rpc-auth v1 client proof" ‖ cn ‖ sn)`;
//! 4. server → client, RpcResponse id *b*: step 4,
//!    `HMAC-SHA256(secret, "spark-rpc-auth v1 server proof" ‖ cn ‖ sn)`.
//!
//! The server proves itself only after the client has (so an unauthenticated
//! peer learns nothing it could test secrets against offline), and the
//! different labels stop a proof being reflected back. A server refuses a
//! failed or missing handshake with an RpcFailure whose text starts
//! `authentication failed`, sent before it closes the connection, and logs
//! the peer's address at `warn`. A connection that has not finished the
//! handshake within `connect_timeout_ms` is closed as well (checked whenever
//! another connection arrives). An RPC envelope starts with its version byte
//! 1, never with `S` (0x53), so the two cannot be confused.

mod gate;
mod handshake;

pub use gate::{ClientAuthHandler, ServerAuthHandler, connect, server_handler};
pub use handshake::{
    ClientHandshake, MAGIC, MESSAGE_LEN, NONCE_LEN, ServerHandshake, Step, VERSION, encode, fresh_nonce,
    is_handshake, parse,
};

/// The start of the RpcFailure text a server sends when it refuses a peer.
pub const FAILURE_PREFIX: &str = "authentication failed";

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The peer's proof does not match: it has another secret, or replays an old handshake.
    #[error(
        "the peer's proof does not match this end's secret: the two ends have different \
         `auth_secret`s (RPC_AUTH_SECRET), or the handshake was replayed"
    )]
    WrongSecret,
    /// A handshake message is malformed, or a message that is not one came instead.
    #[error("malformed handshake: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// A handshake message came at the wrong point.
    #[error("handshake message `{step}` arrived out of order")]
    OutOfOrder {
        /// The step that arrived.
        step: &'static str,
    },
    /// The peer refused the handshake with an RpcFailure.
    #[error(
        "the peer refused the handshake ({message}); if it runs without `auth_secret`, \
         set the same secret on both ends"
    )]
    Refused {
        /// The peer's error text.
        message: String,
    },
    /// The peer sent an RPC before authenticating.
    #[error("the peer sent {what} before authenticating; it has no `auth_secret` (RPC_AUTH_SECRET) set")]
    NotAuthenticated {
        /// What it sent.
        what: &'static str,
    },
    /// The handshake did not finish within the connect timeout.
    #[error(
        "the handshake did not finish within {timeout:?}; raise `connect_timeout_ms` if the peer is slow"
    )]
    Timeout {
        /// The connect timeout.
        timeout: std::time::Duration,
    },
    /// The connection ended during the handshake.
    #[error("the connection ended during the handshake: {reason}")]
    ConnectionLost {
        /// Why.
        reason: String,
    },
    /// The OS could not supply random bytes for a nonce.
    #[error("cannot get random bytes for a nonce: {reason}")]
    Random {
        /// The OS error.
        reason: String,
    },
}

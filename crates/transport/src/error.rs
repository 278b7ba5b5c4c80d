//! Typed errors of the transport layer.

use std::net::SocketAddr;
use std::time::Duration;

/// A frame that cannot be decoded. The connection it came on cannot be trusted
/// any more and is closed by the backend; other connections are unaffected.
///
/// Mirrors the `IllegalArgumentException`s of Spark's `TransportFrameDecoder`
/// and `MessageDecoder`, as typed values naming what was seen and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The 8-byte length prefix is negative.
    #[error("frame length {length} is negative; the peer is not speaking Spark's network-common framing")]
    NegativeLength {
        /// The length field as read.
        length: i64,
    },
    /// The length prefix is smaller than the header of any frame, or of this frame's type.
    #[error("frame length {length} is below the {min}-byte header size; the peer sent a corrupt frame")]
    LengthBelowHeader {
        /// The length field as read.
        length: i64,
        /// The smallest length allowed at this point, in bytes.
        min: usize,
    },
    /// The length prefix exceeds the configured maximum frame size.
    #[error(
        "frame length {length} bytes exceeds the maximum frame size of {max} bytes; \
         raise `max_frame_size` (RPC_MAX_FRAME_SIZE) on the receiver if such messages are legitimate"
    )]
    FrameTooLarge {
        /// The length field as read.
        length: i64,
        /// The configured maximum, in bytes.
        max: u64,
    },
    /// The type byte is not one of Spark's message types.
    #[error("unknown message type id {id}; known ids are 0..=10 (Spark's Message.Type)")]
    UnknownType {
        /// The type byte as read.
        id: u8,
    },
    /// The type is one of Spark's but not one this project carries.
    #[error(
        "message type {name} (id {id}) is not supported; only RpcRequest, RpcResponse, \
         RpcFailure and OneWayMessage are carried"
    )]
    UnsupportedType {
        /// The type byte.
        id: u8,
        /// Spark's name of the type.
        name: &'static str,
    },
    /// The body length field disagrees with what the frame length leaves for the body.
    #[error("body length field says {declared} bytes but the frame holds {actual}; the frame is corrupt")]
    BodyLengthMismatch {
        /// The body (or string) length field as read.
        declared: i64,
        /// Bytes the frame actually holds after its header.
        actual: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error(
        "the peer closed the connection mid-frame: {received} bytes of the frame arrived{}; \
         it was cut off",
        missing.map_or_else(|| " (not even its 8-byte length)".to_string(), |m| format!(", {m} more were due"))
    )]
    Truncated {
        /// Bytes of the unfinished frame that arrived, length prefix included.
        received: usize,
        /// Bytes still due, when the length prefix was complete.
        missing: Option<usize>,
    },
    /// An RpcFailure's error string is not valid UTF-8.
    #[error("RpcFailure error string is not valid UTF-8 (at byte {valid_up_to})")]
    InvalidUtf8 {
        /// Bytes of valid UTF-8 before the first invalid sequence.
        valid_up_to: usize,
    },
}

/// Errors of a transport operation: connecting, binding, sending, or an RPC
/// that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// A socket operation failed.
    #[error("{op} {addr} failed: {message}")]
    Io {
        /// What was being done: "bind", "connect", "read from", "write to", ...
        op: &'static str,
        /// The address involved.
        addr: SocketAddr,
        /// The OS error kind.
        kind: std::io::ErrorKind,
        /// The OS error text.
        message: String,
    },
    /// Connecting did not finish within the connect timeout.
    #[error(
        "connecting to {addr} timed out after {timeout:?}; check the address, or raise `connect_timeout_ms` (RPC_CONNECT_TIMEOUT_MS)"
    )]
    ConnectTimeout {
        /// The address being connected to.
        addr: SocketAddr,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The connection is closed: the peer went away, or it was closed locally.
    /// Every RPC outstanding on it fails with this error at once.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionClosed {
        /// The remote address.
        peer: SocketAddr,
        /// Why it closed.
        reason: String,
    },
    /// The peer sent a frame that could not be decoded; the connection was closed.
    #[error("bad frame from {peer}: {source}")]
    Decode {
        /// The remote address.
        peer: SocketAddr,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },
    /// A message to send is larger than the maximum frame size.
    #[error(
        "a {length}-byte frame exceeds the maximum frame size of {max} bytes; send less per message \
         or raise `max_frame_size` (RPC_MAX_FRAME_SIZE) on both ends"
    )]
    FrameTooLarge {
        /// Bytes of the whole frame, header included.
        length: u64,
        /// The configured maximum, in bytes.
        max: u64,
    },
    /// `send_rpc` on a connection that already has
    /// `max_outstanding_rpcs_per_connection` RPCs awaiting their answer; the
    /// RPC was not sent and the connection stays open.
    #[error(
        "{limit} RPCs already await their answers on the connection to {peer}; wait for some to be \
         answered, or raise `max_outstanding_rpcs_per_connection` (RPC_MAX_OUTSTANDING_RPCS_PER_CONNECTION)"
    )]
    TooManyOutstandingRpcs {
        /// The remote address.
        peer: SocketAddr,
        /// The configured limit, a count of RPCs.
        limit: usize,
    },
    /// The peer answered the RPC with an RpcFailure.
    #[error("remote failure: {message}")]
    RemoteFailure {
        /// The error string the peer sent.
        message: String,
    },
    /// The requested IO mode cannot run here.
    #[error("io mode `{mode}` is not available: {reason}")]
    IoModeUnavailable {
        /// The mode asked for.
        mode: crate::IoMode,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A blocking call (such as `Transport::connect`) was made on one of the
    /// transport's own event-loop threads, where it would wait on itself.
    #[error("`{call}` blocks and was called on an event-loop thread; call it from another thread")]
    BlockingCallOnEventLoop {
        /// The call made.
        call: &'static str,
    },
    /// The connection's authentication handshake failed (see [`crate::auth`]);
    /// the connection was closed.
    #[error(
        "authentication with {peer} failed: {source}; both ends need the same `auth_secret` (RPC_AUTH_SECRET)"
    )]
    AuthenticationFailed {
        /// The remote address.
        peer: SocketAddr,
        /// What went wrong.
        #[source]
        source: crate::auth::AuthError,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    InvalidConfig(#[from] crate::ConfError),
    /// The transport (or server) has been shut down.
    #[error("the transport is shut down; create a new one")]
    Shutdown,
}

impl TransportError {
    /// Builds [`TransportError::Io`] from an `std::io::Error`.
    pub fn io(op: &'static str, addr: SocketAddr, err: &std::io::Error) -> Self {
        Self::Io {
            op,
            addr,
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

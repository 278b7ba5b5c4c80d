//! `RpcError`: what can go wrong in the RPC layer, with what to do about it.

use std::time::Duration;

use transport::TransportError;

/// Errors of the RPC layer (Spark's `RpcEnvStoppedException`,
/// `RpcTimeoutException`, `SparkException("Could not find ...")`, ...).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// No endpoint of that name is registered at that address.
    #[error(
        "no endpoint named `{name}` at {address}; check the name, or that the endpoint was set up before asking"
    )]
    EndpointNotFound {
        /// The endpoint name asked for.
        name: String,
        /// Where it was looked up.
        address: String,
    },
    /// An endpoint of that name is already registered in this RpcEnv.
    #[error("an endpoint named `{name}` is already registered; stop it first or pick another name")]
    EndpointAlreadyExists {
        /// The name.
        name: String,
    },
    /// The endpoint has been stopped and takes no more messages.
    #[error("endpoint `{name}` is stopped; set up a new one to send to")]
    EndpointStopped {
        /// The endpoint name.
        name: String,
    },
    /// The RpcEnv is shut down.
    #[error("the RpcEnv is stopped; create a new one")]
    EnvStopped,
    /// An ask got no answer in time.
    #[error(
        "ask to `{endpoint}` timed out after {timeout:?}; raise `ask_timeout_ms` (RPC_ASK_TIMEOUT_MS, now {timeout_ms}) \
         or look at the endpoint's backlog"
    )]
    AskTimeout {
        /// The endpoint asked.
        endpoint: String,
        /// The timeout that passed.
        timeout: Duration,
        /// The same, in milliseconds as configured.
        timeout_ms: u64,
    },
    /// The remote endpoint failed the call (it called `send_failure`, returned
    /// an error, or panicked), or the remote RpcEnv refused the message.
    #[error("remote endpoint failed: {message}")]
    RemoteFailure {
        /// The message the remote side sent.
        message: String,
    },
    /// The connection the message travelled on was lost before an answer came.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost {
        /// The remote address.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Connecting to the remote RpcEnv failed.
    #[error("cannot reach {address}: {source}")]
    ConnectFailed {
        /// The address.
        address: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// Another transport error.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A message could not be serialized.
    #[error("cannot serialize a message of type {type_name}: {reason}")]
    Serialize {
        /// The Rust type.
        type_name: &'static str,
        /// rkyv's error.
        reason: String,
    },
    /// Received bytes are not a valid archived message of the expected type.
    #[error("invalid message for {type_name}: {reason}")]
    InvalidMessage {
        /// The Rust type expected.
        type_name: &'static str,
        /// What bytecheck found, or what was malformed.
        reason: String,
    },
    /// An address string or host is invalid.
    #[error("invalid address `{address}`: {reason}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] transport::ConfError),
    /// A reference's message types do not match the endpoint it names.
    #[error("endpoint `{name}` takes messages of another type than this reference's {type_name}")]
    TypeMismatch {
        /// The endpoint name.
        name: String,
        /// The reference's message type.
        type_name: &'static str,
    },
    /// A local endpoint's handler panicked while processing an ask.
    #[error("endpoint `{name}` panicked: {message}")]
    EndpointPanicked {
        /// The endpoint name.
        name: String,
        /// The panic message.
        message: String,
    },
    /// The endpoint dropped the call context without replying.
    #[error("endpoint `{name}` dropped the call without replying")]
    NoReply {
        /// The endpoint name.
        name: String,
    },
}

impl RpcError {
    /// Maps a transport error seen by an RPC into the error a user acts on.
    pub(crate) fn from_transport(e: TransportError) -> Self {
        match e {
            TransportError::ConnectionClosed { peer, reason } => Self::ConnectionLost {
                peer: peer.to_string(),
                reason,
            },
            TransportError::RemoteFailure { message } => Self::RemoteFailure { message },
            other => Self::Transport(other),
        }
    }
}

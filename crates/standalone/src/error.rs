//! `StandaloneError`: what can go wrong starting or running a Master or a Worker, and what to do.

use std::time::Duration;

/// Errors of the standalone cluster.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The RPC layer failed (creating the RpcEnv, binding, registering the endpoint, an ask).
    #[error(transparent)]
    Rpc(#[from] rpc::RpcError),
    /// A configuration key, value or file is wrong.
    #[error(transparent)]
    Config(#[from] transport::ConfError),
    /// The `[standalone]` table or a `STANDALONE_*` variable has a bad key or value.
    #[error("bad standalone setting `{key}` = `{value}`: expected {expected}")]
    BadSetting {
        /// The key or environment variable.
        key: String,
        /// The value seen.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// A host name did not resolve to an address to bind.
    #[error("cannot resolve host `{host}` to bind; use an IP address such as 127.0.0.1 or 0.0.0.0")]
    Resolve {
        /// The host.
        host: String,
    },
    /// The master refused the registration (Spark's `RegisterWorkerFailed`).
    #[error("the master refused to register worker `{id}`: {reason}; give the worker another id (--id)")]
    RegistrationRefused {
        /// The worker id.
        id: String,
        /// The master's reason.
        reason: String,
    },
    /// Registration kept failing until the configured time ran out.
    #[error(
        "worker `{id}` could not register with the master at {master} after {attempts} attempts over {elapsed:?} \
         (last error: {last_error}); check that the master runs and that master_host / master_port \
         (STANDALONE_MASTER_HOST / STANDALONE_MASTER_PORT, --master) point at it, or raise register_timeout_ms"
    )]
    RegistrationTimedOut {
        /// The worker id.
        id: String,
        /// The master's address.
        master: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The error of the last attempt.
        last_error: String,
    },
    /// Waiting for something took longer than allowed.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// The web UI could not start.
    #[error(
        "cannot start the web UI on {address}: {reason}; pick another web_ui_port (--web-ui-port, 0 picks a free one)"
    )]
    WebUi {
        /// Where it tried to listen.
        address: String,
        /// Why it failed.
        reason: String,
    },
    /// The master answered with a reply that does not fit the request.
    #[error("unexpected reply from the master to {request}: {reply}")]
    UnexpectedReply {
        /// The request.
        request: &'static str,
        /// The reply, debug-printed.
        reply: String,
    },
    /// An OS-level failure (threads, signals, files).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The crate's `Result`.
pub type Result<T, E = StandaloneError> = std::result::Result<T, E>;

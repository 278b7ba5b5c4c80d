//! The messages between Master and Workers (Spark's `DeployMessages`).
//!
//! An endpoint has one message type and one reply type, so each side's
//! messages are an enum: [`MasterMessage`] / [`MasterReply`] for the `Master`
//! endpoint, [`WorkerMessage`] for a `Worker` endpoint. They travel as rkyv
//! archives and the master reads heartbeats in place, without copying.

/// The name the master's endpoint is registered under (Spark's `Master.ENDPOINT_NAME`).
pub const MASTER_ENDPOINT_NAME: &str = "Master";

/// The name a worker's endpoint is registered under (Spark's `Worker.ENDPOINT_NAME`).
pub const WORKER_ENDPOINT_NAME: &str = "Worker";

pub use defs::*;

/// The definitions. rkyv's derive generates resolver types whose fields carry
/// no docs, so `missing_docs` is allowed here only; every type below is documented.
#[allow(missing_docs)]
mod defs {
    use rkyv::{Archive, Deserialize, Serialize};

    /// A worker's registration (Spark's `RegisterWorker`).
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct RegisterWorker {
        /// The worker's id, unique in the cluster.
        pub id: String,
        /// The host the worker's RpcEnv is reached at.
        pub host: String,
        /// The worker's RPC port (0 for a client-mode RpcEnv).
        pub port: u16,
        /// Cores the worker offers.
        pub cores: u32,
        /// Memory the worker offers, in MiB.
        pub memory_mb: u64,
        /// The worker's IO mode (`epoll` or `io_uring`), shown in the web UI.
        pub io_mode: String,
        /// The name of the worker's endpoint in its RpcEnv.
        pub endpoint_name: String,
    }

    /// What the `Master` endpoint receives (asks unless said otherwise).
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub enum MasterMessage {
        /// Which ports the master is bound to (Spark's `BoundPortsRequest`);
        /// answered with [`MasterReply::BoundPortsResponse`].
        BoundPortsRequest,
        /// A worker registers; answered with [`MasterReply::RegisteredWorker`] or
        /// [`MasterReply::RegisterWorkerFailed`].
        RegisterWorker(RegisterWorker),
        /// A worker is alive (Spark's `Heartbeat`); answered with
        /// [`MasterReply::HeartbeatAck`], or [`MasterReply::ReconnectWorker`] when the
        /// master does not know the worker (it restarted, or timed the worker out).
        Heartbeat {
            /// The worker's id.
            worker_id: String,
        },
        /// A worker is shutting down and leaves at once (Spark's `WorkerDecommissioning`
        /// / disassociation); answered with [`MasterReply::Ack`] (or sent one-way).
        WorkerStopping {
            /// The worker's id.
            worker_id: String,
        },
        /// Drop workers whose heartbeats stopped (Spark's `CheckForWorkerTimeOut`);
        /// the master sends it to itself periodically.
        CheckForWorkerTimeOut,
    }

    /// What the `Master` endpoint answers.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub enum MasterReply {
        /// The master's ports (Spark's `BoundPortsResponse`).
        BoundPortsResponse {
            /// The RPC port.
            rpc_port: u16,
            /// The web UI port; 0 when the UI is off.
            web_ui_port: u16,
        },
        /// The worker is registered (Spark's `RegisteredWorker`).
        RegisteredWorker {
            /// The master's URL, `rpc://host:port`.
            master_url: String,
            /// The master's web UI URL; empty when the UI is off.
            master_web_ui_url: String,
        },
        /// The registration is refused (Spark's `RegisterWorkerFailed`).
        RegisterWorkerFailed {
            /// Why, e.g. a live worker already has the id.
            reason: String,
        },
        /// The heartbeat was recorded.
        HeartbeatAck,
        /// The master does not know this worker: register again (Spark's `ReconnectWorker`).
        ReconnectWorker {
            /// The master's URL.
            master_url: String,
        },
        /// Done.
        Ack,
    }

    /// What a `Worker` endpoint receives: its own timers and the answers to its
    /// asks, posted back to it so that all its state changes on its own thread
    /// (as Spark's Worker does with `self.send`).
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub enum WorkerMessage {
        /// Try to register again (Spark's `ReregisterWithMaster`), for registration round `round`.
        ReregisterWithMaster {
            /// The registration round it belongs to; stale ones are ignored.
            round: u64,
        },
        /// Time to send a heartbeat (Spark's `SendHeartbeat`).
        SendHeartbeat,
        /// The master asks the worker to register again (Spark's `ReconnectWorker`).
        ReconnectWorker {
            /// The master's URL.
            master_url: String,
        },
        /// The answer to a registration attempt.
        RegisterResponse {
            /// The registration round of the attempt.
            round: u64,
            /// The master's reply, or `None` when the ask failed.
            reply: Option<MasterReply>,
            /// Why the ask failed, when it did.
            error: String,
        },
        /// The answer to a heartbeat.
        HeartbeatResponse {
            /// The registration round the heartbeat was sent in; stale ones are ignored.
            round: u64,
            /// The master's reply, or `None` when the ask failed.
            reply: Option<MasterReply>,
            /// Why the ask failed, when it did.
            error: String,
        },
    }
}

//! Apache Spark's RPC environment, in Rust, on zero-copy transports.
//!
//! The model is Spark's (`org.apache.spark.rpc`): a process creates an
//! [`RpcEnv`]; it registers named [`RpcEndpoint`]s; others get an
//! [`RpcEndpointRef`] to an endpoint and [`send`](RpcEndpointRef::send) it
//! one-way messages or [`ask`](RpcEndpointRef::ask) it questions, which it
//! answers through an [`RpcCallContext`]. Inside, a `Dispatcher` puts each
//! message in the endpoint's `Inbox` (`OnStart` first, `OnStop` last), and a
//! pool of `MessageLoop` threads processes ready inboxes; an `Outbox` per
//! remote address connects lazily. The transport under it is chosen by
//! `io_mode` in the configuration, as `spark.rpc.io.mode` chooses Netty's.
//!
//! Messages are typed: an endpoint declares its message and reply types,
//! any type deriving rkyv's `Archive`, `Serialize` and `Deserialize`. A
//! message from the same RpcEnv arrives as the value itself ([`Msg::Local`],
//! never serialized). One from another process arrives as [`Msg::Remote`]: a
//! reference into the very buffer the socket was read into, validated by
//! bytecheck first, readable at any offset because the archive uses rkyv's
//! unaligned format.
//!
//! # Example
//!
//! Two RpcEnvs on loopback; one asks the other's endpoint:
//!
//! ```
//! use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEnv, RpcEnvConfig};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
//! struct Add { a: u64, b: u64 }
//!
//! struct Adder;
//! impl RpcEndpoint for Adder {
//!     type Message = Add;
//!     type Reply = u64;
//!     fn receive_and_reply(&mut self, msg: Msg<'_, Add>, ctx: RpcCallContext<u64>) {
//!         let sum = match msg {
//!             Msg::Local(m) => m.a + m.b,
//!             Msg::Remote(m) => m.a.to_native() + m.b.to_native(), // read in place
//!         };
//!         ctx.reply(sum);
//!     }
//! }
//!
//! let server = RpcEnv::create(RpcEnvConfig::server("server", "127.0.0.1:0".parse().unwrap())).unwrap();
//! server.setup_endpoint("adder", Adder).unwrap();
//!
//! let client = RpcEnv::create(RpcEnvConfig::client("client")).unwrap();
//! let adder = client
//!     .setup_endpoint_ref::<Add, u64>(server.address().unwrap(), "adder")
//!     .unwrap();
//! assert_eq!(adder.ask_sync(Add { a: 2, b: 3 }).unwrap(), 5);
//! client.shutdown();
//! server.shutdown();
//! ```

mod address;
mod backend;
mod callback_ask;
mod config;
mod context;
mod dispatcher;
mod encode_buf;
mod endpoint;
mod endpoint_ref;
mod env;
mod envelope;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod handover;
mod inbox;
mod inbox_limits;
mod inbox_queue;
mod message;
mod message_loop;
mod outbox;
mod promise;
mod recycler;
mod timeout;
mod timer_queue;
mod verifier;

pub use address::RpcAddress;
pub use backend::create_transport;
pub use config::{DEFAULT_INBOX_CAPACITY, RpcEnvConfig};
pub use context::{RpcCallContext, RpcSender};
pub use endpoint::RpcEndpoint;
pub use endpoint_ref::RpcEndpointRef;
pub use env::{RpcEnv, RpcEnvHandle};
pub use error::RpcError;
pub use handover::{
    CONNECTION_ACK_NAME, CONNECTION_EPOCH_NAME, ConnectionAck, ConnectionEpoch, DEFAULT_HANDOVER_TIMEOUT_MS,
};
pub use inbox_limits::{EndpointOptions, InboxFullPolicy, InboxStats, ParsePolicyError};
pub use message::{ArchiveWriter, Msg, RpcMessage};
pub use outbox::{CONNECT_RETRY_INITIAL, CONNECT_RETRY_MAX, PROACTIVE_RECONNECTS};
pub use promise::AskFuture;
pub use verifier::{CheckExistence, VERIFIER_NAME};

/// Re-export of the rkyv version messages must derive with.
pub use rkyv;
/// Re-exports of the `transport` crate's types that appear in this crate's
/// API: `RpcEnvConfig::transport` is a [`TransportConf`], its `io_mode` an
/// [`IoMode`]; [`RpcError::Transport`] and [`RpcError::Config`] carry a
/// [`TransportError`] and a [`ConfError`]. So that choosing the IO mode or
/// matching `IoModeUnavailable` needs no direct dependency on `transport`.
pub use transport::{ConfError, IoMode, TransportConf, TransportError};

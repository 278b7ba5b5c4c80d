//! Sans-IO core of a Spark-style RPC transport.
//!
//! This crate holds everything about moving Apache Spark network-common
//! frames that does not touch a socket, a thread or a clock, so that every IO
//! backend shares it and it can be tested and fuzzed without a network:
//!
//! - [`protocol`]: Spark's message types and header sizes;
//! - [`Frame`], [`EncodedFrame`]: decoded frames, and frames ready to write
//!   (header inline, body shared, never copied);
//! - [`FrameDecoder`]: the incremental decoder (bytes in any split; bodies are
//!   slices of the receive buffer); [`WriteQueue`]: vectored writes of queued frames;
//! - [`BufferPool`]: pooled buffers that return to the pool when their last `Bytes` drops;
//! - [`IoMode`], [`TransportConf`]: configuration from TOML, environment and code;
//! - [`Transport`], [`TransportHandler`], [`TransportClient`],
//!   [`TransportClientFactory`]: the contract backends implement and users call;
//! - [`SpinPolicy`]: when an idle event loop polls before it parks;
//! - [`auth`]: shared-secret authentication of connections (`auth_secret`), the
//!   same on every backend.
//!
//! # Example
//!
//! Encode two frames, feed their bytes to a decoder in awkward pieces, and get
//! the frames back with bodies that point into the received memory:
//!
//! ```
//! use bytes::Bytes;
//! use transport::{BufferPool, EncodedFrame, Frame, FrameDecoder};
//!
//! let mut wire = Vec::new();
//! for frame in [
//!     EncodedFrame::rpc_request(7, Bytes::from_static(b"ping")).unwrap(),
//!     EncodedFrame::one_way(Bytes::from_static(b"hello")).unwrap(),
//! ] {
//!     wire.extend_from_slice(frame.header());
//!     wire.extend_from_slice(frame.body());
//! }
//! let mut decoder = FrameDecoder::new(128 << 20, BufferPool::default());
//! let mut frames = Vec::new();
//! for piece in wire.chunks(5) {
//!     decoder.decode(Bytes::copy_from_slice(piece), &mut |f| frames.push(f)).unwrap();
//! }
//! assert_eq!(frames[0], Frame::RpcRequest { request_id: 7, body: Bytes::from_static(b"ping") });
//! assert_eq!(frames[1], Frame::OneWayMessage { body: Bytes::from_static(b"hello") });
//! ```

pub mod auth;
mod client;
mod client_factory;
mod conf;
mod connection_limit;
mod contain;
mod decoder;
mod error;
mod frame;
mod id_hash;
mod pool;
pub mod protocol;
mod registry;
pub mod settings;
mod spin;
mod transport;
mod write_queue;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use client::{
    ConnectionId, FrameSink, ReadPause, ResponseHandler, RpcResponseCallback, RpcResponseListener,
    TransportClient,
};
pub use client_factory::TransportClientFactory;
pub use conf::{ConfError, ENV_PREFIX, IoMode, KEYS as CONF_KEYS, MAX_SPIN_BEFORE_PARK_US, TransportConf};
pub use connection_limit::{ConnectionPermit, is_power_of_ten, log_refused_connection};
pub use contain::contain_panic;
pub use decoder::FrameDecoder;
pub use error::{DecodeError, TransportError};
pub use frame::{EncodedFrame, Frame, FrameSizeError};
pub use id_hash::{RequestIdHasher, RequestIdMap};
pub use pool::{BufferPool, MAX_CLASS_SIZE, MIN_CLASS_SIZE, PoolStats, PooledBufMut};
pub use registry::{CLOSE_GRACE, ConnectionRegistry};
pub use spin::SpinPolicy;
pub use transport::{Transport, TransportHandler, TransportServer};
pub use write_queue::{MAX_IOV, WriteQueue};

//! Picks the transport backend for an IO mode (Spark's `IOMode` → Netty
//! `NioEventLoopGroup` / `EpollEventLoopGroup`). The only place the RPC layer
//! names a backend type.

use std::sync::Arc;

use transport::{IoMode, Transport, TransportConf, TransportError};
use transport_epoll::EpollTransport;

/// A transport for `conf.io_mode`: `epoll` runs on tokio; `io_uring` is not
/// available in this build and fails; `auto` picks the best available (epoll).
///
/// # Errors
/// [`TransportError::IoModeUnavailable`] for `io_uring`;
/// [`TransportError::InvalidConfig`] when `conf` does not validate.
pub fn create_transport(conf: &TransportConf) -> Result<Arc<dyn Transport>, TransportError> {
    match conf.io_mode {
        IoMode::Epoll | IoMode::Auto => Ok(Arc::new(EpollTransport::new(conf.clone())?)),
        IoMode::IoUring => Err(TransportError::IoModeUnavailable {
            mode: IoMode::IoUring,
            reason: "this build has no io_uring backend yet; use io_mode = \"epoll\" or \"auto\"".into(),
        }),
    }
}

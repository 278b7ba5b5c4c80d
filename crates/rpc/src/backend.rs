//! Picks the transport backend for an IO mode (Spark's `IOMode` → Netty's
//! NIO or EPOLL event loops). The only place the RPC layer names a backend type.

use std::sync::{Arc, Once};

use transport::{IoMode, Transport, TransportConf, TransportError};
use transport_epoll::EpollTransport;
use transport_uring::UringTransport;

static AUTO_FALLBACK_LOGGED: Once = Once::new();

/// A transport for `conf.io_mode`:
/// - `epoll`: the tokio backend ([`EpollTransport`]);
/// - `io_uring`: the io_uring backend ([`UringTransport`]), after probing the kernel;
/// - `auto`: io_uring where the probe passes; otherwise epoll, logging the
///   probe's reason once per process at `warn`.
///
/// Setting `RPC_IO_URING_FORCE_UNAVAILABLE=1` makes the probe fail, to see both paths.
///
/// # Errors
/// [`TransportError::IoModeUnavailable`] for `io_uring` when the probe fails
/// (the reason names the cause: seccomp, `kernel.io_uring_disabled`, an old
/// kernel, a missing opcode, and how to fix it); [`TransportError::InvalidConfig`]
/// when `conf` does not validate.
pub fn create_transport(conf: &TransportConf) -> Result<Arc<dyn Transport>, TransportError> {
    match conf.io_mode {
        IoMode::Epoll => Ok(Arc::new(EpollTransport::new(conf.clone())?)),
        IoMode::IoUring => Ok(Arc::new(UringTransport::new(conf.clone())?)),
        IoMode::Auto => match UringTransport::new(conf.clone()) {
            Ok(t) => Ok(Arc::new(t)),
            Err(TransportError::IoModeUnavailable { reason, .. }) => {
                AUTO_FALLBACK_LOGGED.call_once(|| {
                    tracing::warn!(%reason, "io_mode = auto: io_uring is unavailable, running on epoll");
                });
                Ok(Arc::new(EpollTransport::new(conf.clone())?))
            }
            Err(other) => Err(other),
        },
    }
}

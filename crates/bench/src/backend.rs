//! The one place that maps an IO mode to a transport backend.

use std::sync::Arc;

use transport::{IoMode, Transport, TransportConf, TransportError};
use transport_epoll::EpollTransport;

/// What `io_uring` mode says until its backend exists.
pub const IO_URING_UNAVAILABLE: &str = "io_uring backend not available yet; use --io-mode epoll";

/// Builds the backend `conf.io_mode` asks for: `epoll` runs [`EpollTransport`],
/// `auto` picks epoll (the only backend so far), `io_uring` has no backend yet.
///
/// # Errors
/// [`TransportError::IoModeUnavailable`] for `io_uring` (its reason is
/// [`IO_URING_UNAVAILABLE`]), and whatever the backend's constructor returns.
pub fn create_transport(mut conf: TransportConf) -> Result<Arc<dyn Transport>, TransportError> {
    match conf.io_mode {
        IoMode::Epoll | IoMode::Auto => {
            conf.io_mode = IoMode::Epoll;
            Ok(Arc::new(EpollTransport::new(conf)?))
        }
        IoMode::IoUring => Err(TransportError::IoModeUnavailable {
            mode: IoMode::IoUring,
            reason: IO_URING_UNAVAILABLE.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_says_it_is_not_there_yet() {
        let conf = TransportConf {
            io_mode: IoMode::IoUring,
            ..TransportConf::default()
        };
        let err = create_transport(conf).err().expect("io_uring has no backend");
        assert!(err.to_string().contains(IO_URING_UNAVAILABLE), "{err}");
    }
}

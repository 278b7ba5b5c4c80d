//! Calls into the layer above that must not unwind an event loop.
//!
//! One event-loop thread serves many connections, so a handler or callback
//! that panics while one connection ends must not take the loop, the other
//! connections, or (panicking again during unwinding) the process with it.
//! Netty does the same: an exception thrown from a handler's
//! `channelInactive` or a listener is logged and the loop goes on.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`, a call of the layer above for the connection to `peer` (a
/// [`TransportHandler`](crate::TransportHandler) method, an RPC's response
/// callback), containing a panic: it is logged at `error`, naming `what` was
/// called, and this returns `false`; the caller goes on as if `f` had
/// returned. For backends, around the calls they make as a connection
/// starts or ends (`channel_active`, `exception_caught`, `channel_inactive`);
/// [`TransportClient::connection_closed`](crate::TransportClient::connection_closed)
/// contains each response callback it runs itself.
///
/// ```
/// let peer = "127.0.0.1:7077".parse().unwrap();
/// assert!(transport::contain_panic("channel_inactive", peer, || {}));
/// assert!(!transport::contain_panic("channel_inactive", peer, || panic!("a handler's bug")));
/// ```
pub fn contain_panic(what: &str, peer: SocketAddr, f: impl FnOnce()) -> bool {
    let returned = catch_unwind(AssertUnwindSafe(f)).is_ok();
    if !returned {
        tracing::error!(
            %peer,
            call = what,
            "a handler or callback panicked; the event loop goes on (the panic is a bug in that code)"
        );
    }
    returned
}

//! A server's `max_connections`, as both backends keep it: a permit per
//! accepted connection, and a log of refusals that a flood cannot flood.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A connection's place under its server's `max_connections`: taken when the
/// connection is accepted, given back when it is dropped (after the
/// connection has ended). For backends.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<AtomicUsize>);

impl ConnectionPermit {
    /// Takes a place if fewer than `limit` are taken in `open` (the server's
    /// count of open connections); `None` when the server is full.
    pub fn try_take(open: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(open.clone()))
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Logs a connection closed for being over `max_connections`: the 1st, 10th,
/// 100th, ... of a server (counted in `refused`) at `warn`, naming the key to
/// raise, and the others at `debug`. For backends.
pub fn log_refused_connection(refused: &AtomicU64, peer: Option<SocketAddr>, limit: usize) {
    let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
    let peer = peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
    if is_power_of_ten(n) {
        tracing::warn!(
            %peer, limit, refused_so_far = n,
            "closing a new connection: the server already has `max_connections` connections open; \
             raise `max_connections` (RPC_MAX_CONNECTIONS) if this load is legitimate"
        );
    } else {
        tracing::debug!(%peer, limit, refused_so_far = n, "closing a new connection over `max_connections`");
    }
}

/// Whether `n` is 1, 10, 100, ...: which occurrences of a repeated event to
/// log at `warn`, so that a flood of them logs a handful of lines.
pub fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_stop_at_the_limit_and_come_back_when_dropped() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = ConnectionPermit::try_take(&open, 2).unwrap();
        let _b = ConnectionPermit::try_take(&open, 2).unwrap();
        assert!(ConnectionPermit::try_take(&open, 2).is_none());
        drop(a);
        assert!(ConnectionPermit::try_take(&open, 2).is_some());
        assert_eq!(
            open.load(Ordering::Acquire),
            1,
            "the permit taken above was dropped at once"
        );
    }

    #[test]
    fn refusals_are_logged_at_powers_of_ten() {
        let logged: Vec<u64> = (1..=1000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(logged, [1, 10, 100, 1000]);
    }
}

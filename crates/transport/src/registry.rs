//! `ConnectionRegistry`: the live connections of a transport or a server, so
//! that `close` and `shutdown` can reach every one of them. Both backends use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client::{ConnectionId, TransportClient};

/// How long a closing server or a shutting-down transport waits for its
/// connections to write what is queued on them before it closes the rest at
/// once ([`ConnectionRegistry::close_all_after_flush`]): 500 ms. Netty's
/// `shutdownGracefully` waits seconds; this bounds how long a peer that does
/// not read can hold a shutdown up.
pub const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// A shared set of live connections by id. Cheap to clone; clones share the set.
#[derive(Clone, Default)]
pub struct ConnectionRegistry {
    inner: Arc<Mutex<HashMap<ConnectionId, TransportClient>>>,
}

impl std::fmt::Debug for ConnectionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRegistry")
            .field("len", &self.len())
            .finish()
    }
}

impl ConnectionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectionId, TransportClient>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection (when it is established).
    pub fn insert(&self, client: &TransportClient) {
        self.lock().insert(client.id(), client.clone());
    }

    /// Removes a connection (when it has ended); no effect if absent.
    pub fn remove(&self, id: ConnectionId) {
        self.lock().remove(&id);
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Closes every registered connection (each leaves the registry as it ends).
    /// The set is copied first, so closing never runs under the registry's lock.
    pub fn close_all(&self) {
        for c in self.snapshot() {
            c.close();
        }
    }

    /// Closes every registered connection once what is queued on it is
    /// written ([`TransportClient::close_after_flush`]), waiting up to
    /// `grace` for them all to end, then closes those still open (a peer
    /// that does not read) at once. So frames sent before a server closes or
    /// a transport shuts down (answers, say) reach a peer that reads, as
    /// Netty writes what was flushed before a `close` queued after it.
    /// Returns at once when nothing is registered; waits in steps of 1 ms.
    pub fn close_all_after_flush(&self, grace: std::time::Duration) {
        for c in self.snapshot() {
            c.close_after_flush();
        }
        let deadline = std::time::Instant::now() + grace;
        while !self.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.close_all();
    }

    fn snapshot(&self) -> Vec<TransportClient> {
        self.lock().values().cloned().collect()
    }
}

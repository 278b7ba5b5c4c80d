//! `ConnectionRegistry`: the live connections of a transport or a server, so
//! that `close` and `shutdown` can reach every one of them. Both backends use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client::{ConnectionId, TransportClient};

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
        let clients: Vec<TransportClient> = self.lock().values().cloned().collect();
        for c in clients {
            c.close();
        }
    }
}

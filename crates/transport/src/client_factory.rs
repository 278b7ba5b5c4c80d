//! `TransportClientFactory`: a pool of connections per peer address
//! (Spark's `TransportClientFactory` with `numConnectionsPerPeer`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::client::TransportClient;
use crate::error::TransportError;
use crate::transport::{Transport, TransportHandler};

/// The connection slots of one peer address.
struct PeerPool {
    slots: Vec<Mutex<Option<TransportClient>>>,
}

/// Hands out connections to peers, keeping up to `connections_per_peer` per
/// address and replacing a slot's connection once it is no longer active.
pub struct TransportClientFactory {
    transport: Arc<dyn Transport>,
    handler: Arc<dyn TransportHandler>,
    peers: Mutex<HashMap<SocketAddr, Arc<PeerPool>>>,
    next: AtomicUsize,
    /// Connections made by [`create_unshared_client`](Self::create_unshared_client),
    /// kept to be closed by [`close`](Self::close); the inactive ones are
    /// pruned at each new one.
    unshared: Mutex<Vec<TransportClient>>,
}

impl TransportClientFactory {
    /// A factory connecting through `transport`; requests that peers send back
    /// on these connections go to `handler`.
    pub fn new(transport: Arc<dyn Transport>, handler: Arc<dyn TransportHandler>) -> Self {
        Self {
            transport,
            handler,
            peers: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
            unshared: Mutex::new(Vec::new()),
        }
    }

    /// The configuration of the transport it connects through.
    pub fn conf(&self) -> &crate::TransportConf {
        self.transport.conf()
    }

    /// A connection to `addr`: the active one in the next slot (round robin),
    /// or a new one made there. Blocks while connecting; other slots and peers
    /// are not held up meanwhile.
    ///
    /// # Errors
    /// The errors of [`Transport::connect`].
    pub fn create_client(&self, addr: SocketAddr) -> Result<TransportClient, TransportError> {
        let pool = {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            peers
                .entry(addr)
                .or_insert_with(|| {
                    let n = self.transport.conf().connections_per_peer.max(1);
                    Arc::new(PeerPool {
                        slots: (0..n).map(|_| Mutex::new(None)).collect(),
                    })
                })
                .clone()
        };
        let index = self.next.fetch_add(1, Ordering::Relaxed) % pool.slots.len();
        let mut slot = pool.slots[index].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = slot.as_ref().filter(|c| c.is_active()) {
            return Ok(client.clone());
        }
        let client = self.transport.connect(addr, self.handler.clone())?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// A new connection to `addr` that no other caller is handed (Spark's
    /// `createUnmanagedClient`): for a caller that keeps state with its
    /// connection, such as the RPC layer's Outbox, which opens each of its
    /// connections with its own epoch. Not in the pool, but
    /// [`close`](Self::close) closes it too. Blocks while connecting.
    ///
    /// # Errors
    /// The errors of [`Transport::connect`].
    pub fn create_unshared_client(&self, addr: SocketAddr) -> Result<TransportClient, TransportError> {
        let client = self.transport.connect(addr, self.handler.clone())?;
        let mut unshared = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        unshared.retain(TransportClient::is_active);
        unshared.push(client.clone());
        Ok(client)
    }

    /// Active connections held, over all peers.
    pub fn active_connections(&self) -> usize {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .values()
            .flat_map(|p| p.slots.iter())
            .filter(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(TransportClient::is_active)
            })
            .count()
            + self
                .unshared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|c| c.is_active())
                .count()
    }

    /// Closes every connection it made.
    pub fn close(&self) {
        let peers = std::mem::take(&mut *self.peers.lock().unwrap_or_else(|e| e.into_inner()));
        for pool in peers.values() {
            for slot in &pool.slots {
                if let Some(c) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    c.close();
                }
            }
        }
        let unshared = std::mem::take(&mut *self.unshared.lock().unwrap_or_else(|e| e.into_inner()));
        for c in unshared {
            c.close();
        }
    }
}

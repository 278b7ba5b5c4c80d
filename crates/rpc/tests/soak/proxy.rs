//! A TCP proxy between the client RpcEnv and the server RpcEnv that kills
//! every connection through it at random intervals (seeded), so the soak runs
//! over real connection drops without touching the RpcEnv.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted (and forwarded).
    pub accepted: AtomicU64,
    /// Kill rounds that closed at least one connection (counted before they close it).
    pub drops: AtomicU64,
    /// Connections closed by kills.
    pub killed: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// The running proxy; [`Proxy::stop`] ends it.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Its counts.
    pub stats: Arc<ProxyStats>,
    killing: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<any port> to `target`, killing every open
    /// connection after a wait drawn uniformly from `0..2 * mean_drop`, again and again.
    pub fn start(target: SocketAddr, mean_drop: Duration, seed: u64) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the proxy");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("the proxy binds");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ProxyStats::default());
        let killing = Arc::new(AtomicBool::new(true));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (st, k) = (stats.clone(), killing.clone());
        let thread = std::thread::Builder::new()
            .name("soak-proxy".into())
            .spawn(move || rt.block_on(run(listener, target, mean_drop, seed, st, k, stop_rx)))
            .unwrap();
        Self {
            addr,
            stats,
            killing,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops killing connections (they are forwarded until [`stop`](Self::stop)).
    pub fn stop_killing(&self) {
        self.killing.store(false, Ordering::SeqCst);
    }

    /// Closes the listener and every connection, and joins the proxy's thread.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("the proxy thread");
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    listener: TcpListener,
    target: SocketAddr,
    mean_drop: Duration,
    seed: u64,
    stats: Arc<ProxyStats>,
    killing: Arc<AtomicBool>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    // Every connection watches the generation; a kill bumps it and each older connection ends.
    let (generation, _) = watch::channel(0u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let max_ms = (mean_drop.as_millis() as u64 * 2).max(1);
    let mut next_kill = Box::pin(tokio::time::sleep(Duration::from_millis(
        rng.random_range(0..max_ms),
    )));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else { continue };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let rx = generation.subscribe();
                tokio::spawn(forward(inbound, target, rx, stats.clone()));
            }
            _ = &mut next_kill => {
                let open = stats.open.load(Ordering::SeqCst);
                if killing.load(Ordering::SeqCst) && open > 0 {
                    // Counted before any connection sees the kill: a message built after a
                    // sender could notice it carries the new count.
                    stats.drops.fetch_add(1, Ordering::SeqCst);
                    generation.send_modify(|g| *g += 1);
                }
                next_kill.set(tokio::time::sleep(Duration::from_millis(rng.random_range(0..max_ms))));
            }
        }
    }
    // Closing: end every connection.
    generation.send_modify(|g| *g += 1);
}

async fn forward(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut generation: watch::Receiver<u64>,
    stats: Arc<ProxyStats>,
) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
    stats.open.fetch_add(1, Ordering::SeqCst);
    tokio::select! {
        // A killed connection forwards nothing more.
        biased;
        _ = generation.changed() => {
            stats.killed.fetch_add(1, Ordering::Relaxed);
        }
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
    }
    stats.open.fetch_sub(1, Ordering::SeqCst);
    // Dropping both sockets closes them; bytes still in the proxy's buffers are lost, as on a real drop.
}

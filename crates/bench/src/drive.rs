//! Drives per-connection loads through warmup, measurement and drain, as a
//! closed loop (chains that send their next request on completion) or an open
//! loop (a [`Pacer`] firing requests at their due times). The transport and
//! rpc levels share it; only how a request is sent differs between them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::measure::{ConnStats, Control, DRAIN_TIMEOUT, OpenSlots, Pacer, Phase, SharedStats, wait_until};
use crate::run::RunSpec;

/// One connection's (or client's) load, as the driver sees it.
pub trait ConnChain: Send + Sync + 'static {
    /// Sends the next request of a closed-loop chain; its completion sends the one after.
    fn send_next(self: Arc<Self>);
    /// Sends one open-loop request that was due at `due`.
    fn send_at(self: Arc<Self>, due: Instant);
    /// The open-loop slots; `None` in a closed loop.
    fn open_slots(&self) -> Option<&OpenSlots>;
    /// Whether nothing of this load is in flight any more.
    fn drained(&self) -> bool;
    /// The load's counters and latency histogram.
    fn stats(&self) -> &SharedStats;
}

/// Runs `spec`'s phases over `loads`: `inflight` chains each (closed loop) or
/// a pacer at `spec.workload.rate` (open loop), then waits up to
/// [`DRAIN_TIMEOUT`] for the requests still in flight (`what` names them in
/// the warning). Returns the measured time and every load's stats.
///
/// # Errors
/// [`BenchError::Io`] when the pacer thread cannot be started.
pub fn drive<L: ConnChain>(
    loads: &[Arc<L>],
    control: &Arc<Control>,
    spec: &RunSpec,
    what: &str,
) -> Result<(Duration, Vec<ConnStats>), BenchError> {
    let w = &spec.workload;
    let pacer = match w.rate {
        Some(rate) => {
            let (conns, ctl) = (loads.to_vec(), Arc::clone(control));
            let fire = move |i: usize, due: Instant| {
                let load = &conns[i];
                let slots = load.open_slots().expect("an open-loop load has slots");
                if ctl.phase() < Phase::Drain && slots.arrive(due) {
                    Arc::clone(load).send_at(due);
                }
            };
            let pacer = Pacer::spawn(Arc::clone(control), rate, w.conns, spec.client_cpus, fire, || {});
            Some(pacer.map_err(|e| BenchError::io("spawn the open-loop pacer thread", e))?)
        }
        None => {
            for load in loads {
                for _ in 0..w.inflight {
                    Arc::clone(load).send_next();
                }
            }
            None
        }
    };
    let elapsed = control.run_phases(spec.warmup_s, spec.duration_s);
    if let Some(pacer) = pacer {
        pacer.join();
    }
    if !wait_until(DRAIN_TIMEOUT, || loads.iter().all(|l| l.drained())) {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "{what} still in flight after the drain timeout");
    }
    control.set(Phase::Closed);
    let stats = loads
        .iter()
        .map(|l| std::mem::take(&mut *l.stats().lock()))
        .collect();
    Ok((elapsed, stats))
}

//! Drives per-connection loads through warmup, measurement and drain, as a
//! closed loop (chains that send their next request on completion) or an open
//! loop (a [`Pacer`] firing requests at their due times). The transport and
//! rpc levels share it; only how a request is sent differs between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::measure::{ConnStats, Control, DRAIN_TIMEOUT, OpenSlots, Pacer, Phase, SharedStats, wait_until};
use crate::remote_load::Expected;
use crate::run::RunSpec;
use crate::workload::Workload;

/// The bookkeeping every connection's load has, whatever sends its requests:
/// the run's phase, its stats, the chains (closed loop) or slots (open loop)
/// still busy, and what each answer must be.
pub struct LoadState {
    /// The run's phase.
    pub control: Arc<Control>,
    /// Counters and the latency histogram of this load.
    pub stats: SharedStats,
    /// Chains still running (closed loop); 0 once drained.
    live_chains: AtomicUsize,
    /// What every answer must be (`load --verify`); a mismatch counts as an error.
    expected: Option<Arc<Expected>>,
    /// Open loop (`--rate`): outstanding and waiting requests; `None` for a closed loop.
    open: Option<OpenSlots>,
}

/// What a load does after an answer.
pub enum Next {
    /// Send another request, its latency counted from this instant.
    Send(Instant),
    /// Nothing: the chain ended, or the open-loop slot is free.
    Stop,
}

impl LoadState {
    /// The state of one load of `w`: `inflight` chains (closed loop), or
    /// `inflight` open-loop slots when `w` has a rate.
    pub fn new(control: Arc<Control>, w: &Workload, expected: Option<Arc<Expected>>) -> Self {
        Self {
            control,
            stats: SharedStats::default(),
            live_chains: AtomicUsize::new(if w.rate.is_some() { 0 } else { w.inflight }),
            expected,
            open: w.rate.map(|_| OpenSlots::new(w.inflight)),
        }
    }

    /// Records one answer to a request sent at `sent`: a completion, or a
    /// failure when it is an error or not the expected bytes.
    /// `keep_after_error` says whether an error leaves the chain going.
    /// Returns what to do next.
    pub fn answered<E: std::fmt::Display>(
        &self,
        sent: Instant,
        result: Result<&[u8], E>,
        keep_after_error: impl FnOnce() -> bool,
    ) -> Next {
        let phase = self.control.phase();
        let ok = {
            let mut stats = self.stats.lock();
            match result {
                Ok(body) if self.expected.as_ref().is_some_and(|e| !e.matches(body)) => {
                    stats.fail(phase, 1);
                    true
                }
                Ok(_) => {
                    stats.complete(phase, sent);
                    true
                }
                Err(error) => {
                    tracing::debug!(%error, "request failed");
                    stats.fail(phase, 1);
                    keep_after_error()
                }
            }
        };
        let more = ok && phase < Phase::Drain;
        match &self.open {
            Some(slots) => slots.finish(more).map_or(Next::Stop, Next::Send),
            None if more => Next::Send(Instant::now()),
            None => {
                self.end_chain();
                Next::Stop
            }
        }
    }

    /// A request could not even be sent: counts the failure and ends its chain
    /// (closed loop) or frees its slot (open loop).
    pub fn send_failed(&self) {
        self.stats.lock().fail(self.control.phase(), 1);
        self.end_chain();
    }

    fn end_chain(&self) {
        match &self.open {
            Some(slots) => slots.release(),
            None => {
                self.live_chains.fetch_sub(1, Ordering::Release);
            }
        }
    }

    /// Whether every request of this load has finished.
    pub fn drained(&self) -> bool {
        match &self.open {
            Some(slots) => slots.outstanding() == 0,
            None => self.live_chains.load(Ordering::Acquire) == 0,
        }
    }
}

/// One connection's (or client's) load, as the driver sees it.
pub trait ConnChain: Send + Sync + 'static {
    /// Sends a request whose latency counts from `start` (now in a closed loop,
    /// its due time in an open loop); its completion decides the next.
    fn send_at(self: Arc<Self>, start: Instant);
    /// The load's bookkeeping.
    fn state(&self) -> &LoadState;
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
                let slots = load.state().open.as_ref().expect("an open-loop load has slots");
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
                    Arc::clone(load).send_at(Instant::now());
                }
            }
            None
        }
    };
    let elapsed = control.run_phases(spec.warmup_s, spec.duration_s);
    if let Some(pacer) = pacer {
        pacer.join();
    }
    if !wait_until(DRAIN_TIMEOUT, || loads.iter().all(|l| l.state().drained())) {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "{what} still in flight after the drain timeout");
    }
    control.set(Phase::Closed);
    let stats = loads
        .iter()
        .map(|l| std::mem::take(&mut *l.state().stats.lock()))
        .collect();
    Ok((elapsed, stats))
}

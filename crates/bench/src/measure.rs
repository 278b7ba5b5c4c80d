//! What both load generators share: the phases of a run (warmup, measure,
//! drain), per-connection latency recording, and the merged measurement.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Lowest latency the histograms track, in µs.
pub const LOWEST_US: u64 = 1;
/// Highest latency the histograms track, in µs (60 s); longer ones are recorded as 60 s.
pub const HIGHEST_US: u64 = 60_000_000;
/// Significant decimal digits the histograms keep.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// How long a run waits for in-flight requests to finish after the measurement ends.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// An empty latency histogram in µs, 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Where a run is; load generators read it on every completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Load runs; completions are not recorded.
    Warmup = 0,
    /// Load runs; completions are recorded.
    Measure = 1,
    /// No new requests; the ones in flight finish unrecorded.
    Drain = 2,
    /// The run is over: the transport is shutting down and errors from now on are not counted.
    Closed = 3,
}

/// The phase of a run, shared by the thread that times it and the load generators.
#[derive(Debug, Default)]
pub struct Control {
    phase: AtomicU8,
}

impl Control {
    /// A run in [`Phase::Warmup`].
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The current phase.
    #[inline]
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Warmup,
            1 => Phase::Measure,
            2 => Phase::Drain,
            _ => Phase::Closed,
        }
    }

    /// Moves the run to `phase`.
    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Sleeps through the warmup (seconds), measures for `duration` seconds, then
    /// enters [`Phase::Drain`]. Returns the measured time between the two phase
    /// changes, which is what request rates are divided by.
    pub fn run_phases(&self, warmup_s: f64, duration_s: f64) -> Duration {
        thread::sleep(Duration::from_secs_f64(warmup_s));
        let start = Instant::now();
        self.set(Phase::Measure);
        thread::sleep(Duration::from_secs_f64(duration_s));
        self.set(Phase::Drain);
        start.elapsed()
    }
}

/// What one connection saw: latencies of requests completed while measuring, and errors.
#[derive(Debug, Clone)]
pub struct ConnStats {
    /// Latency of each request completed in [`Phase::Measure`], in µs.
    pub latency_us: Histogram<u64>,
    /// Requests that failed (error response, lost connection, bad frame) before [`Phase::Closed`].
    pub errors: u64,
}

impl Default for ConnStats {
    fn default() -> Self {
        Self {
            latency_us: new_histogram(),
            errors: 0,
        }
    }
}

impl ConnStats {
    /// Records one completed request that was sent at `sent`, if the run is measuring.
    #[inline]
    pub fn complete(&mut self, phase: Phase, sent: Instant) {
        if phase == Phase::Measure {
            let us = (sent.elapsed().as_nanos() as u64).div_ceil(1000);
            self.latency_us.saturating_record(us.max(LOWEST_US));
        }
    }

    /// Counts `n` failed requests, unless the run is already [`Phase::Closed`].
    #[inline]
    pub fn fail(&mut self, phase: Phase, n: u64) {
        if phase != Phase::Closed {
            self.errors += n;
        }
    }
}

/// A connection's [`ConnStats`], shared between its load generator and the thread that collects them.
///
/// Only the connection's own event-loop thread records into it, so the lock is never contended.
#[derive(Debug, Default)]
pub struct SharedStats(Mutex<ConnStats>);

impl SharedStats {
    /// Locks the stats (a poisoned lock still yields them: they are plain counters).
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, ConnStats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The merged result of one run's load, before it becomes a [`Record`](crate::record::Record).
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The system that ran, resolved (`epoll`, not `auto`).
    pub system: String,
    /// Measured time between the start and the end of the measurement phase.
    pub elapsed: Duration,
    /// Latencies of all requests completed while measuring, in µs.
    pub latency_us: Histogram<u64>,
    /// Failed requests, all connections.
    pub errors: u64,
}

impl Measurement {
    /// Merges per-connection stats.
    pub fn merge<'a>(
        system: impl Into<String>,
        elapsed: Duration,
        conns: impl IntoIterator<Item = &'a ConnStats>,
    ) -> Self {
        let mut latency_us = new_histogram();
        let mut errors = 0;
        for c in conns {
            latency_us
                .add(&c.latency_us)
                .expect("histograms share their bounds");
            errors += c.errors;
        }
        Self {
            system: system.into(),
            elapsed,
            latency_us,
            errors,
        }
    }

    /// Requests completed while measuring.
    pub fn requests(&self) -> u64 {
        self.latency_us.len()
    }
}

/// Waits until `done()` holds or `timeout` passes, polling every millisecond.
/// Returns whether `done()` held.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_measure_phase_is_recorded_and_closed_errors_are_not_counted() {
        let mut s = ConnStats::default();
        let sent = Instant::now();
        s.complete(Phase::Warmup, sent);
        s.complete(Phase::Measure, sent);
        s.complete(Phase::Drain, sent);
        s.fail(Phase::Warmup, 1);
        s.fail(Phase::Drain, 2);
        s.fail(Phase::Closed, 4);
        assert_eq!((s.latency_us.len(), s.errors), (1, 3));
        assert!(s.latency_us.min() >= LOWEST_US);
    }

    #[test]
    fn merge_adds_connections() {
        let mut a = ConnStats::default();
        a.latency_us.record(10).unwrap();
        let mut b = ConnStats::default();
        b.latency_us.record(30).unwrap();
        b.errors = 2;
        let m = Measurement::merge("epoll", Duration::from_secs(1), [&a, &b]);
        assert_eq!((m.requests(), m.errors, m.latency_us.max()), (2, 2, 30));
    }

    #[test]
    fn phases_move_in_order() {
        let c = Control::new();
        assert_eq!(c.phase(), Phase::Warmup);
        let measured = c.run_phases(0.0, 0.01);
        assert_eq!(c.phase(), Phase::Drain);
        assert!(measured >= Duration::from_millis(10));
        assert!(wait_until(Duration::ZERO, || true));
        assert!(!wait_until(Duration::from_millis(2), || false));
    }
}

//! What the load generators share: the phases of a run (warmup, measure,
//! drain), per-connection latency recording, the merged measurement, and the
//! open loop's timetable.
//!
//! # Open loop (`--rate R`)
//! A closed loop sends a connection's next request when an earlier one completes, so a
//! stalled server also stalls the load, and the requests that would have been sent during
//! the stall are never measured (coordinated omission). With a rate, requests are due on a
//! fixed [`Timetable`] instead: request `i` of the run is due `i / R` seconds after the load
//! starts, whatever happened before. One [`Pacer`] thread walks the timetable and hands each
//! due request to connection `i mod conns` (so each connection gets `R / conns` per second);
//! a request's latency is measured from when it was *due*, not from when it went out, as
//! wrk2 does. A connection keeps at most `--inflight` requests outstanding ([`OpenSlots`]);
//! requests due beyond that wait in a queue, their latency growing, and go out as earlier
//! ones complete. So `--inflight` is the cap on outstanding requests per connection, not a
//! concurrency target; when the system cannot keep up the queue grows, latency shows it and
//! the achieved `rps` falls below `rate`. Requests still queued when the measurement ends are
//! dropped unrecorded (they would complete in the drain, which is never recorded).

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::alloc_counter;
use crate::host::{CpuList, pin_current_thread};

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
#[derive(Debug)]
pub struct Control {
    phase: AtomicU8,
    /// Heap allocations of the process during [`Phase::Measure`]; `u64::MAX` when not counted.
    allocs: AtomicU64,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(Phase::Warmup as u8),
            allocs: AtomicU64::new(u64::MAX),
        }
    }
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
    /// changes, which is what request rates are divided by. Counts the process's heap
    /// allocations in between (see [`allocs_measured`](Self::allocs_measured)).
    pub fn run_phases(&self, warmup_s: f64, duration_s: f64) -> Duration {
        thread::sleep(Duration::from_secs_f64(warmup_s));
        let allocs_before = alloc_counter::allocations();
        let start = Instant::now();
        self.set(Phase::Measure);
        thread::sleep(Duration::from_secs_f64(duration_s));
        self.set(Phase::Drain);
        let elapsed = start.elapsed();
        if let (Some(a), Some(b)) = (allocs_before, alloc_counter::allocations()) {
            self.allocs.store(b.saturating_sub(a), Ordering::Relaxed);
        }
        elapsed
    }

    /// Heap allocations of the whole process during the measurement phase of
    /// [`run_phases`](Self::run_phases), or `None` when the counting allocator is not
    /// installed (or the phases have not run).
    pub fn allocs_measured(&self) -> Option<u64> {
        Some(self.allocs.load(Ordering::Relaxed)).filter(|&n| n != u64::MAX)
    }
}

/// The open loop's fixed schedule: request `i` is due at `start + i / rate`.
#[derive(Debug, Clone, Copy)]
pub struct Timetable {
    start: Instant,
    period_ns: f64,
}

impl Timetable {
    /// A timetable of `rate_per_s` requests per second (more than 0) from `start`.
    pub fn new(start: Instant, rate_per_s: f64) -> Self {
        Self {
            start,
            period_ns: 1e9 / rate_per_s.max(f64::MIN_POSITIVE),
        }
    }

    /// When request `i` (from 0) is due.
    #[inline]
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * self.period_ns) as u64)
    }
}

/// The thread that walks a [`Timetable`] for the whole run and hands each due request to its connection.
#[derive(Debug)]
pub struct Pacer {
    thread: JoinHandle<()>,
}

impl Pacer {
    /// Starts pacing `rate` requests per second (in total) over `conns` connections:
    /// `fire(conn, due)` runs on the pacer thread for request `i` of the run, with `conn = i
    /// mod conns` and `due` its time on the timetable (already past when the pacer is late:
    /// late requests go out back to back, keeping their due times). Pacing stops when the
    /// run reaches [`Phase::Drain`]; then `stop()` runs once. The thread pins itself to `cpus`
    /// if given (it is part of the client), asks for a 1 ns timer slack (it wakes within µs
    /// of a due time instead of the default 50 µs), and asks for `SCHED_FIFO` priority 1
    /// (through `chrt`; it needs root or `CAP_SYS_NICE`): under the default scheduler, a
    /// waking pacer waits behind the busy event-loop threads on a 2-vCPU machine, and its
    /// lateness (measured here: p90 1.8 ms) would count as the system's latency. Without it
    /// a warning says so. Between batches of due requests it sleeps at least
    /// [`PACER_MIN_SLEEP`], so a pacer that has fallen behind cannot hog a CPU.
    ///
    /// # Errors
    /// The OS error when the thread cannot be spawned.
    pub fn spawn(
        control: Arc<Control>,
        rate: u64,
        conns: usize,
        cpus: Option<CpuList>,
        mut fire: impl FnMut(usize, Instant) + Send + 'static,
        stop: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Self> {
        let conns = conns.max(1) as u64;
        let body = move || {
            if let Some(cpus) = cpus
                && let Err(error) = pin_current_thread(&cpus)
            {
                tracing::warn!(%error, %cpus, "the pacer thread could not be pinned");
            }
            let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
            realtime_priority();
            let table = Timetable::new(Instant::now(), rate as f64);
            let mut i = 0u64;
            while control.phase() < Phase::Drain {
                let now = Instant::now();
                while table.due(i) <= now {
                    fire((i % conns) as usize, table.due(i));
                    i += 1;
                }
                // Sleep until the next due time (at most 10 ms, to notice the end of the run).
                let nap = (table.due(i) - now).clamp(PACER_MIN_SLEEP, Duration::from_millis(10));
                thread::sleep(nap);
            }
            stop();
        };
        let thread = thread::Builder::new()
            .name("rpc-bench-pacer".into())
            .spawn(body)?;
        Ok(Self { thread })
    }

    /// Waits for the pacer to stop (it does once the run reaches [`Phase::Drain`]).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// The least the [`Pacer`] sleeps between batches of due requests.
pub const PACER_MIN_SLEEP: Duration = Duration::from_micros(5);

/// Asks for `SCHED_FIFO` priority 1 for the calling thread, through `chrt` (no unsafe code
/// here); warns when it cannot be had.
fn realtime_priority() {
    let tid = rustix::thread::gettid().as_raw_nonzero().get().to_string();
    let status = std::process::Command::new("chrt")
        .args(["--fifo", "--pid", "1", &tid])
        .stderr(std::process::Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        tracing::warn!(
            "the open-loop pacer runs without real-time priority (chrt --fifo failed: needs root or \
             CAP_SYS_NICE, and util-linux); its scheduling delays will show as latency"
        );
    }
}

/// One connection's open-loop slots: at most `cap` requests outstanding, and the due times
/// of the requests waiting for a slot, in order.
#[derive(Debug)]
pub struct OpenSlots {
    cap: usize,
    state: Mutex<(usize, VecDeque<Instant>)>,
}

impl OpenSlots {
    /// Slots for at most `cap` (at least 1) outstanding requests.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            state: Mutex::new((0, VecDeque::with_capacity(cap.max(1)))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (usize, VecDeque<Instant>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request fell due at `due`: `true` if it takes a slot and must be sent now, `false`
    /// if it waits for one (a later [`finish`](Self::finish) hands it out).
    pub fn arrive(&self, due: Instant) -> bool {
        let mut s = self.lock();
        if s.0 < self.cap {
            s.0 += 1;
            true
        } else {
            s.1.push_back(due);
            false
        }
    }

    /// A request completed (or failed). With `more`, returns the due time of the waiting
    /// request that takes over its slot and must be sent now, if any; without (the run is
    /// draining, or the connection failed), drops the waiting requests. Either way a slot
    /// no request takes over is freed.
    pub fn finish(&self, more: bool) -> Option<Instant> {
        let mut s = self.lock();
        if !more {
            s.1.clear();
        }
        let next = s.1.pop_front();
        if next.is_none() {
            s.0 = s.0.saturating_sub(1);
        }
        next
    }

    /// Gives back a slot taken by [`arrive`](Self::arrive) or [`finish`](Self::finish) whose
    /// request could not be sent.
    pub fn release(&self) {
        let mut s = self.lock();
        s.0 = s.0.saturating_sub(1);
    }

    /// Requests outstanding (sent, not yet finished).
    pub fn outstanding(&self) -> usize {
        self.lock().0
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.lock().1.len()
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
    /// Heap allocations of the process while measuring (see [`Control::allocs_measured`]),
    /// `None` where not counted.
    pub allocs: Option<u64>,
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
            allocs: None,
        }
    }

    /// The measurement with `allocs` as its allocation count.
    pub fn with_allocs(self, allocs: Option<u64>) -> Self {
        Self { allocs, ..self }
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
    fn timetable_is_fixed() {
        let t0 = Instant::now();
        let t = Timetable::new(t0, 20_000.0);
        assert_eq!(t.due(0), t0);
        assert_eq!(t.due(1) - t0, Duration::from_micros(50));
        assert_eq!(t.due(20_000) - t0, Duration::from_secs(1));
    }

    /// A stall of the server holds the only slot; the requests that fell due meanwhile go out
    /// when it ends, and their latency counts from their due times, so it includes the wait.
    #[test]
    fn a_stall_shows_in_the_latency_of_requests_due_during_it() {
        let t0 = Instant::now();
        let table = Timetable::new(t0, 1000.0); // one request per ms
        let slots = OpenSlots::new(1);
        let mut stats = ConnStats::default();
        assert!(slots.arrive(table.due(0)), "the first request goes out");
        // The server stalls for 50 ms; the pacer hands out the 49 requests due meanwhile.
        for i in 1..50 {
            assert!(!slots.arrive(table.due(i)), "request {i} waits for the slot");
        }
        assert_eq!((slots.outstanding(), slots.waiting()), (1, 49));
        thread::sleep(Duration::from_millis(50).saturating_sub(t0.elapsed()));
        // Then it answers everything at once: each completion hands the slot to the next.
        stats.complete(Phase::Measure, table.due(0));
        while let Some(due) = slots.finish(true) {
            stats.complete(Phase::Measure, due);
        }
        assert_eq!((slots.outstanding(), slots.waiting()), (0, 0));
        let h = &stats.latency_us;
        assert_eq!(h.len(), 50);
        // Request i waited about 50 - i ms: half of them at least 25 ms, none under 1 ms,
        // though each one's service time (sent to answered) was next to nothing.
        assert!(
            h.max() >= 49_000 && h.min() >= 1_000,
            "max {} min {}",
            h.max(),
            h.min()
        );
        assert!(
            h.value_at_quantile(0.5) >= 24_000,
            "p50 {}",
            h.value_at_quantile(0.5)
        );
        // Draining drops what still waits.
        assert!(slots.arrive(Instant::now()));
        assert!(!slots.arrive(Instant::now()));
        assert_eq!(slots.finish(false), None);
        assert_eq!((slots.outstanding(), slots.waiting()), (0, 0));
    }

    #[test]
    fn the_pacer_keeps_the_rate_and_stops_at_drain() {
        let control = Control::new();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let (f, stopped) = (Arc::clone(&fired), Arc::new(AtomicU8::new(0)));
        let s = Arc::clone(&stopped);
        let started = Instant::now();
        let pacer = Pacer::spawn(
            Arc::clone(&control),
            2000,
            2,
            None,
            move |conn, due| f.lock().unwrap().push((conn, due)),
            move || s.store(1, Ordering::Relaxed),
        )
        .unwrap();
        // Until 200 have fired (100 ms at this rate), however long a loaded
        // machine keeps the pacer's thread waiting: a fixed sleep made the
        // lower bound fail under load.
        assert!(
            wait_until(Duration::from_secs(30), || fired.lock().unwrap().len() >= 200),
            "the pacer fired {} requests in 30 s at 2000/s",
            fired.lock().unwrap().len()
        );
        control.set(Phase::Drain);
        pacer.join();
        let most = (2000.0 * started.elapsed().as_secs_f64()) as usize + 1;
        assert_eq!(stopped.load(Ordering::Relaxed), 1);
        let fired = fired.lock().unwrap();
        assert!(
            (200..=most).contains(&fired.len()),
            "{} requests in {:?} at 2000/s (at most {most})",
            fired.len(),
            started.elapsed()
        );
        assert!(fired.iter().enumerate().all(|(i, &(c, _))| c == i % 2));
        let gap = fired[101].1 - fired[100].1;
        assert!(
            gap.abs_diff(Duration::from_micros(500)) <= Duration::from_micros(1),
            "{gap:?}"
        );
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

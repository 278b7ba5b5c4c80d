//! `SpinPolicy`: when an event loop with nothing to do should poll for a while
//! before it parks (adaptive spin-then-park).
//!
//! A loop that parks (`epoll_wait`, `io_uring_enter` waiting for a completion)
//! lets its vCPU halt; on a small VM, waking a halted vCPU costs tens of
//! microseconds (about 30 µs on this project's 2-vCPU machines), far more than
//! a loopback round trip kept on one core (about 5 µs). So a loop that expects
//! work soon polls for up to a budget first. Spinning burns the core
//! meanwhile, so the policy spins only while most recent idle gaps (the time
//! from going idle to the next work, whether spun or parked) were shorter
//! than the budget: a busy pipeline spins, an idle connection or a slow peer
//! parks at once. Linux's adaptive mutexes and the block layer's hybrid
//! polling choose the same way, from the waits they saw.
//!
//! It counts the share of gaps within the budget, not their mean. A client
//! asking every 200 µs sees two kinds of gap: its answer's round trip (tens
//! of µs) and the pause until its next request (the rest). Their mean sits
//! near a 100 µs budget, and under a mean rule its loop spun out the budget
//! in every pause: 5,000 asks per second took 3.0 s of CPU instead of 1.0 s,
//! and the median latency rose from 79 to 100 µs, the spinning threads
//! taking CPU time from the one that paced the requests
//! (`rpc-bench run --rate 5000`). Half the gaps within the budget is not
//! enough; three in four is.
//!
//! A spin that loses its CPU is worse than parking: on a machine whose cores
//! other processes keep busy, the spinning thread and the thread it waits for
//! share time slices (milliseconds) with them, and a 1-in-flight round trip
//! measured here fell from ~50k to ~1k per second. So a spin round whose
//! yield (`sched_yield`) took longer than the whole budget (the thread was
//! descheduled) stops the spin and turns spinning off for a while: 1 ms, doubling at each such round up
//! to 1 s, and back to 1 ms only after 10 s without one.
//!
//! A parked loop measures its gaps with the wake-up in them (about 30 µs
//! here), so a loop whose budget is not much longer than a wake-up could
//! stop spinning for good: every gap it sees while parked looks long. So a
//! loop that has not spun for 100 ms spins once (a probe); a probe that
//! finds work within the budget lifts the share to 3/4, and the loop spins
//! again until its gaps say otherwise. A probe costs at most one budget per
//! 100 ms; an idle loop, which has no new idle periods, makes none.
//!
//! A thread that may run on one CPU only never spins: whatever it waits for
//! needs that same CPU. Pinned to one CPU with its peers, a spinning loop
//! cost 5–9% of the requests at one in flight, and 27% with a MessageLoop
//! hand-off (`rpc-bench run --server-cpus 0 --client-cpus 0`, three pairs).
//!
//! The policy is sans-IO: the loop measures the gaps with its own clock and
//! reports them, the times it reads and the CPUs its thread may use; the
//! policy only decides.

use std::time::{Duration, Instant};

/// Fixed-point scale of the share of idle gaps within the budget (1.0).
const SHARE_ONE: u32 = 1 << 16;
/// Share of recent idle gaps within the budget at which a loop spins: 3/4.
const SPIN_SHARE: u32 = SHARE_ONE / 4 * 3;

/// First pause of spinning after a spin lost its CPU.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
/// Longest pause of spinning after spins kept losing their CPU.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Time without a preempted spin after which the back-off starts over at
/// [`FIRST_BACKOFF`].
const QUIET_RESET: Duration = Duration::from_secs(10);
/// While a loop does not spin because too few gaps were short, it spins
/// once this long after it last spun, to measure a gap without a wake-up in it.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How often a loop should re-read its thread's CPU affinity.
const AFFINITY_EVERY: Duration = Duration::from_millis(100);

/// Adaptive spin-then-park decision of one event loop (one per loop thread).
///
/// Keeps an exponentially weighted moving share of the loop's idle gaps that
/// ended within the budget (weight 1/4 for each new gap; it starts at 1, so a
/// new loop spins). [`spin_for`](Self::spin_for) is the budget while that
/// share is at least 3/4 and no back-off is running, zero otherwise: a
/// steady stream of short gaps spins (one long gap among them leaves the
/// share at exactly 3/4 and stops no spin; two in a row stop two), short
/// and long gaps in turn never spin. A rhythm of two short gaps and one
/// long one spins in one idle period in three, and that is always the long
/// one: the share peaks after the most short gaps in a row, which is just
/// before the long gap of any such rhythm.
/// After a long quiet spell, five short gaps in a row resume spinning, or
/// one probe: a loop that has not spun for 100 ms spins once, and a probe
/// whose gap ends within the budget lifts the share to 3/4 at once. A
/// budget of zero never spins.
///
/// # Example
///
/// ```
/// use std::time::{Duration, Instant};
/// use transport::SpinPolicy;
///
/// let now = Instant::now();
/// let mut policy = SpinPolicy::new(Duration::from_micros(100));
/// assert_eq!(policy.spin_for(now), Duration::from_micros(100));
/// // Work kept arriving within a few µs: keep spinning.
/// policy.record_idle_gap(Duration::from_micros(4));
/// assert_eq!(policy.spin_for(now), Duration::from_micros(100));
/// // A spin round lost the CPU for 3 ms: no spinning for the next 1 ms.
/// let round_start = now;
/// let round_end = now + Duration::from_millis(3);
/// assert!(policy.check_round(round_start, round_end));
/// assert_eq!(policy.spin_for(round_end), Duration::ZERO);
/// assert_eq!(policy.spin_for(round_end + Duration::from_millis(1)), Duration::from_micros(100));
/// // The peer went quiet: two long gaps and the loop parks at once.
/// for _ in 0..2 {
///     policy.record_idle_gap(Duration::from_millis(10));
/// }
/// let quiet = round_end + Duration::from_millis(2);
/// assert_eq!(policy.spin_for(quiet), Duration::ZERO);
/// // 100 ms after it last spun, it spins once to measure a gap (a probe).
/// let probe = quiet + Duration::from_millis(100);
/// assert_eq!(policy.spin_for(probe), Duration::from_micros(100));
/// ```
#[derive(Debug, Clone)]
pub struct SpinPolicy {
    budget: Duration,
    budget_ns: u64,
    /// Moving share of idle gaps that ended within the budget, in units of
    /// 1 / `SHARE_ONE`.
    share_within: u32,
    /// No spinning before this instant (a back-off after a preempted spin).
    paused_until: Option<Instant>,
    /// The next back-off's length.
    backoff: Duration,
    /// The thread may run on one CPU only (so spinning cannot pay).
    one_cpu: bool,
    /// When the loop last reported its CPU affinity.
    affinity_at: Option<Instant>,
    /// When [`spin_for`](Self::spin_for) last said to spin (or first said
    /// not to): the next probe is due [`PROBE_EVERY`] later.
    last_spin_at: Option<Instant>,
    /// The current idle period spins as a probe; its gap is not yet recorded.
    probing: bool,
}

impl SpinPolicy {
    /// A policy spinning for up to `budget` per idle period (zero: never).
    /// It starts out spinning: a loop's first gaps tell it whether to go on.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            budget_ns: u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX),
            share_within: SHARE_ONE,
            paused_until: None,
            backoff: FIRST_BACKOFF,
            one_cpu: false,
            affinity_at: None,
            last_spin_at: None,
            probing: false,
        }
    }

    /// The most this policy ever spins per idle period.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// How long to poll before parking at `now`: the budget while at least
    /// 3/4 of recent idle gaps (moving share) ended within it, no back-off
    /// runs and the thread may use more than one CPU; zero otherwise (and
    /// always for a zero budget). When the share alone stops spinning, the
    /// first call 100 ms after the loop last spun returns the budget as a
    /// probe, and so does every call until the next
    /// [`record_idle_gap`](Self::record_idle_gap). Call it when the loop runs
    /// out of work (more than once per idle period is fine). It takes
    /// `&mut self` because it notes when it last said to spin and whether the
    /// idle period is a probe. Netty's event loops, which Spark uses, have no
    /// such step: they park at once.
    pub fn spin_for(&mut self, now: Instant) -> Duration {
        let paused = self.paused_until.is_some_and(|until| now < until);
        if self.budget_ns == 0 || paused || self.one_cpu {
            return Duration::ZERO;
        }
        if self.probing || self.share_within >= SPIN_SHARE {
            self.last_spin_at = Some(now);
            return self.budget;
        }
        match self.last_spin_at {
            Some(at) if now.saturating_duration_since(at) >= PROBE_EVERY => {
                self.probing = true;
                self.last_spin_at = Some(now);
                self.budget
            }
            Some(_) => Duration::ZERO,
            None => {
                self.last_spin_at = Some(now);
                Duration::ZERO
            }
        }
    }

    /// Whether the loop should read its thread's CPU affinity again and report
    /// it with [`set_cpus_allowed`](Self::set_cpus_allowed): at first, then
    /// every 100 ms (a thread can be pinned after it started). Always `false`
    /// for a zero budget.
    pub fn affinity_due(&self, now: Instant) -> bool {
        self.budget_ns > 0
            && self
                .affinity_at
                .is_none_or(|at| now.saturating_duration_since(at) >= AFFINITY_EVERY)
    }

    /// Reports at `now` how many CPUs the loop's thread may run on
    /// (`sched_getaffinity`); 0 when that is not known. With exactly one,
    /// the loop does not spin.
    pub fn set_cpus_allowed(&mut self, cpus: usize, now: Instant) {
        self.one_cpu = cpus == 1;
        self.affinity_at = Some(now);
    }

    /// Whether the last [`set_cpus_allowed`](Self::set_cpus_allowed) said the
    /// thread may run on one CPU only (so the policy does not spin).
    pub fn confined_to_one_cpu(&self) -> bool {
        self.one_cpu
    }

    /// Records one idle period: from the moment the loop ran out of work to
    /// the moment work arrived, spinning and parked time together.
    pub fn record_idle_gap(&mut self, gap: Duration) {
        if self.budget_ns == 0 {
            return;
        }
        let within = u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX) < self.budget_ns;
        if std::mem::take(&mut self.probing) && within {
            // A gap measured spinning, with no wake-up in it, was short:
            // spin again, until the gaps say otherwise.
            self.share_within = self.share_within.max(SPIN_SHARE);
            return;
        }
        // share += (within - share) / 4, in fixed point.
        self.share_within =
            self.share_within - self.share_within / 4 + if within { SHARE_ONE / 4 } else { 0 };
    }

    /// Checks one yield of the CPU (`sched_yield`) of a spin, from `start` to
    /// `end`. A yield longer than the budget means another thread had the
    /// CPU that long: this returns `true` (stop spinning now)
    /// and pauses spinning from `end` for the current back-off: 1 ms at
    /// first, doubling with each such round up to 1 s, and 1 ms again when
    /// the last one was over 10 s before.
    pub fn check_round(&mut self, start: Instant, end: Instant) -> bool {
        if end.saturating_duration_since(start) <= self.budget {
            return false;
        }
        let quiet = self
            .paused_until
            .is_none_or(|until| end.saturating_duration_since(until) > QUIET_RESET);
        if quiet {
            self.backoff = FIRST_BACKOFF;
        }
        self.paused_until = Some(end + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_micros(50);

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_zero_budget_never_spins() {
        let mut p = SpinPolicy::new(Duration::ZERO);
        assert_eq!(p.spin_for(t0()), Duration::ZERO);
        p.record_idle_gap(Duration::from_micros(1));
        assert_eq!(p.spin_for(t0()), Duration::ZERO);
    }

    #[test]
    fn short_gaps_keep_it_spinning() {
        let mut p = SpinPolicy::new(BUDGET);
        for _ in 0..1000 {
            p.record_idle_gap(Duration::from_micros(30));
            assert_eq!(p.spin_for(t0()), BUDGET);
        }
    }

    #[test]
    fn long_gaps_stop_it_within_three() {
        let mut p = SpinPolicy::new(BUDGET);
        for _ in 0..100 {
            p.record_idle_gap(Duration::from_micros(5));
        }
        let mut spinning = 0;
        for _ in 0..10 {
            p.record_idle_gap(Duration::from_secs(1));
            if p.spin_for(t0()) > Duration::ZERO {
                spinning += 1;
            }
        }
        assert!(spinning <= 2, "still spinning after {spinning} long gaps");
        assert_eq!(p.spin_for(t0()), Duration::ZERO);
    }

    #[test]
    fn it_resumes_once_gaps_are_short_again() {
        let mut p = SpinPolicy::new(BUDGET);
        for _ in 0..100 {
            p.record_idle_gap(Duration::from_secs(10));
        }
        assert_eq!(p.spin_for(t0()), Duration::ZERO);
        // Parked gaps include the wake-up (~30 µs here): still under the budget.
        let mut back_after = None;
        for i in 1..=20 {
            p.record_idle_gap(Duration::from_micros(35));
            if p.spin_for(t0()) == BUDGET {
                back_after = Some(i);
                break;
            }
        }
        let n = back_after.expect("never resumed spinning");
        assert!(n <= 10, "resumed only after {n} short gaps");
    }

    #[test]
    fn gaps_just_over_or_under_the_budget_decide() {
        let mut p = SpinPolicy::new(BUDGET);
        for _ in 0..100 {
            p.record_idle_gap(Duration::from_micros(70));
        }
        assert_eq!(p.spin_for(t0()), Duration::ZERO);
        for _ in 0..100 {
            p.record_idle_gap(Duration::from_micros(40));
        }
        assert_eq!(p.spin_for(t0()), BUDGET);
    }

    /// Spins, out of the 100 idle periods after `pattern` has repeated long
    /// enough to settle, when gap `i` is short (`true`: 10 µs) or long
    /// (`false`: 120 µs, so that the two average under the 100 µs budget).
    fn spins_in(pattern: &[bool]) -> usize {
        let mut p = SpinPolicy::new(Duration::from_micros(100));
        let gap = |short: bool| Duration::from_micros(if short { 10 } else { 120 });
        for i in 0..100 {
            p.record_idle_gap(gap(pattern[i % pattern.len()]));
        }
        (100..200)
            .filter(|i| {
                p.record_idle_gap(gap(pattern[i % pattern.len()]));
                p.spin_for(t0()) > Duration::ZERO
            })
            .count()
    }

    #[test]
    fn a_slow_peer_whose_gaps_average_under_the_budget_does_not_spin() {
        // A client's answer (short) and its pause until the next ask (long):
        // their mean, 65 µs, is under the budget; a mean rule spun every pause.
        assert_eq!(spins_in(&[true, false]), 0);
        assert!(spins_in(&[true, true, false]) <= 40);
        // Mostly short gaps still spin most of the time.
        assert!(spins_in(&[true, true, true, true, true, true, true, false]) >= 80);
        assert_eq!(spins_in(&[true]), 100);
    }

    /// Which of the idle periods after `pattern` has settled spin (`true`),
    /// paired with whether that period is short, over 30 periods.
    fn spin_periods(pattern: &[bool]) -> Vec<(bool, bool)> {
        let mut p = SpinPolicy::new(Duration::from_micros(100));
        let gap = |short: bool| Duration::from_micros(if short { 10 } else { 120 });
        for i in 0..100 {
            p.record_idle_gap(gap(pattern[i % pattern.len()]));
        }
        // The decision after gap `i` is for idle period `i + 1`.
        (100..130)
            .map(|i| {
                let spins = p.spin_for(t0()) > Duration::ZERO;
                p.record_idle_gap(gap(pattern[i % pattern.len()]));
                (spins, pattern[i % pattern.len()])
            })
            .collect()
    }

    #[test]
    fn one_long_gap_among_short_ones_stops_no_spin() {
        let mut p = SpinPolicy::new(BUDGET);
        for _ in 0..100 {
            p.record_idle_gap(Duration::from_micros(5));
        }
        p.record_idle_gap(Duration::from_secs(1));
        assert_eq!(p.spin_for(t0()), BUDGET);
        p.record_idle_gap(Duration::from_secs(1));
        assert_eq!(p.spin_for(t0()), Duration::ZERO);
    }

    #[test]
    fn two_short_gaps_and_a_long_one_spin_only_in_the_long_one() {
        let periods = spin_periods(&[true, true, false]);
        let spun: Vec<bool> = periods
            .iter()
            .filter(|(spins, _)| *spins)
            .map(|(_, short)| *short)
            .collect();
        assert_eq!(spun.len(), 10, "{periods:?}");
        assert!(spun.iter().all(|short| !short), "{periods:?}");
    }

    #[test]
    fn a_probe_lets_a_loop_resume_when_parked_gaps_look_long() {
        // A 20 µs budget, and parked gaps of 50 µs: 10 µs of work apart plus
        // a 40 µs wake-up. Under the share rule alone it never spun again.
        let budget = Duration::from_micros(20);
        let mut p = SpinPolicy::new(budget);
        let now = t0();
        assert_eq!(p.spin_for(now), budget);
        for _ in 0..10 {
            p.record_idle_gap(Duration::from_micros(50));
        }
        assert_eq!(p.spin_for(now), Duration::ZERO);
        assert_eq!(p.spin_for(now + Duration::from_millis(99)), Duration::ZERO);
        // 100 ms after the last spin: a probe, for the whole idle period.
        let probe = now + Duration::from_millis(100);
        assert_eq!(p.spin_for(probe), budget);
        assert_eq!(p.spin_for(probe + Duration::from_micros(5)), budget);
        // Spinning, the gap is the 10 µs it really is: spinning resumes.
        p.record_idle_gap(Duration::from_micros(10));
        assert_eq!(p.spin_for(probe + Duration::from_micros(20)), budget);
        p.record_idle_gap(Duration::from_micros(10));
        assert_eq!(p.spin_for(probe + Duration::from_micros(40)), budget);
        // A probe that finds a long gap changes nothing until the next one.
        for _ in 0..10 {
            p.record_idle_gap(Duration::from_micros(50));
        }
        let later = probe + Duration::from_millis(1);
        assert_eq!(p.spin_for(later), Duration::ZERO);
        let probe = later + Duration::from_millis(100);
        assert_eq!(p.spin_for(probe), budget);
        p.record_idle_gap(Duration::from_micros(500));
        assert_eq!(p.spin_for(probe + Duration::from_millis(1)), Duration::ZERO);
        assert_eq!(p.spin_for(probe + Duration::from_millis(100)), budget);
    }

    #[test]
    fn a_short_round_is_not_a_preemption() {
        let mut p = SpinPolicy::new(BUDGET);
        let start = t0();
        assert!(!p.check_round(start, start + BUDGET));
        assert_eq!(p.spin_for(start + BUDGET), BUDGET);
    }

    #[test]
    fn preempted_spins_back_off_doubling_up_to_a_second() {
        let mut p = SpinPolicy::new(BUDGET);
        let mut now = t0();
        let mut pauses = Vec::new();
        for _ in 0..14 {
            let end = now + Duration::from_millis(4);
            assert!(p.check_round(now, end));
            // Paused just before the back-off ends, spinning again at its end.
            let mut pause = Duration::from_millis(1);
            while p.spin_for(end + pause) == Duration::ZERO {
                pause *= 2;
            }
            assert_eq!(
                p.spin_for(end + pause / 2 - Duration::from_nanos(1)),
                Duration::ZERO
            );
            pauses.push(pause);
            now = end + pause;
        }
        assert_eq!(pauses[0], Duration::from_millis(1));
        assert_eq!(pauses[1], Duration::from_millis(2));
        assert_eq!(pauses[2], Duration::from_millis(4));
        assert!(
            pauses.iter().all(|p| *p <= Duration::from_millis(1024)),
            "{pauses:?}"
        );
        assert_eq!(*pauses.last().unwrap(), Duration::from_millis(1024));
    }

    #[test]
    fn ten_quiet_seconds_reset_the_back_off() {
        let mut p = SpinPolicy::new(BUDGET);
        let mut now = t0();
        for _ in 0..5 {
            let end = now + Duration::from_millis(4);
            assert!(p.check_round(now, end));
            now = end + Duration::from_millis(100);
        }
        // Undisturbed spins in between change nothing: still backing off long.
        assert!(!p.check_round(now, now + BUDGET));
        let end = now + Duration::from_millis(4);
        assert!(p.check_round(now, end));
        assert_eq!(p.spin_for(end + Duration::from_millis(16)), Duration::ZERO);
        // After 10 s without a preempted round, the next pause is 1 ms again.
        let later = end + Duration::from_secs(12);
        let end = later + Duration::from_millis(4);
        assert!(p.check_round(later, end));
        assert_eq!(p.spin_for(end + Duration::from_millis(1)), BUDGET);
    }

    #[test]
    fn a_thread_on_one_cpu_does_not_spin() {
        let mut p = SpinPolicy::new(BUDGET);
        let now = t0();
        assert!(p.affinity_due(now));
        p.set_cpus_allowed(1, now);
        assert!(p.confined_to_one_cpu());
        assert_eq!(p.spin_for(now), Duration::ZERO);
        assert!(!p.affinity_due(now + Duration::from_millis(99)));
        let later = now + Duration::from_millis(100);
        assert!(p.affinity_due(later));
        p.set_cpus_allowed(2, later);
        assert_eq!(p.spin_for(later), BUDGET);
        // Unknown affinity does not stop spinning.
        p.set_cpus_allowed(0, later);
        assert_eq!(p.spin_for(later), BUDGET);
        assert!(!SpinPolicy::new(Duration::ZERO).affinity_due(now));
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let mut p = SpinPolicy::new(Duration::MAX);
        p.record_idle_gap(Duration::MAX);
        assert_eq!(p.spin_for(t0()), Duration::MAX);
        assert!(!p.check_round(t0(), t0() + Duration::from_secs(1)));
    }
}

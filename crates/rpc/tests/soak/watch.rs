//! What the soak watches besides messages: this process's RSS over time, its
//! open file descriptors, and the RpcEnv's warnings about dropped one-ways.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors (`/proc/self/fd`).
pub fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Samples [`rss_kib`] every 200 ms on a thread of its own until stopped.
pub struct RssSampler {
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling.
    pub fn start() -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !st.load(Ordering::Relaxed) {
                s.lock().unwrap().push((started.elapsed(), rss_kib()));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the samples (time since start, KiB).
    pub fn stop(mut self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// RSS of a run: the first and last sample, the maximum, and the maxima of
/// the first and last quarter of the samples after the first tenth (warm-up).
#[derive(Debug, Clone, Copy)]
pub struct RssSummary {
    /// First sample, KiB.
    pub start: u64,
    /// Last sample, KiB.
    pub end: u64,
    /// Largest sample, KiB.
    pub max: u64,
    /// Largest sample of the first quarter after warm-up, KiB.
    pub first_quarter_max: u64,
    /// Largest sample of the last quarter, KiB.
    pub last_quarter_max: u64,
    /// Samples taken.
    pub samples: usize,
}

impl RssSummary {
    /// Summarizes `samples` (at least one).
    pub fn of(samples: &[(Duration, u64)]) -> Self {
        let kib: Vec<u64> = samples.iter().map(|s| s.1).collect();
        let warm = &kib[kib.len() / 10..];
        let q = (warm.len() / 4).max(1);
        Self {
            start: kib[0],
            end: *kib.last().unwrap(),
            max: kib.iter().copied().max().unwrap(),
            first_quarter_max: warm[..q].iter().copied().max().unwrap(),
            last_quarter_max: warm[warm.len() - q..].iter().copied().max().unwrap(),
            samples: kib.len(),
        }
    }
}

/// Counts of log lines naming a dropped one-way message, and the first few such lines.
#[derive(Debug, Default)]
pub struct DropLog {
    /// Outbox: "a one-way message was dropped: its destination is unreachable".
    pub unreachable: AtomicU64,
    /// Server: "dropping a one-way message" (logged at the 1st, 10th, 100th, ... per connection).
    pub refused: AtomicU64,
    /// Outbox: one-ways "not acknowledged were dropped" when reconnecting
    /// failed: the sum of the `dropped=N` of those lines.
    pub unacknowledged: AtomicU64,
    /// "could not deliver a reply": an ask's answer lost with its connection.
    pub reply_undelivered: AtomicU64,
    /// Other warnings and errors.
    pub other: AtomicU64,
    /// The first lines, other than undelivered replies.
    pub lines: Mutex<Vec<String>>,
}

struct Writer(&'static DropLog);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        for line in text.lines() {
            let counter = if line.contains("not acknowledged were dropped") {
                let n = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("dropped="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                self.0.unacknowledged.fetch_add(n, Ordering::Relaxed);
                continue;
            } else if line.contains("a one-way message was dropped") {
                &self.0.unreachable
            } else if line.contains("dropping a one-way message") {
                &self.0.refused
            } else if line.contains("could not deliver a reply") {
                self.0.reply_undelivered.fetch_add(1, Ordering::Relaxed);
                continue;
            } else {
                &self.0.other
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let mut lines = self.0.lines.lock().unwrap_or_else(|e| e.into_inner());
            if lines.len() < 10 {
                lines.push(line.to_string());
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl DropLog {
    /// The counts (unreachable, refused, unacknowledged, reply_undelivered,
    /// other), and forgets the lines.
    pub fn take(&self) -> [u64; 5] {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clear();
        [
            self.unreachable.swap(0, Ordering::Relaxed),
            self.refused.swap(0, Ordering::Relaxed),
            self.unacknowledged.swap(0, Ordering::Relaxed),
            self.reply_undelivered.swap(0, Ordering::Relaxed),
            self.other.swap(0, Ordering::Relaxed),
        ]
    }
}

/// Installs a `warn`-level subscriber counting into a [`DropLog`] (once per process).
pub fn drop_log() -> &'static DropLog {
    static LOG: std::sync::OnceLock<&'static DropLog> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static DropLog = Box::leak(Box::default());
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Writer(log))
            .try_init();
        log
    })
}

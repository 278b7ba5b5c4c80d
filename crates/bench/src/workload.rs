//! What one benchmark run does: the system under test, the message sizes and
//! the closed-loop concurrency, plus the default matrix of workloads.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use transport::IoMode;

/// One kibibyte, in bytes.
pub const KIB: usize = 1024;
/// One mebibyte, in bytes.
pub const MIB: usize = 1024 * KIB;

/// Outstanding requests per connection an open-loop run allows by default (`--rate` without
/// `--inflight`), and in the default matrix's open-loop workload.
pub const OPEN_LOOP_CAP: usize = 64;

/// The CPU the default matrix's pinned row runs all threads on (the matrix picks the first CPU
/// this process may use instead when CPU 0 is not among them).
pub const PINNED_CPU: usize = 0;

/// Smallest body, in bytes, from which the `io_uring-zc` column sends with `SENDMSG_ZC`
/// (`UringConf::zero_copy_threshold`); it runs only workloads with a body this large.
pub const ZERO_COPY_THRESHOLD: usize = 64 * KIB;

/// Message sizes and concurrency of a run: a closed loop, or an open loop at a fixed rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// Request body size, in bytes (frame header not included).
    pub payload: usize,
    /// Response body size, in bytes (frame header not included).
    pub response: usize,
    /// Connections from client to server (at least 1).
    pub conns: usize,
    /// Closed loop: requests kept in flight on each connection (at least 1), each completion
    /// sending the next. Open loop: the most requests a connection keeps outstanding.
    pub inflight: usize,
    /// Open loop: requests per second over all connections, sent on a fixed timetable (see
    /// [`measure`](crate::measure)); `None` for a closed loop.
    #[serde(default)]
    pub rate: Option<u64>,
    /// Every thread of the run, server's and client's, pinned to this one CPU (`--server-cpus N
    /// --client-cpus N`; see [`host`](crate::host)); `None`: not pinned this way. A row of its
    /// own in the matrix, told apart from the same sizes unpinned.
    #[serde(default)]
    pub pinned_cpu: Option<usize>,
}

impl Workload {
    /// An echo-sized workload: the response is as large as the request.
    pub fn echo(payload: usize, conns: usize, inflight: usize) -> Self {
        Self {
            payload,
            response: payload,
            conns,
            inflight,
            rate: None,
            pinned_cpu: None,
        }
    }

    /// This workload with every thread of both sides pinned to `cpu`.
    pub fn pinned_to(self, cpu: usize) -> Self {
        Self {
            pinned_cpu: Some(cpu),
            ..self
        }
    }

    /// An open-loop echo workload: `rate` requests per second over `conns` connections, at
    /// most [`OPEN_LOOP_CAP`] outstanding on each.
    pub fn open(payload: usize, conns: usize, rate: u64) -> Self {
        Self {
            rate: Some(rate),
            ..Self::echo(payload, conns, OPEN_LOOP_CAP)
        }
    }

    /// The default matrix, in the order the issue lists it: 64 B × 1 × 1,
    /// 64 B × 1 × 64, 4 KiB × 1 × 16, 1 MiB × 1 × 4, 64 B × 256 × 1; then an open loop
    /// of 64 B on 1 connection at 20,000 req/s, well under saturation, for latency
    /// without coordinated omission (the Spark baseline runs closed loops only); last, 64 B × 1
    /// × 1 again with server and client threads all pinned to CPU 0 ([`PINNED_CPU`]), for
    /// latency without the scheduler moving threads between CPUs (the Spark baseline, whose
    /// threads are in a JVM, is not pinned and skips it).
    pub fn default_matrix() -> [Workload; 7] {
        [
            Self::echo(64, 1, 1),
            Self::echo(64, 1, 64),
            Self::echo(4 * KIB, 1, 16),
            Self::echo(MIB, 1, 4),
            Self::echo(64, 256, 1),
            Self::open(64, 1, 20_000),
            Self::echo(64, 1, 1).pinned_to(PINNED_CPU),
        ]
    }

    /// Requests in flight across all connections.
    pub fn total_inflight(&self) -> usize {
        self.conns * self.inflight
    }
}

impl fmt::Display for Workload {
    /// `64 B, 1 conn × 64 in flight`, with ` → 1 KiB` after the payload when the response
    /// differs; an open loop reads `64 B, 1 conn at 20000 req/s (≤ 64 in flight)`; a pinned
    /// workload ends with `, pinned to CPU 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format_bytes(self.payload))?;
        if self.response != self.payload {
            write!(f, " → {}", format_bytes(self.response))?;
        }
        let s = if self.conns == 1 { "" } else { "s" };
        match self.rate {
            None => write!(f, ", {} conn{s} × {} in flight", self.conns, self.inflight),
            Some(rate) => write!(
                f,
                ", {} conn{s} at {rate} req/s (≤ {} in flight)",
                self.conns, self.inflight
            ),
        }?;
        match self.pinned_cpu {
            Some(cpu) => write!(f, ", pinned to CPU {cpu}"),
            None => Ok(()),
        }
    }
}

/// Formats a byte count the way the matrix names sizes: `64 B`, `4 KiB`, `1 MiB`, `1500 B`.
pub fn format_bytes(bytes: usize) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// Parses a size in bytes: a whole number with an optional binary suffix
/// (`64`, `64B`, `4KiB`, `4k`, `1MiB`, `1m`), case-insensitive.
///
/// # Errors
/// A message naming the input when it is not such a size or overflows `usize`.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let unit = match suffix.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        _ => 0,
    };
    digits
        .parse::<usize>()
        .ok()
        .filter(|_| unit > 0)
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("`{text}` is not a size in bytes (e.g. 64, 4KiB, 1MiB)"))
}

/// Parses a duration in seconds (`2`, `0.5`): finite and not negative.
///
/// # Errors
/// A message naming the input when it is not such a number.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!(
            "`{text}` is not a number of seconds >= 0 (e.g. 2 or 0.5)"
        )),
    }
}

/// Parses a measurement time: seconds, finite and above 0.
///
/// # Errors
/// A message quoting `text` when it is not a positive number.
pub fn parse_duration_seconds(text: &str) -> Result<f64, String> {
    match parse_seconds(text) {
        Ok(s) if s > 0.0 => Ok(s),
        _ => Err(format!(
            "`{text}` is not a measurement time in seconds > 0 (e.g. 2 or 0.5)"
        )),
    }
}

/// Parses a count of at least 1 (connections, requests in flight, threads, repetitions).
///
/// # Errors
/// A message naming the input when it is not a whole number >= 1.
pub fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{text}` is not a whole number >= 1")),
    }
}

/// Parses an open-loop rate in requests per second: a whole number >= 1 (`20000`).
///
/// # Errors
/// A message naming the input when it is not such a number.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    match text.trim().replace('_', "").parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "`{text}` is not a rate in requests per second >= 1 (e.g. 20000)"
        )),
    }
}

/// Netty's IO mode of the Spark baseline (Spark's `spark.rpc.io.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SparkIo {
    /// Java NIO selectors (`NIO`).
    Nio,
    /// Netty's native epoll transport (`EPOLL`).
    Epoll,
}

impl SparkIo {
    /// The value of `spark.rpc.io.mode`: `NIO` or `EPOLL`.
    pub fn spark_name(self) -> &'static str {
        match self {
            Self::Nio => "NIO",
            Self::Epoll => "EPOLL",
        }
    }
}

/// The system under test: a transport backend, the raw tokio baseline, or
/// Apache Spark's own transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum System {
    /// A backend of the `transport` crate, chosen by IO mode.
    Transport(IoMode),
    /// The io_uring backend sending bodies of at least [`ZERO_COPY_THRESHOLD`] bytes with
    /// `IORING_OP_SENDMSG_ZC` (Linux 6.1; `RPC_IO_URING_ZERO_COPY_THRESHOLD`), at the transport
    /// level only, and only on workloads with such bodies: `io_uring-zc`.
    UringZeroCopy,
    /// The minimal hand-written tokio echo: the bar the transports are measured against.
    RawTokio,
    /// Spark network-common's `TransportServer` / `TransportClient` on Netty,
    /// run by `scripts/spark-baseline.sh` (a JVM of its own).
    Spark(SparkIo),
}

impl System {
    /// The name used on the command line and in records: `epoll`, `io_uring`,
    /// `auto`, `io_uring-zc`, `raw-tokio`, `spark-nio`, `spark-epoll`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transport(mode) => mode.as_str(),
            Self::UringZeroCopy => "io_uring-zc",
            Self::RawTokio => "raw-tokio",
            Self::Spark(SparkIo::Nio) => "spark-nio",
            Self::Spark(SparkIo::Epoll) => "spark-epoll",
        }
    }

    /// Whether this is a baseline (raw-tokio or Spark) rather than this project's code.
    pub fn is_baseline(self) -> bool {
        !matches!(self, Self::Transport(_) | Self::UringZeroCopy)
    }

    /// The IO mode of this project's transport that runs it; `None` for a baseline.
    pub fn io_mode(self) -> Option<IoMode> {
        match self {
            Self::Transport(mode) => Some(mode),
            Self::UringZeroCopy => Some(IoMode::IoUring),
            Self::RawTokio | Self::Spark(_) => None,
        }
    }

    /// Whether the matrix runs `w` on this system: the Spark baseline runs closed loops
    /// only, unpinned; `io_uring-zc` only workloads with a body of at least
    /// [`ZERO_COPY_THRESHOLD`] bytes (below it, it is the `io_uring` column again).
    pub fn runs(self, w: &Workload) -> bool {
        match self {
            Self::Spark(_) => w.rate.is_none() && w.pinned_cpu.is_none(),
            Self::UringZeroCopy => w.payload.max(w.response) >= ZERO_COPY_THRESHOLD,
            Self::Transport(_) | Self::RawTokio => true,
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for System {
    type Err = String;

    /// Parses `raw-tokio` (or `raw_tokio`), `spark-nio`, `spark-epoll`, `io_uring-zc` (or
    /// `io-uring-zc`), or any [`IoMode`] spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "raw-tokio" | "raw_tokio" => Ok(Self::RawTokio),
            "io_uring-zc" | "io-uring-zc" | "io_uring_zc" => Ok(Self::UringZeroCopy),
            "spark-nio" | "spark_nio" => Ok(Self::Spark(SparkIo::Nio)),
            "spark-epoll" | "spark_epoll" => Ok(Self::Spark(SparkIo::Epoll)),
            other => other.parse::<IoMode>().map(Self::Transport).map_err(|_| {
                format!(
                    "unknown system `{s}`; expected raw-tokio, spark-nio, spark-epoll, io_uring-zc or an io mode ({})",
                    IoMode::ALLOWED
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("64"), Ok(64));
        assert_eq!(parse_bytes("64B"), Ok(64));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes(" 1MiB "), Ok(MIB));
        assert_eq!(parse_bytes("0"), Ok(0));
        for bad in ["", "k", "1.5k", "-1", "4GiB", "99999999999999999999", "1 parsec"] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn seconds_parse_and_refuse_negatives() {
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
        assert_eq!(parse_seconds("2"), Ok(2.0));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("two").is_err());
        assert_eq!(parse_count("256"), Ok(256));
        assert!(parse_count("0").unwrap_err().contains("`0`"));
    }

    #[test]
    fn systems_parse_by_name() {
        assert_eq!("epoll".parse(), Ok(System::Transport(IoMode::Epoll)));
        assert_eq!("spark-epoll".parse(), Ok(System::Spark(SparkIo::Epoll)));
        assert_eq!(System::Spark(SparkIo::Nio).name(), "spark-nio");
        assert!(
            System::Spark(SparkIo::Nio).is_baseline() && !System::Transport(IoMode::IoUring).is_baseline()
        );
        assert_eq!("io_uring".parse(), Ok(System::Transport(IoMode::IoUring)));
        assert_eq!("raw-tokio".parse(), Ok(System::RawTokio));
        assert!("netty".parse::<System>().unwrap_err().contains("netty"));
        assert_eq!(System::RawTokio.to_string(), "raw-tokio");
        assert_eq!("io_uring-zc".parse(), Ok(System::UringZeroCopy));
        assert_eq!(System::UringZeroCopy.to_string(), "io_uring-zc");
        assert!(!System::UringZeroCopy.is_baseline());
        assert_eq!(System::UringZeroCopy.io_mode(), Some(IoMode::IoUring));
        assert_eq!(System::RawTokio.io_mode(), None);
    }

    #[test]
    fn systems_say_which_workloads_they_run() {
        let m = Workload::default_matrix();
        let spark = System::Spark(SparkIo::Epoll);
        let ran = |s: System| m.iter().filter(|w| s.runs(w)).count();
        assert_eq!(ran(System::Transport(IoMode::Epoll)), m.len());
        assert_eq!(ran(spark), m.len() - 2, "no open loop, no pinned row");
        assert!(!spark.runs(&m[6]) && !spark.runs(&m[5]));
        assert_eq!(ran(System::UringZeroCopy), 1);
        assert!(System::UringZeroCopy.runs(&m[3]), "the 1 MiB row");
    }

    #[test]
    fn workloads_describe_themselves() {
        let m = Workload::default_matrix();
        assert_eq!(m[1].to_string(), "64 B, 1 conn × 64 in flight");
        assert_eq!(m[3].to_string(), "1 MiB, 1 conn × 4 in flight");
        assert_eq!(m[4].to_string(), "64 B, 256 conns × 1 in flight");
        assert_eq!(m[4].total_inflight(), 256);
        assert_eq!(m[5].to_string(), "64 B, 1 conn at 20000 req/s (≤ 64 in flight)");
        assert_eq!((m[5].rate, m[0].rate), (Some(20_000), None));
        let w = Workload {
            response: 1500,
            ..m[2]
        };
        assert_eq!(w.to_string(), "4 KiB → 1500 B, 1 conn × 16 in flight");
        assert_eq!(m[6].to_string(), "64 B, 1 conn × 1 in flight, pinned to CPU 0");
        assert_eq!(m[6], m[0].pinned_to(0));
        assert_ne!(m[6], m[0]);
    }
}

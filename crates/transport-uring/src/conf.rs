//! Settings only the io_uring backend has.

/// Environment variable overriding [`UringConf::fixed_files`] (`1`/`true` or `0`/`false`).
pub const FIXED_FILES_ENV: &str = "RPC_IO_URING_FIXED_FILES";
/// Environment variable overriding [`UringConf::zero_copy_threshold`], in bytes.
pub const ZERO_COPY_THRESHOLD_ENV: &str = "RPC_IO_URING_ZERO_COPY_THRESHOLD";

/// Tuning of [`UringTransport`](crate::UringTransport) beyond
/// [`TransportConf`](transport::TransportConf). The defaults suit RPC traffic
/// of small and medium messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringConf {
    /// Submission queue entries of each loop's ring (the completion queue gets
    /// four times as many). Default 1024.
    pub ring_entries: u32,
    /// Buffers in each loop's provided-buffer ring (a power of two, at most
    /// 32768). Together they bound how many bytes the kernel can receive
    /// before the loop runs; when they run out a recv completes with
    /// `ENOBUFS` and is re-armed without losing data. Default 256.
    pub buf_ring_entries: u16,
    /// Bytes of each provided buffer (one pool size class). Default 16 KiB.
    pub buf_size: usize,
    /// A frame still missing at least this many bytes after a recv is read
    /// with plain recvs straight into its own buffer instead of through the
    /// provided buffers (one copy fewer for large frames); 0 reads every
    /// frame in progress so (the bytes between frames still go through the
    /// provided buffers). Default 64 KiB.
    pub direct_read_min: usize,
    /// Send a batch with `IORING_OP_SENDMSG_ZC` (Linux 6.1) when a frame body in
    /// it has at least this many bytes; 0 never does. Zero copy pays on real
    /// NICs for large bodies; to a receiver on the same host the kernel copies
    /// anyway and the completion notification waits for the peer's ACK, so
    /// the default is 0 (off). See the crate docs for measurements.
    pub zero_copy_threshold: usize,
    /// Register each connection's socket in the ring's file table
    /// (`IORING_REGISTER_FILES`, sparse, Linux 5.19) and name it by index in
    /// every SQE (`IOSQE_FIXED_FILE`), which spares the kernel a file lookup
    /// and reference count per operation. Up to [`FIXED_FILE_SLOTS`] sockets
    /// per loop; beyond that a connection uses its plain descriptor. Default
    /// on: measured here (2 vCPUs, loopback, `examples/echo_bench.rs`, pairs
    /// run off/on alternately on a busy machine) it won or tied every pair at
    /// 4 KiB × 16 in flight (medians 219k vs 227k req/s) and at 64 B × 64
    /// (1.54M vs 1.99M), and tied at 64 B × 1 (41.1k vs 41.2k).
    ///
    /// Registered *buffers* (`IORING_REGISTER_BUFFERS`) are not used: receives
    /// already go to a provided-buffer ring (its own registration), and sends
    /// are `SENDMSG` over iovecs of whatever `Bytes` the frames carry, for
    /// which no fixed-buffer form exists (only `SEND_ZC`, which is off by
    /// default because it loses to a local peer).
    pub fixed_files: bool,
}

/// Slots of each loop's sparse file table when [`UringConf::fixed_files`] is on.
pub const FIXED_FILE_SLOTS: u32 = 4096;

impl UringConf {
    /// These settings with [`FIXED_FILES_ENV`] and [`ZERO_COPY_THRESHOLD_ENV`]
    /// applied where set (other values are ignored with a warning). How long
    /// a loop spins before parking is a [`TransportConf`](transport::TransportConf)
    /// key, `spin_before_park_us`, the same for both backends.
    /// [`UringTransport::new`](crate::UringTransport::new) and `with_pool` use
    /// `UringConf::default().with_env()`.
    pub fn with_env(mut self) -> Self {
        if let Ok(v) = std::env::var(FIXED_FILES_ENV) {
            match v.trim() {
                "1" | "true" => self.fixed_files = true,
                "0" | "false" => self.fixed_files = false,
                _ => {
                    tracing::warn!(name = FIXED_FILES_ENV, value = %v, "ignoring a setting that is not 0, 1, true or false")
                }
            }
        }
        if let Some(bytes) = env_number(ZERO_COPY_THRESHOLD_ENV) {
            self.zero_copy_threshold = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        self
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::warn!(name, value, "ignoring a non-numeric io_uring setting");
            None
        }
    }
}

impl Default for UringConf {
    fn default() -> Self {
        Self {
            ring_entries: 1024,
            buf_ring_entries: 256,
            buf_size: 16 << 10,
            direct_read_min: 64 << 10,
            zero_copy_threshold: 0,
            fixed_files: true,
        }
    }
}

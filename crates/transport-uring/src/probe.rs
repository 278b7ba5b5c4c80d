//! Can io_uring run here? [`probe`] answers with a [`ProbeReport`] or a
//! [`UringUnavailable`] naming the cause and the fix.
//!
//! It reads `kernel.io_uring_disabled`, sets up a small ring with the flags
//! the loops use, and asks the kernel (`IORING_REGISTER_PROBE`, Linux 5.6)
//! which opcodes it supports. Set the environment variable
//! [`FORCE_UNAVAILABLE_ENV`]`=1` to make it fail, to test the fallback path.

use std::io;

use io_uring::{IoUring, opcode};

/// Environment variable that makes [`probe`] fail with
/// [`UringUnavailable::ForcedUnavailable`] when set to `1`.
pub const FORCE_UNAVAILABLE_ENV: &str = "RPC_IO_URING_FORCE_UNAVAILABLE";

/// Oldest kernel with everything the loops use: multishot recv (6.0) and
/// `SENDMSG_ZC` (6.1), after provided-buffer rings (5.19).
pub const MIN_KERNEL: (u32, u32) = (6, 1);

/// What the probe found on a kernel where io_uring runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The kernel release, as `uname -r` prints it.
    pub kernel_release: String,
    /// Whether rings accept `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`
    /// (Linux 6.1); loops fall back to plain rings without them.
    pub single_issuer_defer_taskrun: bool,
}

/// Why io_uring cannot run here. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UringUnavailable {
    /// [`FORCE_UNAVAILABLE_ENV`] is set to `1`.
    #[error("io_uring is forced unavailable by {FORCE_UNAVAILABLE_ENV}=1; unset it to use io_uring")]
    ForcedUnavailable,
    /// `/proc/sys/kernel/io_uring_disabled` is 1 or 2 (Linux 6.6).
    #[error(
        "io_uring is disabled by the sysctl kernel.io_uring_disabled = {value}; \
         run `sysctl -w kernel.io_uring_disabled=0` as root (1 allows only the group in \
         kernel.io_uring_group), or use io_mode = epoll"
    )]
    DisabledBySysctl {
        /// The sysctl's value.
        value: u8,
    },
    /// `io_uring_setup` failed while a seccomp filter is active: a container
    /// runtime's default profile (Docker since 25, containerd) blocks io_uring.
    #[error(
        "io_uring_setup failed ({errno_name}) under a seccomp filter; the container's seccomp \
         profile blocks io_uring: allow io_uring_setup, io_uring_enter and io_uring_register in it \
         (or run with --security-opt seccomp=unconfined), or use io_mode = epoll"
    )]
    Seccomp {
        /// `ENOSYS` or `EPERM`.
        errno_name: &'static str,
    },
    /// The kernel is older than [`MIN_KERNEL`] or has no io_uring at all.
    #[error(
        "kernel {release} is too old for this backend (it needs Linux {}.{} or newer with \
         CONFIG_IO_URING); upgrade the kernel or use io_mode = epoll", MIN_KERNEL.0, MIN_KERNEL.1
    )]
    KernelTooOld {
        /// The kernel release.
        release: String,
    },
    /// Setting up a ring failed for lack of memory or permission.
    #[error(
        "io_uring_setup failed: {message}; ENOMEM usually means RLIMIT_MEMLOCK is too low on kernels \
         before 5.12 (raise `ulimit -l`), EPERM that io_uring is restricted to a group \
         (kernel.io_uring_group) or to privileged users; or use io_mode = epoll"
    )]
    SetupFailed {
        /// The OS error.
        message: String,
    },
    /// The kernel lacks an operation the backend needs.
    #[error(
        "kernel {release} lacks the io_uring operation {opcode}; upgrade to Linux {}.{} or newer, \
         or use io_mode = epoll", MIN_KERNEL.0, MIN_KERNEL.1
    )]
    MissingOpcode {
        /// The operation, as the kernel names it (`IORING_OP_...`).
        opcode: &'static str,
        /// The kernel release.
        release: String,
    },
}

/// Checks that io_uring can run the backend here.
///
/// # Errors
/// A [`UringUnavailable`] naming the first cause found.
pub fn probe() -> Result<ProbeReport, UringUnavailable> {
    if std::env::var(FORCE_UNAVAILABLE_ENV).is_ok_and(|v| v.trim() == "1") {
        return Err(UringUnavailable::ForcedUnavailable);
    }
    let release = kernel_release();
    if let Some(value) = read_sysctl_disabled().filter(|&v| v != 0) {
        return Err(UringUnavailable::DisabledBySysctl { value });
    }
    let (ring, single_issuer_defer_taskrun) = match build_ring(8) {
        Ok(r) => r,
        Err(e) => return Err(setup_error(&e, &release)),
    };
    if parse_release(&release).is_some_and(|v| v < MIN_KERNEL) {
        return Err(UringUnavailable::KernelTooOld { release });
    }
    let mut probe = io_uring::Probe::new();
    if ring.submitter().register_probe(&mut probe).is_err() {
        return Err(UringUnavailable::KernelTooOld { release });
    }
    for (code, name) in REQUIRED {
        if !probe.is_supported(code) {
            return Err(UringUnavailable::MissingOpcode {
                opcode: name,
                release,
            });
        }
    }
    Ok(ProbeReport {
        kernel_release: release,
        single_issuer_defer_taskrun,
    })
}

/// The opcodes the loops submit.
const REQUIRED: [(u8, &str); 7] = [
    (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
    (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
    (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
    (opcode::SendMsgZc::CODE, "IORING_OP_SENDMSG_ZC"),
    (opcode::ProvideBuffers::CODE, "IORING_OP_PROVIDE_BUFFERS"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    (opcode::Read::CODE, "IORING_OP_READ"),
];

/// Sets up a ring with `entries` SQEs: single issuer and deferred task work
/// when the kernel takes them (the caller must then submit only from this
/// thread), a plain ring otherwise. Returns the ring and whether the flags took.
pub(crate) fn build_ring(entries: u32) -> io::Result<(IoUring, bool)> {
    let tuned = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .setup_cqsize(entries * 4)
        .build(entries);
    match tuned {
        Ok(ring) => Ok((ring, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let ring = IoUring::builder().setup_cqsize(entries * 4).build(entries)?;
            Ok((ring, false))
        }
        Err(e) => Err(e),
    }
}

fn setup_error(e: &io::Error, release: &str) -> UringUnavailable {
    let errno = e.raw_os_error().unwrap_or(0);
    if matches!(errno, libc::ENOSYS | libc::EPERM) && seccomp_filtered() {
        let errno_name = if errno == libc::ENOSYS { "ENOSYS" } else { "EPERM" };
        return UringUnavailable::Seccomp { errno_name };
    }
    if errno == libc::ENOSYS {
        return UringUnavailable::KernelTooOld {
            release: release.to_string(),
        };
    }
    UringUnavailable::SetupFailed {
        message: e.to_string(),
    }
}

/// `kernel.io_uring_disabled`; `None` where the sysctl does not exist (before 6.6).
fn read_sysctl_disabled() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this process runs under a seccomp filter (`Seccomp: 2` in /proc/self/status).
fn seccomp_filtered() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.strip_prefix("Seccomp:").is_some_and(|v| v.trim() == "2"))
    })
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `(major, minor)` of a release such as `6.18.44-fc`.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v857"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = UringUnavailable::MissingOpcode {
            opcode: "IORING_OP_SENDMSG_ZC",
            release: "5.15.0".into(),
        };
        assert!(e.to_string().contains("IORING_OP_SENDMSG_ZC"));
        assert!(e.to_string().contains("io_mode = epoll"));
    }
}

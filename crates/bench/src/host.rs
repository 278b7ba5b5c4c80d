//! Where a run ran: the machine, the CPUs the process may use, the source revision.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Host name (uname's nodename).
    pub hostname: String,
    /// Kernel release (uname's release), e.g. `6.18.0`.
    pub kernel: String,
    /// The first `model name` of /proc/cpuinfo, or `unknown`.
    pub cpu_model: String,
    /// CPUs this process may run on (count).
    pub cores: usize,
}

/// How the bench's threads are placed on CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuPlacement {
    /// Whether threads are pinned to CPUs (not yet: the scheduler places them).
    pub pinned: bool,
    /// CPU numbers the process may run on (`sched_getaffinity`).
    pub allowed: Vec<usize>,
}

/// Everything about the environment a record carries, gathered once per process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The machine.
    pub host: Host,
    /// Thread placement.
    pub cpus: CpuPlacement,
    /// `git rev-parse --short HEAD` of the source tree, or `unknown`.
    pub git_sha: String,
    /// Whether tracked files differ from that commit (false when unknown).
    pub git_dirty: bool,
}

impl Environment {
    /// Reads the host, the affinity mask and the git revision of the source tree
    /// the binary was built from (falling back to the current directory).
    pub fn detect() -> Self {
        let allowed = allowed_cpus();
        let uname = rustix::system::uname();
        let host = Host {
            hostname: uname.nodename().to_string_lossy().into_owned(),
            kernel: uname.release().to_string_lossy().into_owned(),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| cpu_model(&text))
                .unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(allowed.len().max(1), |n| n.get()),
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = if dir.is_dir() { dir } else { Path::new(".") };
        let git_sha = git(dir, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let git_dirty =
            git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Self {
            host,
            cpus: CpuPlacement {
                pinned: false,
                allowed,
            },
            git_sha,
            git_dirty,
        }
    }
}

/// CPU numbers in this process's affinity mask (empty if it cannot be read).
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&i| set.is_set(i))
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "sched_getaffinity failed");
            Vec::new()
        }
    }
}

/// The first `model name` value of a /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "model name")
        .map(|(_, v)| v.trim().to_string())
}

/// Runs git in `dir`; its trimmed stdout if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t: fpu\n\nmodel name\t: other\n";
        assert_eq!(cpu_model(text).as_deref(), Some("AMD EPYC 9R14"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn detects_this_machine() {
        let env = Environment::detect();
        assert!(!env.host.kernel.is_empty() && env.host.cores >= 1);
        assert!(!env.cpus.allowed.is_empty() && !env.cpus.pinned);
        assert!(!env.git_sha.is_empty());
    }
}

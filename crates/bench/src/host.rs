//! Where a run ran: the machine, the CPUs the process may use, the source revision;
//! and CPU lists (`--server-cpus 0`, `--client-cpus 1-3`) with the thread pinning they drive.
//!
//! # What is pinned
//! The transport crates have no pinning hook, so the bench pins threads from outside by thread
//! id (`sched_setaffinity` on a `/proc/self/task` entry): [`ThreadPins`] notes the process's
//! threads, and after the server side (or the client side) has started, pins every thread
//! that appeared meanwhile. At the transport level that is the server's event loops (created
//! by `bind`) and the client's event loops (created by the first `connect`); at the rpc level
//! every thread the server RpcEnv starts (event loops, MessageLoop dispatcher threads, its
//! timeout thread) and every thread the client RpcEnvs start. Threads started later inherit
//! the mask of the thread that starts them. raw-tokio's threads and the open-loop pacer pin
//! themselves. The bench's main thread (which only sleeps while measuring) is not pinned;
//! neither are io_uring's kernel workers (`iou-*`), which refuse affinity changes.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use rustix::thread::CpuSet;
use rustix::thread::Pid;
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

/// Where one run's threads ran, as its record says: `{"pinned": true, "allowed": [0, 1],
/// "server": [0], "client": [1]}`, or `{"pinned": false, "allowed": [0, 1]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlacement {
    /// Whether `--server-cpus` or `--client-cpus` pinned threads.
    pub pinned: bool,
    /// CPU numbers the process may run on (`sched_getaffinity`).
    pub allowed: Vec<usize>,
    /// CPUs of the server's threads when pinned (the allowed set for a side not pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Vec<usize>>,
    /// CPUs of the client's threads when pinned (the allowed set for a side not pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Vec<usize>>,
}

impl RunPlacement {
    /// The placement of a run on `env` with the given CPU lists (`None`: that side not pinned).
    pub fn new(env: &CpuPlacement, server: Option<CpuList>, client: Option<CpuList>) -> Self {
        let pinned = server.is_some() || client.is_some();
        let side = |l: Option<CpuList>| l.map_or_else(|| env.allowed.clone(), |l| l.cpus());
        Self {
            pinned,
            allowed: env.allowed.clone(),
            server: pinned.then(|| side(server)),
            client: pinned.then(|| side(client)),
        }
    }
}

/// A set of CPU numbers, written `0`, `0,1`, `0-3` or `0-1,6` (ranges inclusive).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuList([u64; Self::WORDS]);

/// Why a text is not a CPU list, or a list cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    /// The text does not parse.
    #[error("`{text}` is not a CPU list: {reason}; write CPU numbers and ranges, e.g. `0`, `0,1` or `0-3`")]
    Syntax {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Some CPUs are outside this process's affinity mask.
    #[error(
        "CPU {missing} of `{list}` is not available to this process (allowed: {allowed}); pick from those"
    )]
    NotAllowed {
        /// The list asked for.
        list: String,
        /// The CPUs of it that are not allowed.
        missing: String,
        /// The allowed CPUs.
        allowed: String,
    },
}

impl CpuList {
    /// 64-bit words of the mask.
    const WORDS: usize = 4;
    /// CPU numbers a list may hold: 0 to 255 (kept small: a list is copied with every run spec).
    pub const MAX_CPUS: usize = 64 * Self::WORDS;

    /// The list of the one CPU `cpu`; `None` when `cpu` is not below [`Self::MAX_CPUS`].
    pub fn single(cpu: usize) -> Option<Self> {
        (cpu < Self::MAX_CPUS).then(|| {
            let mut set = [0u64; Self::WORDS];
            set[cpu / 64] |= 1 << (cpu % 64);
            Self(set)
        })
    }

    /// The CPU numbers, ascending.
    pub fn cpus(&self) -> Vec<usize> {
        (0..Self::MAX_CPUS)
            .filter(|&i| self.0[i / 64] & (1 << (i % 64)) != 0)
            .collect()
    }

    /// The mask to hand to `sched_setaffinity`.
    pub fn cpu_set(&self) -> CpuSet {
        let mut set = CpuSet::new();
        self.cpus().into_iter().for_each(|c| set.set(c));
        set
    }

    /// Checks that every CPU of the list is in `allowed` (this process's affinity mask).
    ///
    /// # Errors
    /// [`CpuListError::NotAllowed`] naming the CPUs that are not.
    pub fn check_allowed(&self, allowed: &[usize]) -> Result<(), CpuListError> {
        let missing: Vec<usize> = self.cpus().into_iter().filter(|c| !allowed.contains(c)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let join = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        Err(CpuListError::NotAllowed {
            list: self.to_string(),
            missing: join(&missing),
            allowed: join(allowed),
        })
    }
}

impl FromStr for CpuList {
    type Err = CpuListError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| CpuListError::Syntax {
            text: text.into(),
            reason,
        };
        let num = |s: &str| -> Result<usize, CpuListError> {
            match s.trim().parse::<usize>() {
                Ok(n) if n < Self::MAX_CPUS => Ok(n),
                Ok(n) => Err(bad(format!(
                    "CPU {n} is beyond the largest, {}",
                    Self::MAX_CPUS - 1
                ))),
                Err(_) => Err(bad(format!("`{}` is not a CPU number", s.trim()))),
            }
        };
        let mut set = [0u64; Self::WORDS];
        for part in text.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            if lo > hi {
                return Err(bad(format!("the range `{}` runs backwards", part.trim())));
            }
            (lo..=hi).for_each(|c| set[c / 64] |= 1 << (c % 64));
        }
        Ok(Self(set))
    }
}

impl fmt::Display for CpuList {
    /// Ranges joined by commas: `0-3,6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus = self.cpus();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < cpus.len() {
            let mut j = i;
            while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
                j += 1;
            }
            parts.push(if i == j {
                cpus[i].to_string()
            } else {
                format!("{}-{}", cpus[i], cpus[j])
            });
            i = j + 1;
        }
        f.write_str(&parts.join(","))
    }
}

impl fmt::Debug for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuList({self})")
    }
}

impl Serialize for CpuList {
    /// As the list of CPU numbers.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.cpus().serialize(s)
    }
}

/// Parses a CPU list for clap (`--server-cpus 0-1`).
///
/// # Errors
/// The [`CpuListError`] message.
pub fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    text.parse().map_err(|e: CpuListError| e.to_string())
}

/// Pins the calling thread to `cpus`.
///
/// # Errors
/// The OS error of `sched_setaffinity` (e.g. none of the CPUs is allowed).
pub fn pin_current_thread(cpus: &CpuList) -> std::io::Result<()> {
    rustix::thread::sched_setaffinity(None, &cpus.cpu_set()).map_err(std::io::Error::from)
}

/// Pins the threads of this process that start between two points of a run (see the module docs).
#[derive(Debug)]
pub struct ThreadPins {
    known: HashSet<i32>,
}

impl ThreadPins {
    /// Notes the threads the process has now; [`pin_new`](Self::pin_new) pins only later ones.
    pub fn start() -> Self {
        Self {
            known: thread_ids().into_iter().collect(),
        }
    }

    /// Pins every thread that started since the last call (or [`start`](Self::start)) to
    /// `cpus`, and notes them all; with `None`, only notes them. Returns how many were pinned.
    ///
    /// # Errors
    /// The OS error when one of the bench's or transport's threads refuses the mask; threads
    /// that ended meanwhile and io_uring's kernel workers are skipped.
    pub fn pin_new(&mut self, cpus: Option<&CpuList>) -> std::io::Result<usize> {
        let mut pinned = 0;
        for tid in thread_ids() {
            if !self.known.insert(tid) {
                continue;
            }
            let Some(cpus) = cpus else { continue };
            let Some(pid) = Pid::from_raw(tid) else { continue };
            match rustix::thread::sched_setaffinity(Some(pid), &cpus.cpu_set()) {
                Ok(()) => pinned += 1,
                Err(rustix::io::Errno::SRCH) => {}
                Err(_) if thread_name(tid).starts_with("iou-") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(pinned)
    }
}

/// Ids of this process's threads (`/proc/self/task`; empty if it cannot be read).
pub fn thread_ids() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The name of thread `tid` of this process (`comm`, at most 15 bytes), or empty.
pub fn thread_name(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// CPU numbers thread `tid` of this process may run on (empty if it cannot be read).
pub fn thread_cpus(tid: i32) -> Vec<usize> {
    Pid::from_raw(tid)
        .and_then(|p| rustix::thread::sched_getaffinity(Some(p)).ok())
        .map(|set| (0..CpuSet::MAX_CPU).filter(|&i| set.is_set(i)).collect())
        .unwrap_or_default()
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
    fn cpu_lists_parse_and_print() {
        let l: CpuList = "0".parse().unwrap();
        assert_eq!(l.cpus(), vec![0]);
        assert_eq!(CpuList::single(0), Some(l));
        assert_eq!(CpuList::single(70).map(|l| l.cpus()), Some(vec![70]));
        assert_eq!(CpuList::single(CpuList::MAX_CPUS), None);
        let l: CpuList = "0,1".parse().unwrap();
        assert_eq!((l.cpus(), l.to_string()), (vec![0, 1], "0-1".to_string()));
        let l: CpuList = " 0-2, 5 ,7-7".parse().unwrap();
        assert_eq!(
            (l.cpus(), l.to_string()),
            (vec![0, 1, 2, 5, 7], "0-2,5,7".to_string())
        );
        assert_eq!(serde_json::to_string(&l).unwrap(), "[0,1,2,5,7]");
        for bad in ["", "a", "1-", "3-1", "0,,1", "-1", "99999"] {
            let e = bad.parse::<CpuList>().unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("e.g."), "{e}");
        }
        let e = "0-1".parse::<CpuList>().unwrap().check_allowed(&[0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "CPU 1 of `0-1` is not available to this process (allowed: 0); pick from those"
        );
        assert!("0".parse::<CpuList>().unwrap().check_allowed(&[0, 1]).is_ok());
    }

    #[test]
    fn new_threads_are_pinned() {
        let first: CpuList = allowed_cpus()[0].to_string().parse().unwrap();
        let mut pins = ThreadPins::start();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert!(pins.pin_new(Some(&first)).unwrap() >= 1);
        assert_eq!(thread_cpus(tid), first.cpus());
        drop(done_tx);
        t.join().unwrap();
        let env = Environment::detect().cpus;
        let p = RunPlacement::new(&env, Some(first), None);
        assert!(p.pinned);
        assert_eq!(p.server, Some(first.cpus()));
        assert_eq!(p.client.as_ref(), Some(&env.allowed));
        assert_eq!(RunPlacement::new(&env, None, None).server, None);
    }

    #[test]
    fn detects_this_machine() {
        let env = Environment::detect();
        assert!(!env.host.kernel.is_empty() && env.host.cores >= 1);
        assert!(!env.cpus.allowed.is_empty() && !env.cpus.pinned);
        assert!(!env.git_sha.is_empty());
    }
}

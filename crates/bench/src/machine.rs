//! `machine.json`: the machine and the source a results folder was measured on.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::host::{CpuPlacement, Environment, Host};
use crate::output_error::OutputError;

/// File name of the machine description in a results folder.
pub const MACHINE_JSON: &str = "machine.json";

/// What `machine.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// Kernel release, e.g. `6.18.0`.
    pub kernel: String,
    /// CPU model (`model name` of /proc/cpuinfo), or `unknown`.
    pub cpu_model: String,
    /// CPUs the process may run on (count).
    pub cores: usize,
    /// CPU numbers the process may run on.
    pub allowed_cpus: Vec<usize>,
    /// Whether the bench's threads were pinned to CPUs.
    pub pinned: bool,
    /// `rustc --version` when the results were written, or `unknown` when rustc is not on the PATH.
    pub rustc: String,
    /// Short git revision of the source, or `unknown`.
    pub git_sha: String,
    /// Whether the source had uncommitted changes to tracked files.
    pub git_dirty: bool,
}

impl Machine {
    /// The machine of `env`, with `rustc` as given.
    pub fn new(env: &Environment, rustc: String) -> Self {
        Self {
            hostname: env.host.hostname.clone(),
            kernel: env.host.kernel.clone(),
            cpu_model: env.host.cpu_model.clone(),
            cores: env.host.cores,
            allowed_cpus: env.cpus.allowed.clone(),
            pinned: env.cpus.pinned,
            rustc,
            git_sha: env.git_sha.clone(),
            git_dirty: env.git_dirty,
        }
    }

    /// The machine of `env`, asking `rustc --version` now.
    pub fn detect(env: &Environment) -> Self {
        Self::new(env, rustc_version())
    }

    /// The [`Environment`] this describes (what `summary.md` quotes).
    pub fn environment(&self) -> Environment {
        Environment {
            host: Host {
                hostname: self.hostname.clone(),
                kernel: self.kernel.clone(),
                cpu_model: self.cpu_model.clone(),
                cores: self.cores,
            },
            cpus: CpuPlacement {
                pinned: self.pinned,
                allowed: self.allowed_cpus.clone(),
            },
            git_sha: self.git_sha.clone(),
            git_dirty: self.git_dirty,
        }
    }

    /// Writes `<dir>/machine.json`, pretty-printed.
    ///
    /// # Errors
    /// [`OutputError::Write`] when it cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), OutputError> {
        let path = dir.join(MACHINE_JSON);
        let text = serde_json::to_string_pretty(self).expect("plain fields serialize");
        std::fs::write(&path, text + "\n").map_err(OutputError::write(&path))
    }

    /// Reads `<dir>/machine.json`.
    ///
    /// # Errors
    /// [`OutputError::Read`] or [`OutputError::BadJson`].
    pub fn read(dir: &Path) -> Result<Self, OutputError> {
        let path = dir.join(MACHINE_JSON);
        let text = std::fs::read_to_string(&path).map_err(OutputError::read(&path))?;
        serde_json::from_str(&text).map_err(|source| OutputError::BadJson {
            path,
            line: 1,
            source,
        })
    }
}

/// The first line of `rustc --version`, or `unknown` when rustc cannot be run.
pub fn rustc_version() -> String {
    Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_json_has_every_field_and_reads_back() {
        let env = Environment::detect();
        let m = Machine::detect(&env);
        assert!(
            m.rustc.starts_with("rustc ") || m.rustc == "unknown",
            "{}",
            m.rustc
        );
        let tmp = tempfile::tempdir().unwrap();
        m.write(tmp.path()).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(MACHINE_JSON)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "kernel",
            "cpu_model",
            "cores",
            "rustc",
            "git_sha",
            "git_dirty",
            "hostname",
        ] {
            assert!(v.get(key).is_some(), "no {key} in {text}");
        }
        assert!(v["cores"].as_u64().unwrap() >= 1 && v["git_dirty"].is_boolean());
        let back = Machine::read(tmp.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.environment(), env);
    }

    #[test]
    fn missing_machine_json_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Machine::read(tmp.path()).unwrap_err();
        assert!(e.to_string().contains(MACHINE_JSON), "{e}");
        let m = Machine::new(&Environment::detect(), "unknown".into());
        assert_eq!(m.rustc, "unknown");
    }
}

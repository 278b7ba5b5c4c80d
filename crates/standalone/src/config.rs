//! `StandaloneConfig`: the `[standalone]` table (Spark's `spark.master.*`,
//! `spark.worker.*` and `SPARK_MASTER_*` / `SPARK_WORKER_*` settings).
//!
//! Settings come from the defaults, then the `[standalone]` table of a TOML
//! file (the same file's `[rpc]` and `[transport]` tables configure the
//! RpcEnv, `io_mode` included), then `STANDALONE_<KEY>` environment variables,
//! then command-line flags.
//!
//! | key | env | default | Spark |
//! | --- | --- | --- | --- |
//! | `master_host` | `STANDALONE_MASTER_HOST` | `127.0.0.1` | `SPARK_MASTER_HOST` |
//! | `master_port` | `STANDALONE_MASTER_PORT` | 7077 | `SPARK_MASTER_PORT` |
//! | `web_ui_port` | `STANDALONE_WEB_UI_PORT` | 8080 (0 picks one) | `SPARK_MASTER_WEBUI_PORT` |
//! | `web_ui` | `STANDALONE_WEB_UI` | true | `spark.ui.enabled` |
//! | `worker_host` | `STANDALONE_WORKER_HOST` | `127.0.0.1` | `SPARK_WORKER_HOST` |
//! | `worker_port` | `STANDALONE_WORKER_PORT` | 0 (picks one) | `SPARK_WORKER_PORT` |
//! | `worker_id` | `STANDALONE_WORKER_ID` | empty: `worker-<secs>-<host>-<port>` | `Worker.generateWorkerId` |
//! | `worker_cores` | `STANDALONE_WORKER_CORES` | 0 = all cores | `SPARK_WORKER_CORES` |
//! | `worker_memory_mb` | `STANDALONE_WORKER_MEMORY_MB` | 0 = RAM less 1 GiB | `SPARK_WORKER_MEMORY` |
//! | `worker_timeout_ms` | `STANDALONE_WORKER_TIMEOUT_MS` | 60000 | `spark.worker.timeout` |
//! | `register_timeout_ms` | `STANDALONE_REGISTER_TIMEOUT_MS` | 120000 | registration retries |
//! | `register_backoff_initial_ms` | `STANDALONE_REGISTER_BACKOFF_INITIAL_MS` | 250 | `INITIAL_REGISTRATION_RETRY_INTERVAL_SECONDS` |
//! | `register_backoff_max_ms` | `STANDALONE_REGISTER_BACKOFF_MAX_MS` | 10000 | `PROLONGED_REGISTRATION_RETRY_INTERVAL_SECONDS` |
//! | `remove_on_disconnect` | `STANDALONE_REMOVE_ON_DISCONNECT` | true | `Master.onDisconnected` |

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use rpc::{RpcAddress, RpcEnvConfig};

use crate::error::{Result, StandaloneError};

/// The prefix of the environment variables read by [`StandaloneConfig::apply_env_vars`].
pub const ENV_PREFIX: &str = "STANDALONE_";

/// Every key of the `[standalone]` table.
pub const KEYS: [&str; 14] = [
    "master_host",
    "master_port",
    "web_ui_port",
    "web_ui",
    "worker_host",
    "worker_port",
    "worker_id",
    "worker_cores",
    "worker_memory_mb",
    "worker_timeout_ms",
    "register_timeout_ms",
    "register_backoff_initial_ms",
    "register_backoff_max_ms",
    "remove_on_disconnect",
];

/// Settings of a Master and its Workers; see the [module docs](self) for keys and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandaloneConfig {
    /// Host the master binds and workers connect to.
    pub master_host: String,
    /// The master's RPC port.
    pub master_port: u16,
    /// The master's web UI port; 0 picks a free one.
    pub web_ui_port: u16,
    /// Whether the master serves its web UI.
    pub web_ui: bool,
    /// Host a worker binds and advertises.
    pub worker_host: String,
    /// A worker's RPC port; 0 picks a free one.
    pub worker_port: u16,
    /// A worker's id; empty generates `worker-<unix secs>-<host>-<port>`.
    pub worker_id: String,
    /// Cores a worker offers; 0 means all of the machine's.
    pub worker_cores: u32,
    /// Memory a worker offers, in MiB; 0 means the machine's RAM less 1 GiB.
    pub worker_memory_mb: u64,
    /// Milliseconds without a heartbeat after which the master drops a worker;
    /// workers send a heartbeat every quarter of it.
    pub worker_timeout_ms: u64,
    /// Milliseconds a worker keeps trying to register before it gives up.
    pub register_timeout_ms: u64,
    /// First wait between registration attempts, in milliseconds; it doubles each time.
    pub register_backoff_initial_ms: u64,
    /// Longest wait between registration attempts, in milliseconds.
    pub register_backoff_max_ms: u64,
    /// Whether the master drops a worker as soon as its connection closes.
    pub remove_on_disconnect: bool,
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        Self {
            master_host: "127.0.0.1".into(),
            master_port: 7077,
            web_ui_port: 8080,
            web_ui: true,
            worker_host: "127.0.0.1".into(),
            worker_port: 0,
            worker_id: String::new(),
            worker_cores: 0,
            worker_memory_mb: 0,
            worker_timeout_ms: 60_000,
            register_timeout_ms: 120_000,
            register_backoff_initial_ms: 250,
            register_backoff_max_ms: 10_000,
            remove_on_disconnect: true,
        }
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str, expected: &str) -> Result<T> {
    value.trim().parse().map_err(|_| StandaloneError::BadSetting {
        key: key.into(),
        value: value.into(),
        expected: expected.into(),
    })
}

fn positive(key: &str, value: &str) -> Result<u64> {
    let expected = "milliseconds, >= 1";
    match parse::<u64>(key, value, expected)? {
        0 => Err(StandaloneError::BadSetting {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        }),
        v => Ok(v),
    }
}

impl StandaloneConfig {
    /// Sets one key from text.
    ///
    /// # Errors
    /// [`StandaloneError::BadSetting`] naming the key, the value and what is allowed.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let port = "a port from 0 to 65535";
        match key {
            "master_host" => self.master_host = value.into(),
            "master_port" => self.master_port = parse(key, value, port)?,
            "web_ui_port" => self.web_ui_port = parse(key, value, port)?,
            "web_ui" => self.web_ui = parse(key, value, "true or false")?,
            "worker_host" => self.worker_host = value.into(),
            "worker_port" => self.worker_port = parse(key, value, port)?,
            "worker_id" => self.worker_id = value.into(),
            "worker_cores" => self.worker_cores = parse(key, value, "a whole number >= 0")?,
            "worker_memory_mb" => self.worker_memory_mb = parse(key, value, "MiB, a whole number >= 0")?,
            "worker_timeout_ms" => self.worker_timeout_ms = positive(key, value)?,
            "register_timeout_ms" => self.register_timeout_ms = positive(key, value)?,
            "register_backoff_initial_ms" => self.register_backoff_initial_ms = positive(key, value)?,
            "register_backoff_max_ms" => self.register_backoff_max_ms = positive(key, value)?,
            "remove_on_disconnect" => self.remove_on_disconnect = parse(key, value, "true or false")?,
            _ => {
                return Err(StandaloneError::BadSetting {
                    key: key.into(),
                    value: value.into(),
                    expected: format!("a key of the [standalone] table: {}", KEYS.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// Reads the `[standalone]` table of a TOML document over the defaults (other tables are ignored).
    ///
    /// # Errors
    /// [`StandaloneError::BadSetting`] for invalid TOML, unknown keys and bad values.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| StandaloneError::BadSetting {
                key: "<toml>".into(),
                value: e.to_string(),
                expected: "a valid TOML document".into(),
            })?;
        let mut conf = Self::default();
        let entries = transport::settings::toml_table_entries(&doc, "standalone").map_err(|value| {
            StandaloneError::BadSetting {
                key: "standalone".into(),
                value,
                expected: "a table of standalone keys".into(),
            }
        })?;
        for (key, text) in entries.unwrap_or_default() {
            conf.set(&key, &text)?;
        }
        Ok(conf)
    }

    /// Applies `STANDALONE_<KEY>` variables from `vars`; others are ignored.
    ///
    /// # Errors
    /// [`StandaloneError::BadSetting`] naming the variable.
    pub fn apply_env_vars<I, K, V>(&mut self, vars: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for o in transport::settings::env_overrides(vars, ENV_PREFIX, &KEYS) {
            self.set(&o.key, &o.value).map_err(|e| match e {
                StandaloneError::BadSetting { value, expected, .. } => StandaloneError::BadSetting {
                    key: o.variable.clone(),
                    value,
                    expected,
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// The worker timeout as a [`Duration`].
    pub fn worker_timeout(&self) -> Duration {
        Duration::from_millis(self.worker_timeout_ms)
    }

    /// How often a worker sends a heartbeat: a quarter of the worker timeout
    /// (Spark's `HEARTBEAT_MILLIS`), at least 1 ms.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis((self.worker_timeout_ms / 4).max(1))
    }

    /// The master's RPC address, as workers reach it.
    pub fn master_address(&self) -> RpcAddress {
        RpcAddress::new(self.master_host.clone(), self.master_port)
    }

    /// Cores a worker offers: `worker_cores`, or the machine's.
    pub fn resolved_cores(&self) -> u32 {
        if self.worker_cores > 0 {
            self.worker_cores
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        }
    }

    /// Memory a worker offers in MiB: `worker_memory_mb`, or the RAM in
    /// `/proc/meminfo` less 1 GiB (Spark's default), at least 1024.
    pub fn resolved_memory_mb(&self) -> u64 {
        if self.worker_memory_mb > 0 {
            return self.worker_memory_mb;
        }
        let total_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
        total_kb.map_or(1024, |kb| (kb / 1024).saturating_sub(1024).max(1024))
    }
}

/// Resolves `host:port` to a socket address to bind.
///
/// # Errors
/// [`StandaloneError::Resolve`] when the host does not resolve.
pub fn bind_address(host: &str, port: u16) -> Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| StandaloneError::Resolve { host: host.into() })
}

/// Reads both configurations from an optional TOML file, then the
/// environment: the `[standalone]` table with `STANDALONE_*`, and the `[rpc]`
/// and `[transport]` tables with `RPC_*`.
///
/// # Errors
/// A missing or invalid file, bad keys or values, each naming what is wrong.
pub fn load(file: Option<&Path>) -> Result<(StandaloneConfig, RpcEnvConfig)> {
    let (mut standalone, mut rpc) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| StandaloneError::Io {
                what: format!("cannot read config file {}", path.display()),
                source: e,
            })?;
            (
                StandaloneConfig::from_toml_str(&text)?,
                RpcEnvConfig::from_toml_str(&text)?,
            )
        }
        None => (StandaloneConfig::default(), RpcEnvConfig::default()),
    };
    standalone.apply_env_vars(std::env::vars())?;
    rpc.apply_env()?;
    Ok((standalone, rpc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_env_and_errors() {
        let mut c = StandaloneConfig::from_toml_str(
            "[rpc]\nname = \"m\"\n[standalone]\nmaster_port = 9000\nworker_timeout_ms = 600\nweb_ui = false\n",
        )
        .unwrap();
        assert_eq!(c.master_port, 9000);
        assert!(!c.web_ui);
        assert_eq!(c.heartbeat_interval(), Duration::from_millis(150));
        c.apply_env_vars([("STANDALONE_WEB_UI_PORT", "0"), ("OTHER", "x")])
            .unwrap();
        assert_eq!(c.web_ui_port, 0);
        let e = c
            .apply_env_vars([("STANDALONE_WORKER_TIMEOUT_MS", "0")])
            .unwrap_err();
        assert!(e.to_string().contains("STANDALONE_WORKER_TIMEOUT_MS"), "{e}");
        let e = StandaloneConfig::from_toml_str("[standalone]\nmaster_prt = 1\n").unwrap_err();
        assert!(e.to_string().contains("master_port"), "{e}");
        assert!(c.resolved_memory_mb() >= 1024 && c.resolved_cores() >= 1);
        assert_eq!(bind_address("127.0.0.1", 5).unwrap().port(), 5);
    }
}

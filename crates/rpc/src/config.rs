//! `RpcEnvConfig`: how an RpcEnv is created (Spark's `RpcEnvConfig` and the
//! `spark.rpc.*` keys), from code, a TOML file (`[rpc]` and `[transport]`
//! tables) and environment variables (`RPC_` + key in upper case).
//!
//! | key (`[rpc]`) | env | default | Spark |
//! | --- | --- | --- | --- |
//! | `name` | `RPC_NAME` | `rpc` | `RpcEnv` name |
//! | `bind_address` | `RPC_BIND_ADDRESS` | none: client mode | `spark.driver.bindAddress` + port |
//! | `advertise_host` | `RPC_ADVERTISE_HOST` | the bound IP | `spark.driver.host` |
//! | `dispatcher_threads` | `RPC_DISPATCHER_THREADS` | 0 = max(2, cores) | `spark.rpc.netty.dispatcher.numThreads` |
//! | `ask_timeout_ms` | `RPC_ASK_TIMEOUT_MS` | 120000 | `spark.rpc.askTimeout` |
//! | `inbox_capacity` | `RPC_INBOX_CAPACITY` | 1000000 | (unbounded in Spark) |
//! | `inbox_full_policy` | `RPC_INBOX_FULL_POLICY` | `fail` (or `wait`) | (unbounded in Spark) |
//! | `handover_timeout_ms` | `RPC_HANDOVER_TIMEOUT_MS` | 5000 | (none: Spark may reorder across a reconnect) |
//!
//! The two inbox keys are defaults for every endpoint; one endpoint can have
//! its own at setup ([`EndpointOptions`](crate::EndpointOptions)).
//!
//! The `[transport]` keys are those of [`TransportConf`], `io_mode` among them,
//! and `auth_secret` (`RPC_AUTH_SECRET`): set it, the same on every RpcEnv that
//! talks to another, to make both ends of every connection prove they know it
//! before any message is dispatched (Spark's `spark.authenticate`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use transport::{ConfError, TransportConf};

use crate::inbox_limits::InboxFullPolicy;

/// Settings of one RpcEnv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcEnvConfig {
    /// A name for logs and thread names.
    pub name: String,
    /// Where to listen (port 0 picks one); `None` for a client-mode RpcEnv that
    /// only connects out (Spark's `clientMode`).
    pub bind_address: Option<SocketAddr>,
    /// The host others reach this RpcEnv at; defaults to the bound IP.
    pub advertise_host: Option<String>,
    /// Threads of the shared MessageLoop; 0 picks max(2, cores).
    pub dispatcher_threads: usize,
    /// Default ask timeout, in milliseconds.
    pub ask_timeout_ms: u64,
    /// Messages an endpoint's inbox may hold before sends and asks to it are
    /// refused or held back, as `inbox_full_policy` says (at least 1). Network
    /// events and `OnStop` are never refused. An endpoint set up with
    /// [`EndpointOptions::inbox_capacity`](crate::EndpointOptions::inbox_capacity) has its own.
    pub inbox_capacity: usize,
    /// What a send or ask to an endpoint whose inbox is full meets:
    /// [`InboxFullPolicy::Fail`] (the default: refused with
    /// [`RpcError::InboxFull`](crate::RpcError::InboxFull)) or
    /// [`InboxFullPolicy::Wait`] (a local sender blocks for room, up to
    /// `ask_timeout_ms`; a remote one's connection stops being read until
    /// there is room). An endpoint set up with
    /// [`EndpointOptions::when_full`](crate::EndpointOptions::when_full) has its own.
    pub inbox_full_policy: InboxFullPolicy,
    /// How long, in milliseconds, a sender's new connection may wait for its
    /// previous one to close before that one is closed by force (at least 1).
    /// A reconnected sender's messages are held until everything its previous
    /// connection delivered was dispatched, so that its order holds across
    /// reconnects; this bounds the wait when the old connection's close was
    /// lost on the network (a half-open connection).
    pub handover_timeout_ms: u64,
    /// The transport below, and its IO mode.
    pub transport: TransportConf,
}

const KEYS: [&str; 8] = [
    "name",
    "bind_address",
    "advertise_host",
    "dispatcher_threads",
    "ask_timeout_ms",
    "inbox_capacity",
    "inbox_full_policy",
    "handover_timeout_ms",
];

/// The default [`RpcEnvConfig::inbox_capacity`].
pub const DEFAULT_INBOX_CAPACITY: usize = 1_000_000;

impl Default for RpcEnvConfig {
    fn default() -> Self {
        Self {
            name: "rpc".into(),
            bind_address: None,
            advertise_host: None,
            dispatcher_threads: 0,
            ask_timeout_ms: 120_000,
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            inbox_full_policy: InboxFullPolicy::Fail,
            handover_timeout_ms: crate::handover::DEFAULT_HANDOVER_TIMEOUT_MS,
            transport: TransportConf::default(),
        }
    }
}

fn invalid(key: &str, value: &str, allowed: &str) -> ConfError {
    ConfError::InvalidValue {
        key: key.into(),
        value: value.into(),
        allowed: allowed.into(),
    }
}

impl RpcEnvConfig {
    /// A server-mode config listening on `bind_address`.
    pub fn server(name: impl Into<String>, bind_address: SocketAddr) -> Self {
        Self {
            name: name.into(),
            bind_address: Some(bind_address),
            ..Self::default()
        }
    }

    /// A client-mode config: no listening socket.
    pub fn client(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The default ask timeout as a [`Duration`].
    pub fn ask_timeout(&self) -> Duration {
        Duration::from_millis(self.ask_timeout_ms)
    }

    /// MessageLoop threads to run given `cores`: `dispatcher_threads`, or max(2, cores) when 0.
    pub fn resolved_dispatcher_threads(&self, cores: usize) -> usize {
        if self.dispatcher_threads > 0 {
            self.dispatcher_threads
        } else {
            cores.max(2)
        }
    }

    /// Checks the settings that code can set out of range (the text setters
    /// already refuse them), then the transport's
    /// ([`TransportConf::validate`]). [`RpcEnv::create`](crate::RpcEnv::create)
    /// calls it.
    ///
    /// # Errors
    /// [`ConfError::InvalidValue`] naming the key, when `ask_timeout_ms`,
    /// `inbox_capacity` or `handover_timeout_ms` is 0, and the transport's errors.
    pub fn validate(&self) -> Result<(), ConfError> {
        for (key, value, allowed) in [
            ("ask_timeout_ms", self.ask_timeout_ms, "milliseconds, >= 1"),
            (
                "inbox_capacity",
                self.inbox_capacity as u64,
                "a whole number >= 1",
            ),
            (
                "handover_timeout_ms",
                self.handover_timeout_ms,
                "milliseconds, >= 1",
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "0", allowed));
            }
        }
        self.transport.validate()
    }

    /// Sets an `[rpc]` key from text.
    ///
    /// # Errors
    /// [`ConfError::UnknownKey`] or [`ConfError::InvalidValue`] naming key, value and what is allowed.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfError> {
        match key {
            "name" => self.name = value.to_string(),
            "bind_address" if value.is_empty() => self.bind_address = None,
            "bind_address" => {
                self.bind_address = Some(value.parse().map_err(|_| {
                    invalid(
                        key,
                        value,
                        "ip:port such as 127.0.0.1:7077, or empty for client mode",
                    )
                })?)
            }
            "advertise_host" => self.advertise_host = (!value.is_empty()).then(|| value.to_string()),
            "dispatcher_threads" => {
                self.dispatcher_threads = value
                    .parse()
                    .map_err(|_| invalid(key, value, "a whole number >= 0"))?
            }
            "ask_timeout_ms" => {
                self.ask_timeout_ms = value
                    .parse()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| invalid(key, value, "milliseconds, >= 1"))?
            }
            "handover_timeout_ms" => {
                self.handover_timeout_ms = value
                    .parse()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| invalid(key, value, "milliseconds, >= 1"))?
            }
            "inbox_capacity" => {
                self.inbox_capacity = value
                    .parse()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| invalid(key, value, "a whole number >= 1"))?
            }
            "inbox_full_policy" => {
                self.inbox_full_policy = value
                    .parse()
                    .map_err(|_| invalid(key, value, "`fail` or `wait`"))?
            }
            _ => {
                return Err(ConfError::UnknownKey {
                    key: key.into(),
                    place: "the [rpc] table".into(),
                    known: KEYS.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Reads `[rpc]` and `[transport]` from a TOML document over the defaults.
    ///
    /// # Errors
    /// [`ConfError`] for invalid TOML, unknown keys and bad values.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfError> {
        let transport = TransportConf::from_toml_str(text)?;
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfError::File {
            path: "<toml>".into(),
            message: e.to_string(),
        })?;
        let mut conf = Self {
            transport,
            ..Self::default()
        };
        let entries = transport::settings::toml_table_entries(&doc, "rpc")
            .map_err(|value| invalid("rpc", &value, "a table of rpc keys"))?;
        for (key, text) in entries.unwrap_or_default() {
            conf.set(&key, &text)?;
        }
        Ok(conf)
    }

    /// Reads a TOML file; see [`from_toml_str`](Self::from_toml_str).
    ///
    /// # Errors
    /// [`ConfError::File`] when unreadable, and the errors of `from_toml_str`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text)
    }

    /// Applies `RPC_<KEY>` overrides for the `[rpc]` and `[transport]` keys from `vars`.
    ///
    /// # Errors
    /// [`ConfError::InvalidValue`] naming the variable.
    pub fn apply_env_vars<I, K, V>(&mut self, vars: I) -> Result<(), ConfError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        self.transport.apply_env_vars(vars.iter().map(|(k, v)| (k, v)))?;
        for o in transport::settings::env_overrides(vars, transport::ENV_PREFIX, &KEYS) {
            self.set(&o.key, &o.value).map_err(|e| match e {
                ConfError::InvalidValue { value, allowed, .. } => ConfError::InvalidValue {
                    key: o.variable.clone(),
                    value,
                    allowed,
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// Applies overrides from this process's environment.
    ///
    /// # Errors
    /// As [`apply_env_vars`](Self::apply_env_vars).
    pub fn apply_env(&mut self) -> Result<(), ConfError> {
        self.apply_env_vars(std::env::vars())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_env() {
        let mut c = RpcEnvConfig::from_toml_str(
            "[rpc]\nname = \"master\"\nbind_address = \"127.0.0.1:0\"\ndispatcher_threads = 3\n\
             [transport]\nio_mode = \"epoll\"\n",
        )
        .unwrap();
        assert_eq!(c.name, "master");
        assert_eq!(c.dispatcher_threads, 3);
        assert_eq!(c.transport.io_mode, transport::IoMode::Epoll);
        c.apply_env_vars([("RPC_ASK_TIMEOUT_MS", "500"), ("RPC_SERVER_THREADS", "2")])
            .unwrap();
        assert_eq!(c.ask_timeout(), Duration::from_millis(500));
        assert_eq!(c.transport.server_threads, 2);
        assert_eq!(c.resolved_dispatcher_threads(8), 3);
        assert_eq!(RpcEnvConfig::default().resolved_dispatcher_threads(1), 2);
    }

    #[test]
    fn bad_values_are_named() {
        let e = RpcEnvConfig::from_toml_str("[rpc]\nbind_address = \"nowhere\"\n").unwrap_err();
        assert!(e.to_string().contains("bind_address") && e.to_string().contains("nowhere"));
        let e = RpcEnvConfig::default()
            .apply_env_vars([("RPC_ASK_TIMEOUT_MS", "0")])
            .unwrap_err();
        assert!(e.to_string().contains("RPC_ASK_TIMEOUT_MS"));
        assert!(RpcEnvConfig::from_toml_str("[rpc]\nnam = 1\n").is_err());
        let e = RpcEnvConfig::default()
            .apply_env_vars([("RPC_INBOX_CAPACITY", "0")])
            .unwrap_err();
        assert!(e.to_string().contains("RPC_INBOX_CAPACITY"));
        let mut c = RpcEnvConfig::default();
        c.apply_env_vars([("RPC_INBOX_CAPACITY", "10")]).unwrap();
        assert_eq!(c.inbox_capacity, 10);
        let e = RpcEnvConfig::from_toml_str("[rpc]\nhandover_timeout_ms = 0\n").unwrap_err();
        assert!(e.to_string().contains("handover_timeout_ms"), "{e}");
        c.apply_env_vars([("RPC_HANDOVER_TIMEOUT_MS", "250")]).unwrap();
        assert_eq!(c.handover_timeout_ms, 250);
    }

    #[test]
    fn validate_refuses_zeros_set_in_code() {
        assert!(RpcEnvConfig::default().validate().is_ok());
        type Spoil = fn(&mut RpcEnvConfig);
        let cases: [(&str, Spoil); 4] = [
            ("ask_timeout_ms", |c| c.ask_timeout_ms = 0),
            ("inbox_capacity", |c| c.inbox_capacity = 0),
            ("handover_timeout_ms", |c| c.handover_timeout_ms = 0),
            ("connect_timeout_ms", |c| c.transport.connect_timeout_ms = 0),
        ];
        for (key, spoil) in cases {
            let mut c = RpcEnvConfig::client("c");
            spoil(&mut c);
            let e = c.validate().unwrap_err();
            assert!(
                matches!(&e, ConfError::InvalidValue { key: k, value, .. } if k == key && value == "0"),
                "{key}: {e:?}"
            );
        }
    }

    #[test]
    fn inbox_full_policy_from_toml_and_env() {
        assert_eq!(RpcEnvConfig::default().inbox_full_policy, InboxFullPolicy::Fail);
        let mut c = RpcEnvConfig::from_toml_str("[rpc]\ninbox_full_policy = \"wait\"\n").unwrap();
        assert_eq!(c.inbox_full_policy, InboxFullPolicy::Wait);
        c.apply_env_vars([("RPC_INBOX_FULL_POLICY", "fail")]).unwrap();
        assert_eq!(c.inbox_full_policy, InboxFullPolicy::Fail);
        let e = RpcEnvConfig::default()
            .apply_env_vars([("RPC_INBOX_FULL_POLICY", "block")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("RPC_INBOX_FULL_POLICY") && e.contains("block") && e.contains("`wait`"),
            "{e}"
        );
        let e = RpcEnvConfig::from_toml_str("[rpc]\ninbox_full_policy = \"drop\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("inbox_full_policy") && e.contains("drop"), "{e}");
    }
}

//! `IoMode` and `TransportConf`: which backend runs, and how.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Which IO backend a transport runs on (Spark's `IOMode`: NIO / EPOLL / AUTO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IoMode {
    /// tokio over epoll (the portable path, like Netty's NIO and EPOLL transports).
    Epoll,
    /// io_uring (Linux 5.19 or later for multishot receive).
    IoUring,
    /// io_uring where the kernel allows it, epoll otherwise.
    #[default]
    Auto,
}

impl IoMode {
    /// The accepted spellings, for error messages.
    pub const ALLOWED: &'static str = "epoll, io_uring, auto";

    /// The canonical name: `epoll`, `io_uring` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epoll => "epoll",
            Self::IoUring => "io_uring",
            Self::Auto => "auto",
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IoMode {
    type Err = ConfError;

    /// Parses `epoll`, `io_uring` (or `iouring`, `uring`) and `auto`, in any case;
    /// Spark's `NIO` is read as `epoll`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "epoll" | "nio" => Ok(Self::Epoll),
            "io_uring" | "iouring" | "uring" => Ok(Self::IoUring),
            "auto" => Ok(Self::Auto),
            _ => Err(ConfError::InvalidValue {
                key: "io_mode".into(),
                value: s.into(),
                allowed: Self::ALLOWED.into(),
            }),
        }
    }
}

/// A bad configuration: the key, the value seen and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    /// A key's value is out of range or of the wrong kind.
    #[error("invalid value `{value}` for `{key}`; allowed: {allowed}")]
    InvalidValue {
        /// The key (or environment variable) that was set.
        key: String,
        /// The value given.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },
    /// A key this configuration does not have.
    #[error("unknown key `{key}` in {place}; known keys: {known}")]
    UnknownKey {
        /// The key given.
        key: String,
        /// Where it was found (a file's table, or "the environment").
        place: String,
        /// The keys that exist.
        known: String,
    },
    /// The file could not be read or is not valid TOML.
    #[error("cannot read configuration {path}: {message}")]
    File {
        /// The file's path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Transport settings (Spark's `TransportConf`).
///
/// Mirrors Spark's `TransportConf` and the `spark.rpc.io.*` keys. A
/// configuration starts from [`TransportConf::default`], is read from the
/// `[transport]` table of a TOML file, then overridden by environment
/// variables (`RPC_` + the key in upper case, e.g. `RPC_IO_MODE=epoll`), then
/// by code (the fields are public). [`TransportConf::validate`] checks it.
///
/// | key | env | default | Spark |
/// | --- | --- | --- | --- |
/// | `io_mode` | `RPC_IO_MODE` | `auto` | `spark.rpc.io.mode` |
/// | `server_threads` | `RPC_SERVER_THREADS` | 0 = cores, at most 8 | `spark.rpc.io.serverThreads` |
/// | `client_threads` | `RPC_CLIENT_THREADS` | 0 = cores, at most 8 | `spark.rpc.io.clientThreads` |
/// | `connections_per_peer` | `RPC_CONNECTIONS_PER_PEER` | 1 | `spark.rpc.io.numConnectionsPerPeer` |
/// | `max_frame_size` | `RPC_MAX_FRAME_SIZE` | 134217728 (128 MiB) | `spark.rpc.message.maxSize` |
/// | `connect_timeout_ms` | `RPC_CONNECT_TIMEOUT_MS` | 120000 | `spark.rpc.io.connectionCreationTimeout` |
/// | `send_buffer_bytes` | `RPC_SEND_BUFFER_BYTES` | 0 = OS default | `spark.rpc.io.sendBuffer` |
/// | `receive_buffer_bytes` | `RPC_RECEIVE_BUFFER_BYTES` | 0 = OS default | `spark.rpc.io.receiveBuffer` |
/// | `tcp_nodelay` | `RPC_TCP_NODELAY` | true | (always on in Spark) |
/// | `pool_max_bytes` | `RPC_POOL_MAX_BYTES` | 67108864 (64 MiB) | (Netty allocator arenas) |
/// | `auth_secret` | `RPC_AUTH_SECRET` | none: no authentication | `spark.authenticate` + `spark.authenticate.secret` |
/// | `max_connections` | `RPC_MAX_CONNECTIONS` | 10000 per server; 0 = unlimited | (none in Spark) |
/// | `max_queued_bytes_per_connection` | `RPC_MAX_QUEUED_BYTES_PER_CONNECTION` | 16777216 (16 MiB); 0 = unlimited | (none in Spark) |
/// | `max_in_flight_requests_per_connection` | `RPC_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION` | 4096; 0 = unlimited | (none in Spark) |
/// | `max_outstanding_rpcs_per_connection` | `RPC_MAX_OUTSTANDING_RPCS_PER_CONNECTION` | 0 = unlimited | (none in Spark) |
/// | `spin_before_park_us` | `RPC_SPIN_BEFORE_PARK_US` | 100 µs; 0 = park at once; at most 10,000 (10 ms) | (none in Netty; its loops park at once) |
///
/// The last four bound what one peer can make a process hold; what happens
/// at each is on its field. Defaults:
///
/// - `max_connections` 10,000: this project opens one connection per peer
///   process (`connections_per_peer`), so even a driver of thousands of
///   executors stays well below it; it is there to stop a flood of
///   connections before it exhausts descriptors, not to shape normal load.
/// - `max_queued_bytes_per_connection` 16 MiB: far above what a healthy
///   connection queues (a reply waits only until the socket takes it), so
///   normal traffic, 1 MiB messages included, never pauses on it; it only
///   stops a peer that does not read its answers from making the server
///   buffer them without end.
/// - `max_in_flight_requests_per_connection` 4096: Spark has no such bound
///   (its inbox grows without limit). 4096 is 64 times the deepest pipeline
///   of the benchmark (64 in flight per connection), and bounds the number of
///   request bodies one connection can make the handlers hold.
/// - `max_outstanding_rpcs_per_connection` none: the sending side is already
///   held back by the receiver's `max_in_flight_requests_per_connection` (its
///   requests wait in TCP), and an RPC layer that issues thousands of
///   concurrent asks on one connection should see them answered, not refused.
///   Set it to fail fast, with a typed error, instead of queueing.
///
/// `Debug` prints `auth_secret` as `Some("<redacted>")`, never the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub struct TransportConf {
    /// Which backend runs.
    pub io_mode: IoMode,
    /// Event-loop threads serving accepted connections; 0 picks the number of cores, at most 8.
    pub server_threads: usize,
    /// Event-loop threads serving outgoing connections; 0 picks the number of cores, at most 8.
    pub client_threads: usize,
    /// Connections a client factory keeps to one peer address (at least 1),
    /// for [`TransportClientFactory::create_client`](crate::TransportClientFactory::create_client).
    /// The RPC layer's Outboxes do not share pooled connections: each opens
    /// its own, one at a time (`create_unshared_client`).
    pub connections_per_peer: usize,
    /// Largest frame accepted or sent, in bytes, length prefix included (at least 21).
    pub max_frame_size: u64,
    /// How long connecting may take, in milliseconds (at least 1).
    pub connect_timeout_ms: u64,
    /// `SO_SNDBUF` in bytes; 0 leaves the OS default.
    pub send_buffer_bytes: usize,
    /// `SO_RCVBUF` in bytes; 0 leaves the OS default.
    pub receive_buffer_bytes: usize,
    /// `TCP_NODELAY` on every connection.
    pub tcp_nodelay: bool,
    /// Bound on idle bytes the buffer pool keeps, in bytes.
    pub pool_max_bytes: usize,
    /// The shared secret both ends of every connection must prove they know
    /// before any RPC flows (see [`crate::auth`]); `None` (or an empty value)
    /// turns authentication off.
    pub auth_secret: Option<String>,
    /// Accepted connections one server keeps open at once, a count; 0 means no
    /// limit. A connection accepted over it is closed at once (the peer sees
    /// its connection closed before any answer) and logged at `warn`; the
    /// connections already open are unaffected.
    pub max_connections: usize,
    /// Bytes of frames queued on one connection and not yet written to its
    /// socket above which the backend stops reading from that connection; 0
    /// means no limit. Reading resumes once the queue is at most half of it.
    /// Sends are never refused or dropped for it (the queue may pass it by
    /// what handlers already sent): a peer that never reads its answers gets
    /// TCP backpressure instead of making this process buffer them.
    pub max_queued_bytes_per_connection: usize,
    /// Requests received on one connection and in flight, a count; 0 means no
    /// limit: RpcRequests handed to the handler and not yet answered
    /// (`send_response` / `send_failure`). At the limit the backend stops
    /// reading from that connection until an answer goes out.
    pub max_in_flight_requests_per_connection: usize,
    /// RPCs sent on one connection and awaiting their answer, a count; 0 means
    /// no limit. `send_rpc` past it fails at once with
    /// [`TransportError::TooManyOutstandingRpcs`](crate::TransportError::TooManyOutstandingRpcs),
    /// sending nothing and leaving the connection open.
    pub max_outstanding_rpcs_per_connection: usize,
    /// Longest an event loop with nothing to do polls for work before it parks,
    /// in microseconds; 0 parks at once. Adaptive ([`SpinPolicy`](crate::SpinPolicy)):
    /// a loop spins only while most (3 in 4) of its recent idle gaps were shorter than this
    /// (plus one probe 100 ms after it last spun), so
    /// an idle or slow connection costs no CPU, and stops spinning for a while
    /// when a spin loses its CPU to other work; a loop whose thread may run on
    /// one CPU only (`sched_getaffinity`) never spins. Waking a parked vCPU costs tens
    /// of microseconds on a VM, more than a loopback round trip on one core;
    /// `docs/PERFORMANCE.md` has the measurements behind the default of 100.
    pub spin_before_park_us: u64,
}

impl fmt::Debug for TransportConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConf")
            .field("io_mode", &self.io_mode)
            .field("server_threads", &self.server_threads)
            .field("client_threads", &self.client_threads)
            .field("connections_per_peer", &self.connections_per_peer)
            .field("max_frame_size", &self.max_frame_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("send_buffer_bytes", &self.send_buffer_bytes)
            .field("receive_buffer_bytes", &self.receive_buffer_bytes)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("pool_max_bytes", &self.pool_max_bytes)
            .field("auth_secret", &self.auth_secret.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field(
                "max_queued_bytes_per_connection",
                &self.max_queued_bytes_per_connection,
            )
            .field(
                "max_in_flight_requests_per_connection",
                &self.max_in_flight_requests_per_connection,
            )
            .field(
                "max_outstanding_rpcs_per_connection",
                &self.max_outstanding_rpcs_per_connection,
            )
            .field("spin_before_park_us", &self.spin_before_park_us)
            .finish()
    }
}

impl Default for TransportConf {
    fn default() -> Self {
        Self {
            io_mode: IoMode::Auto,
            server_threads: 0,
            client_threads: 0,
            connections_per_peer: 1,
            max_frame_size: 128 << 20,
            connect_timeout_ms: 120_000,
            send_buffer_bytes: 0,
            receive_buffer_bytes: 0,
            tcp_nodelay: true,
            pool_max_bytes: 64 << 20,
            auth_secret: None,
            max_connections: 10_000,
            max_queued_bytes_per_connection: 16 << 20,
            max_in_flight_requests_per_connection: 4096,
            max_outstanding_rpcs_per_connection: 0,
            spin_before_park_us: 100,
        }
    }
}

/// Every key, in the order of the module table.
pub const KEYS: [&str; 16] = [
    "io_mode",
    "server_threads",
    "client_threads",
    "connections_per_peer",
    "max_frame_size",
    "connect_timeout_ms",
    "send_buffer_bytes",
    "receive_buffer_bytes",
    "tcp_nodelay",
    "pool_max_bytes",
    "auth_secret",
    "max_connections",
    "max_queued_bytes_per_connection",
    "max_in_flight_requests_per_connection",
    "max_outstanding_rpcs_per_connection",
    "spin_before_park_us",
];

/// Largest [`TransportConf::spin_before_park_us`]: 10 ms, in µs. Spinning
/// pays only against a park and wake-up (tens of µs); a larger value is a
/// unit mistake (nanoseconds or milliseconds meant as µs).
pub const MAX_SPIN_BEFORE_PARK_US: u64 = 10_000;
const SPIN_ALLOWED: &str = "microseconds, a whole number from 0 to 10000 (10 ms); 0 = park at once";

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "RPC_";

fn parse_num<T: FromStr>(key: &str, value: &str, allowed: &str) -> Result<T, ConfError> {
    value.trim().parse().map_err(|_| ConfError::InvalidValue {
        key: key.into(),
        value: value.into(),
        allowed: allowed.into(),
    })
}

impl TransportConf {
    /// Sets `key` from its text form, as a file or the environment gives it.
    ///
    /// # Errors
    /// [`ConfError::UnknownKey`] for a key not in [`KEYS`]; [`ConfError::InvalidValue`]
    /// when `value` does not parse or is out of range.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfError> {
        const COUNT: &str = "a whole number >= 0";
        const UNLIMITED: &str = "a whole number >= 0 (0 = no limit)";
        match key {
            "io_mode" => self.io_mode = value.parse()?,
            "server_threads" => self.server_threads = parse_num(key, value, COUNT)?,
            "client_threads" => self.client_threads = parse_num(key, value, COUNT)?,
            "connections_per_peer" => {
                self.connections_per_peer = parse_num(key, value, "a whole number >= 1")?
            }
            "max_frame_size" => self.max_frame_size = parse_num(key, value, "bytes, a whole number >= 21")?,
            "connect_timeout_ms" => self.connect_timeout_ms = parse_num(key, value, "milliseconds, >= 1")?,
            "send_buffer_bytes" => self.send_buffer_bytes = parse_num(key, value, COUNT)?,
            "receive_buffer_bytes" => self.receive_buffer_bytes = parse_num(key, value, COUNT)?,
            "tcp_nodelay" => self.tcp_nodelay = parse_num(key, value, "true or false")?,
            "pool_max_bytes" => self.pool_max_bytes = parse_num(key, value, COUNT)?,
            "auth_secret" => self.auth_secret = (!value.is_empty()).then(|| value.to_string()),
            "max_connections" => self.max_connections = parse_num(key, value, UNLIMITED)?,
            "max_queued_bytes_per_connection" => {
                self.max_queued_bytes_per_connection =
                    parse_num(key, value, "bytes, a whole number >= 0 (0 = no limit)")?
            }
            "max_in_flight_requests_per_connection" => {
                self.max_in_flight_requests_per_connection = parse_num(key, value, UNLIMITED)?
            }
            "max_outstanding_rpcs_per_connection" => {
                self.max_outstanding_rpcs_per_connection = parse_num(key, value, UNLIMITED)?
            }
            "spin_before_park_us" => self.spin_before_park_us = parse_num(key, value, SPIN_ALLOWED)?,
            _ => {
                return Err(ConfError::UnknownKey {
                    key: key.into(),
                    place: "the transport configuration".into(),
                    known: KEYS.join(", "),
                });
            }
        }
        self.validate()
    }

    /// Checks ranges: `connections_per_peer >= 1`, `max_frame_size >= 21`,
    /// `connect_timeout_ms >= 1`, `spin_before_park_us <= 10,000` (10 ms:
    /// more is a unit mistake, nanoseconds or milliseconds meant as µs).
    ///
    /// # Errors
    /// [`ConfError::InvalidValue`] naming the first key out of range.
    pub fn validate(&self) -> Result<(), ConfError> {
        let bad = |key: &str, value: String, allowed: &str| {
            Err(ConfError::InvalidValue {
                key: key.into(),
                value,
                allowed: allowed.into(),
            })
        };
        if self.connections_per_peer == 0 {
            return bad("connections_per_peer", "0".into(), "a whole number >= 1");
        }
        if self.max_frame_size < crate::protocol::MAX_HEADER_SIZE as u64 {
            return bad(
                "max_frame_size",
                self.max_frame_size.to_string(),
                "bytes, a whole number >= 21",
            );
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms", "0".into(), "milliseconds, >= 1");
        }
        if self.spin_before_park_us > MAX_SPIN_BEFORE_PARK_US {
            return bad(
                "spin_before_park_us",
                self.spin_before_park_us.to_string(),
                SPIN_ALLOWED,
            );
        }
        Ok(())
    }

    /// Reads the `[transport]` table of a TOML document over the defaults;
    /// other tables are ignored (they belong to other layers).
    ///
    /// # Errors
    /// [`ConfError::File`] for invalid TOML, [`ConfError::UnknownKey`] and
    /// [`ConfError::InvalidValue`] for bad keys and values.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfError> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfError::File {
            path: "<toml>".into(),
            message: e.to_string(),
        })?;
        let mut conf = Self::default();
        let entries = crate::settings::toml_table_entries(&doc, "transport").map_err(|value| {
            ConfError::InvalidValue {
                key: "transport".into(),
                value,
                allowed: "a table of transport keys".into(),
            }
        })?;
        for (key, text) in entries.unwrap_or_default() {
            conf.set(&key, &text).map_err(|e| match e {
                ConfError::UnknownKey { key, known, .. } => ConfError::UnknownKey {
                    key,
                    place: "the [transport] table".into(),
                    known,
                },
                other => other,
            })?;
        }
        Ok(conf)
    }

    /// Reads a TOML file; see [`from_toml_str`](Self::from_toml_str).
    ///
    /// # Errors
    /// [`ConfError::File`] when the file cannot be read or parsed, and the
    /// errors of [`from_toml_str`](Self::from_toml_str).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            ConfError::File { message, .. } => ConfError::File {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Applies overrides from `(name, value)` pairs of environment variables:
    /// each `RPC_<KEY>` whose key is in [`KEYS`] sets that key; other variables are ignored.
    ///
    /// # Errors
    /// [`ConfError::InvalidValue`] naming the variable when its value is bad.
    pub fn apply_env_vars<I, K, V>(&mut self, vars: I) -> Result<(), ConfError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for o in crate::settings::env_overrides(vars, ENV_PREFIX, &KEYS) {
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

    /// Applies overrides from this process's environment; see [`apply_env_vars`](Self::apply_env_vars).
    ///
    /// # Errors
    /// As [`apply_env_vars`](Self::apply_env_vars).
    pub fn apply_env(&mut self) -> Result<(), ConfError> {
        self.apply_env_vars(std::env::vars())
    }

    /// The secret to authenticate connections with, when authentication is on.
    pub fn auth_secret(&self) -> Option<&str> {
        self.auth_secret.as_deref().filter(|s| !s.is_empty())
    }

    /// The connect timeout as a [`Duration`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`spin_before_park_us`](Self::spin_before_park_us) as a [`Duration`].
    pub fn spin_before_park(&self) -> Duration {
        Duration::from_micros(self.spin_before_park_us)
    }

    /// [`max_connections`](Self::max_connections) with 0 (no limit) as `usize::MAX`.
    pub fn connection_limit(&self) -> usize {
        no_limit_as_max(self.max_connections)
    }

    /// [`max_queued_bytes_per_connection`](Self::max_queued_bytes_per_connection), in bytes, with 0 (no limit) as `usize::MAX`.
    pub fn queued_bytes_limit(&self) -> usize {
        no_limit_as_max(self.max_queued_bytes_per_connection)
    }

    /// [`max_in_flight_requests_per_connection`](Self::max_in_flight_requests_per_connection) with 0 (no limit) as `usize::MAX`.
    pub fn in_flight_requests_limit(&self) -> usize {
        no_limit_as_max(self.max_in_flight_requests_per_connection)
    }

    /// [`max_outstanding_rpcs_per_connection`](Self::max_outstanding_rpcs_per_connection) with 0 (no limit) as `usize::MAX`.
    pub fn outstanding_rpcs_limit(&self) -> usize {
        no_limit_as_max(self.max_outstanding_rpcs_per_connection)
    }

    /// Server event-loop threads to run, given `cores` available: `server_threads`, or `min(cores, 8)` when 0.
    pub fn resolved_server_threads(&self, cores: usize) -> usize {
        resolve_threads(self.server_threads, cores)
    }

    /// Client event-loop threads to run, given `cores` available: `client_threads`, or `min(cores, 8)` when 0.
    pub fn resolved_client_threads(&self, cores: usize) -> usize {
        resolve_threads(self.client_threads, cores)
    }
}

fn no_limit_as_max(limit: usize) -> usize {
    if limit == 0 { usize::MAX } else { limit }
}

fn resolve_threads(configured: usize, cores: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        cores.clamp(1, 8)
    }
}

#[cfg(test)]
mod tests;

//! `rpc-bench load --connect ADDR`: the client half of a run against a remote server — an
//! `rpc-bench serve` at either level, or at the transport level any server that speaks Spark's
//! frames (Spark's own `TransportServer` included). It reuses the load generators of
//! [`transport_load`] and [`rpc_load`] and prints the same record as `run`, with the server's
//! address added.
//!
//! Requests carry the byte pattern of Spark's baseline (`(i * 31 + 7) as u8`), so that with
//! `--verify` an echoed response is checked against something that is not all zeros.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use rpc::{RpcAddress, RpcEnv, RpcEnvConfig};
use transport::{IoMode, TransportConf};

use crate::error::BenchError;
use crate::host::Environment;
use crate::record::Record;
use crate::run::{FRAME_OVERHEAD, Level, RunSpec};
use crate::workload::{System, Workload, parse_bytes, parse_count, parse_duration_seconds, parse_seconds};
use crate::{rpc_load, transport_load};

/// The byte a fixed-size response (`--response`) is filled with, as in Spark's baseline
/// (`SparkTransportBench.RESPONSE_FILL`), so that either side's client can check the other's server.
pub const RESPONSE_FILL: u8 = 0x5A;

/// A request body of `len` bytes: byte `i` is `(i * 31 + 7) as u8`, as Spark's baseline sends.
pub fn request_pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(7) as u8)
        .collect()
}

/// What every response of a verified load must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The request's own bytes (a server without `--response`).
    Echo(Bytes),
    /// This many bytes of [`RESPONSE_FILL`] (a server with `--response`).
    Fill(usize),
}

impl Expected {
    /// What a server answers to `payload`: an echo, or `response` bytes of the fill byte when given.
    pub fn for_request(payload: &Bytes, response: Option<usize>) -> Self {
        match response {
            Some(n) => Self::Fill(n),
            None => Self::Echo(payload.clone()),
        }
    }

    /// Whether `body` is exactly what was expected, byte for byte.
    pub fn matches(&self, body: &[u8]) -> bool {
        match self {
            Self::Echo(request) => body == &request[..],
            Self::Fill(n) => body.len() == *n && body.iter().all(|&b| b == RESPONSE_FILL),
        }
    }
}

/// Options of `rpc-bench load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The server: `host:port` of an `rpc-bench serve` (or, at the transport level, of any
    /// server speaking Spark's frames, e.g. `scripts/spark-baseline.sh serve`).
    #[arg(long)]
    pub connect: String,
    /// Layer to load; must match the server's `--level`.
    #[arg(long, value_enum, default_value_t = Level::Transport)]
    pub level: Level,
    /// The client's transport backend: epoll, io_uring or auto [default: auto, or the --config file's].
    #[arg(long)]
    pub io_mode: Option<IoMode>,
    /// A TOML file: `io_mode` and the thread counts as top-level keys (as `run --config`), and/or
    /// `[transport]` and `[rpc]` tables of an RpcEnv configuration (see the README); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Request body size in bytes (suffixes KiB, MiB allowed).
    #[arg(long, default_value = "64", value_parser = parse_bytes)]
    pub payload: usize,
    /// Response body size the server was started with (`serve --response`); without it the
    /// server is expected to echo each request.
    #[arg(long, value_parser = parse_bytes)]
    pub response: Option<usize>,
    /// Connections (at the rpc level: client-mode RpcEnvs, one connection each).
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub conns: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub inflight: usize,
    /// Measurement time, in seconds.
    #[arg(long, default_value = "2", value_parser = parse_duration_seconds)]
    pub duration: f64,
    /// Warmup before measuring, in seconds.
    #[arg(long, default_value = "0.5", value_parser = parse_seconds)]
    pub warmup: f64,
    /// Client event-loop threads [default: 1, or the --config file's].
    #[arg(long, value_parser = parse_count)]
    pub client_threads: Option<usize>,
    /// Check every response byte for byte (an echo of the request, or `--response` bytes of
    /// 0x5A); a mismatch counts as an error and is not timed.
    #[arg(long)]
    pub verify: bool,
    /// Print one JSON object on one line instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Save the run's latency histogram in this folder (`.hgrm` and `.hist`, as `run` does).
    #[arg(long)]
    pub histogram_dir: Option<PathBuf>,
}

/// Reads a `--config` file for `serve` and `load`: the `[transport]` and `[rpc]` tables of an
/// RpcEnv configuration, and the top-level keys `io_mode`, `server_threads` and `client_threads`
/// that `run --config` also reads (its other keys, such as `payload` or `rate`, are ignored here).
///
/// # Errors
/// A [`transport::ConfError`] naming the file or the key when it cannot be read or is wrong.
pub fn read_config(path: &Path) -> Result<RpcEnvConfig, transport::ConfError> {
    let bad_file = |message: String| transport::ConfError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad_file(e.to_string()))?;
    let mut conf = RpcEnvConfig::from_toml_str(&text).map_err(|e| match e {
        transport::ConfError::File { message, .. } => bad_file(message),
        other => other,
    })?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad_file(e.to_string()))?;
    // As `run --config`: the flags' long names, `-` or `_` alike.
    for (key, conf_key) in [
        ("io-mode", "io_mode"),
        ("server-threads", "server_threads"),
        ("client-threads", "client_threads"),
    ] {
        if let Some(value) = doc.get(key).or_else(|| doc.get(conf_key)) {
            let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            conf.transport.set(conf_key, &text)?;
        }
    }
    Ok(conf)
}

/// The configuration of one side: the `--config` file ([`read_config`]) or the defaults, then
/// the process's transport variables (`RPC_<KEY>` for each `transport.*` key, e.g.
/// `RPC_SPIN_BEFORE_PARK_US=0`, as `rpc-bench run` applies them and as every record lists
/// them in `options.transport_env`), then `--io-mode` and the thread count if given (else 1
/// without a file), with a maximum frame size that fits `largest` bytes of body.
///
/// # Errors
/// [`BenchError::Rpc`] (a configuration error naming the file, key or variable) when the file
/// cannot be read or is wrong, or a transport variable has a bad value.
pub fn side_conf(
    config: Option<&Path>,
    io_mode: Option<IoMode>,
    threads: Option<usize>,
    largest: usize,
) -> Result<RpcEnvConfig, BenchError> {
    side_conf_with_vars(config, io_mode, threads, largest, std::env::vars())
}

/// [`side_conf`] with the environment variables `vars` in place of the process's.
fn side_conf_with_vars(
    config: Option<&Path>,
    io_mode: Option<IoMode>,
    threads: Option<usize>,
    largest: usize,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<RpcEnvConfig, BenchError> {
    let mut rpc_conf = match config {
        Some(path) => read_config(path).map_err(rpc::RpcError::from)?,
        None => RpcEnvConfig::client("rpc-bench"),
    };
    let t = &mut rpc_conf.transport;
    t.apply_env_vars(vars).map_err(rpc::RpcError::from)?;
    if let Some(mode) = io_mode {
        t.io_mode = mode;
    }
    match (threads, config) {
        (Some(n), _) => {
            t.server_threads = n;
            t.client_threads = n;
        }
        (None, None) => {
            t.server_threads = 1;
            t.client_threads = 1;
        }
        (None, Some(_)) => {}
    }
    t.max_frame_size = t.max_frame_size.max(largest as u64 + FRAME_OVERHEAD);
    Ok(rpc_conf)
}

impl LoadArgs {
    /// The transport configuration of the client.
    ///
    /// # Errors
    /// As [`side_conf`].
    pub fn transport_conf(&self) -> Result<TransportConf, BenchError> {
        let largest = self.payload.max(self.response.unwrap_or(self.payload));
        Ok(side_conf(self.config.as_deref(), self.io_mode, self.client_threads, largest)?.transport)
    }

    /// The run these options describe; `server_threads` is 0: the server's are not known here.
    pub fn spec(&self, conf: &TransportConf) -> RunSpec {
        RunSpec {
            system: System::Transport(conf.io_mode),
            level: self.level,
            workload: Workload {
                payload: self.payload,
                response: self.response.unwrap_or(self.payload),
                conns: self.conns,
                inflight: self.inflight,
                rate: None,
                pinned_cpu: None,
            },
            duration_s: self.duration,
            warmup_s: self.warmup,
            server_threads: 0,
            client_threads: conf.client_threads,
            server_cpus: None,
            client_cpus: None,
        }
    }
}

/// Resolves `host:port` (also `rpc://host:port`) to a socket address.
///
/// # Errors
/// [`BenchError::Rpc`] naming the address when it does not parse or resolve.
pub fn resolve(addr: &str) -> Result<SocketAddr, BenchError> {
    Ok(addr.parse::<RpcAddress>()?.to_socket_addr()?)
}

/// Drives the server at `args.connect` and returns the record of the run (its `system` is the
/// client's IO mode); [`to_json_line`] adds the server's address.
///
/// # Errors
/// [`BenchError::Rpc`] when the address or `--config` is bad or the rpc-level echo endpoint
/// cannot be reached, [`BenchError::Transport`] when the backend cannot start or connect, and
/// [`BenchError::NoRequests`] when no request completed while measuring.
pub fn run(args: &LoadArgs, env: &Environment) -> Result<Record, BenchError> {
    let addr = resolve(&args.connect)?;
    let conf = args.transport_conf()?;
    let spec = args.spec(&conf);
    let payload = Bytes::from(request_pattern(args.payload));
    let expected = args
        .verify
        .then(|| Arc::new(Expected::for_request(&payload, args.response)));
    tracing::info!(server = %addr, level = %args.level, workload = %spec.workload, "load");
    let measurement = match args.level {
        Level::Transport => {
            let transport = rpc::create_transport(&conf)?;
            let result = transport_load::load(transport.as_ref(), addr, &spec, payload, expected);
            transport.shutdown();
            result?
        }
        Level::Rpc | Level::RpcLoop => {
            let mut clients: Vec<RpcEnv> = Vec::with_capacity(args.conns);
            let address = RpcAddress::from(addr);
            let result = rpc_load::load(&address, &conf, &spec, payload.clone(), expected, &mut clients);
            for c in &clients {
                c.shutdown();
            }
            result?
        }
    };
    Record::new(&spec, &measurement, env)
}

/// `record` as one JSON line with `"server": "<addr>"` and `"verified"` added.
///
/// # Errors
/// [`BenchError::Json`] if serialization fails (it does not for these fields).
pub fn to_json_line(record: &Record, server: &str, verified: bool) -> Result<String, BenchError> {
    let mut value = serde_json::to_value(record)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("server".into(), server.into());
        object.insert("verified".into(), verified.into());
    }
    Ok(serde_json::to_string(&value)?)
}

/// What `load` prints: [`to_json_line`] with `--json`, else the record's summary and the server.
///
/// # Errors
/// [`BenchError::Json`] if serialization fails (it does not for these fields).
pub fn render(record: &Record, args: &LoadArgs) -> Result<String, BenchError> {
    if args.json {
        return to_json_line(record, &args.connect, args.verify);
    }
    let checked = if args.verify {
        ", every response verified"
    } else {
        ""
    };
    Ok(format!("{record}\n  server {}{checked}", args.connect))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_responses_are_checked_byte_for_byte() {
        let payload = Bytes::from(request_pattern(300));
        assert_eq!(&payload[..3], &[7, 38, 69]);
        assert_eq!(payload[9], (9 * 31 + 7) as u8);
        let echo = Expected::for_request(&payload, None);
        assert!(echo.matches(&payload));
        let mut wrong = payload.to_vec();
        wrong[299] ^= 1;
        assert!(!echo.matches(&wrong) && !echo.matches(&payload[..299]));
        let fill = Expected::for_request(&payload, Some(4));
        assert!(fill.matches(&[0x5A; 4]));
        assert!(!fill.matches(&[0x5A; 5]) && !fill.matches(&[0x5A, 0x5A, 0x5A, 0]));
        assert!(Expected::Fill(0).matches(&[]));
    }

    #[test]
    fn addresses_resolve_or_say_why() {
        assert_eq!(
            resolve("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(resolve("rpc://127.0.0.1:9").unwrap().port(), 9);
        let e = resolve("no-port").unwrap_err().to_string();
        assert!(e.contains("no-port"), "{e}");
    }

    #[test]
    fn config_files_give_the_io_mode_both_ways() {
        let tmp = tempfile::tempdir().unwrap();
        let run_style = tmp.path().join("run.toml");
        std::fs::write(
            &run_style,
            "io-mode = \"epoll\"\nrate = 20000\nclient_threads = 2\n",
        )
        .unwrap();
        let c = side_conf(Some(&run_style), None, None, 64).unwrap().transport;
        assert_eq!((c.io_mode, c.client_threads), (IoMode::Epoll, 2));
        let c = side_conf(Some(&run_style), Some(IoMode::IoUring), None, 64)
            .unwrap()
            .transport;
        assert_eq!(c.io_mode, IoMode::IoUring, "the flag wins over the file");
        let tables = tmp.path().join("env.toml");
        std::fs::write(&tables, "[transport]\nio_mode = \"io_uring\"\n").unwrap();
        let c = side_conf(Some(&tables), None, None, 64).unwrap().transport;
        assert_eq!(c.io_mode, IoMode::IoUring);
        let c = side_conf(None, None, None, 8 << 20).unwrap().transport;
        assert_eq!((c.client_threads, c.server_threads), (1, 1));
        assert!(c.max_frame_size >= (8 << 20) + FRAME_OVERHEAD);
        std::fs::write(&tables, "io_mode = \"kqueue\"\n").unwrap();
        let e = side_conf(Some(&tables), None, None, 64).unwrap_err().to_string();
        assert!(e.contains("kqueue") && e.contains("io_mode"), "{e}");
        let e = side_conf(Some(&tmp.path().join("missing.toml")), None, None, 64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn transport_variables_apply_to_both_sides() {
        let vars = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let c = side_conf_with_vars(None, None, None, 64, vars(&[("RPC_SPIN_BEFORE_PARK_US", "0")]))
            .unwrap()
            .transport;
        assert_eq!(
            c.spin_before_park_us, 0,
            "recorded in options.transport_env, so applied"
        );
        let c = side_conf_with_vars(
            None,
            Some(IoMode::Epoll),
            Some(3),
            64,
            vars(&[("RPC_IO_MODE", "io_uring"), ("RPC_CLIENT_THREADS", "7")]),
        )
        .unwrap()
        .transport;
        assert_eq!((c.io_mode, c.client_threads), (IoMode::Epoll, 3), "the flags win");
        let e = side_conf_with_vars(None, None, None, 64, vars(&[("RPC_SPIN_BEFORE_PARK_US", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("RPC_SPIN_BEFORE_PARK_US"), "{e}");
    }

    #[test]
    fn json_names_the_server() {
        let r = crate::record::tests::record(System::RawTokio, Workload::echo(64, 1, 1), 100);
        let line = to_json_line(&r, "10.77.0.1:7000", true).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["server"].as_str(), v["verified"].as_bool()),
            (Some("10.77.0.1:7000"), Some(true))
        );
        assert_eq!(v["requests"], 100);
    }
}
